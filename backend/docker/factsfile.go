package docker

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/codex-connector/codex-connector/internal/hostfs"
)

// What an engine gives its runs changes only with the engine or the
// machine: its cgroup setup is the boot's, its rootless mode its own. So
// a probe's facts are kept in a file of the server's (HelperConfig's
// FactsFile) under a key of the machine's boot, the engine's identity and
// version and the runtime, and a server started later on the same engine
// does not probe again: a one-shot `run` would pay a probe container each
// time.

// factsKey is what the saved facts hold for.
// Podman's compat /info makes up a new ID at every call, so its store's
// root tells its engines apart instead. factsVersion changes with what a
// probe reads, so facts of an older probe are not taken.
func factsKey(d Description, runtime string) string {
	boot, _ := os.ReadFile("/proc/sys/kernel/random/boot_id")
	id := d.ID
	if d.Name == "Podman" {
		id = ""
	}
	effective := runtime
	if effective == "" {
		effective = d.DefaultRuntime
	}
	rt := d.Runtimes[effective]
	return strings.Join([]string{strings.TrimSpace(string(boot)), factsVersion, d.Name, d.Version, id, d.RootDir, d.CgroupVersion, d.CgroupDriver,
		strings.Join(d.SecurityOptions, ","), d.DefaultRuntime, runtime, rt.Path, strings.Join(rt.Args, " ")}, "|")
}

const factsVersion = "facts-2"

// maxFactsFile bounds what is read of the facts file.
const maxFactsFile = 64 << 10

// savedFile is the shape of the facts file: facts by key.
type savedFile map[string]Facts

// savedFacts are the facts saved under key, if any.
func (h *Helpers) savedFacts(key string) (Facts, bool) {
	if h.cfg.FactsFile == "" {
		return Facts{}, false
	}
	data, err := readFacts(h.cfg.FactsFile)
	if err != nil {
		return Facts{}, false
	}
	var saved savedFile
	if json.Unmarshal(data, &saved) != nil {
		return Facts{}, false // a damaged file is probed over
	}
	f, ok := saved[key]
	return f, ok
}

// saveFacts saves f under key, with the facts saved in this boot of the
// machine (another runtime's): those of an earlier boot are stale. A file
// that cannot be written costs a probe at the next start, nothing else.
func (h *Helpers) saveFacts(key string, f Facts) {
	if h.cfg.FactsFile == "" {
		return
	}
	saved := savedFile{}
	if data, err := readFacts(h.cfg.FactsFile); err == nil {
		_ = json.Unmarshal(data, &saved)
	}
	boot, _, _ := strings.Cut(key, "|")
	for k := range saved {
		if !strings.HasPrefix(k, boot+"|") || len(saved) > 16 {
			delete(saved, k)
		}
	}
	saved[key] = f
	data, err := json.Marshal(saved)
	if err == nil {
		_ = hostfs.WriteFileAtomic(h.cfg.FactsFile, data)
	}
}

// readFacts reads the facts file as the server reads its own files that
// matter: a regular file, not through a link, within a bound.
func readFacts(path string) ([]byte, error) {
	data, size, err := hostfs.ReadRegular(filepath.Dir(path), filepath.Dir(path), filepath.Base(path), maxFactsFile)
	if err == nil && size > maxFactsFile {
		err = fmt.Errorf("%s holds more than %d bytes", path, maxFactsFile)
	}
	return data, err
}
