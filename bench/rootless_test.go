package bench

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/codex-connector/codex-connector/bench/benchtab"
	"github.com/codex-connector/codex-connector/images/imagestest"
)

// BenchmarkRealCodexOnRootless is BenchmarkRealCodex on each rootless
// engine, with codex-connector run by the engine's own user on a
// repository of theirs, against `docker run` of the same Codex command on
// that engine as the id inside that is the user (0).
func BenchmarkRealCodexOnRootless(b *testing.B) {
	for _, kind := range []string{imagestest.Podman, imagestest.RootlessDocker} {
		b.Run(kind, func(b *testing.B) { benchRootless(b, kind) })
	}
}

func benchRootless(b *testing.B, kind string) {
	// Rootless Docker's own bridge has the default bridge's address: the
	// engine reaches the host at its default route's.
	c := newCodexBenchWith(b, imagestest.StartModelServerAt(b, imagestest.DefaultRouteAddress(b), codexTurns...))
	e := imagestest.StartRootless(b, kind)
	loadImage(b, e.Host, c.image)
	c.repo, c.user = e.Repo(b), "0:0"
	bin := filepath.Join(e.Dir, "bin", "codex-connector")
	data, err := os.ReadFile(binary(b))
	if err != nil {
		b.Fatal(err)
	}
	home := filepath.Join(e.Dir, "home", ".codex-connector")
	for _, dir := range []string{filepath.Dir(bin), home} {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			b.Fatal(err)
		}
	}
	if err := os.WriteFile(bin, data, 0o755); err != nil {
		b.Fatal(err)
	}
	// This machine's cgroup v1 gives rootless runs no limits.
	cfg, _ := json.Marshal(map[string]any{"codexConfig": c.model.CodexConfig(), "limits": map[string]any{"acceptUnenforced": []string{"memory", "cpu", "pids"}}})
	if err := os.WriteFile(filepath.Join(home, "config.json"), cfg, 0o600); err != nil {
		b.Fatal(err)
	}
	e.Own(b, filepath.Join(e.Dir, "bin"))
	e.Own(b, filepath.Join(e.Dir, "home"))
	env := []string{"PATH=/usr/local/bin:/usr/bin:/bin", "CODEX_CONNECTOR_HOME=" + home, "CODEX_CONNECTOR_IMAGE=" + c.image,
		"CODEX_CONNECTOR_ALLOWED_ROOTS=" + e.Dir, imagestest.MockKeyEnv + "=" + c.model.Key}
	s := startCommand(b, e.Command(e.Dir, env, bin))
	name := map[string]string{imagestest.Podman: "rootless Podman", imagestest.RootlessDocker: "rootless Docker"}[kind]
	sideBySide(b, benchtab.Row{Name: "real Codex on " + name + ": codex_agent → result, vs docker run",
		ReferenceName: "docker run --rm of the same Codex command on the same engine, pointed straight at the model server", MaxRatio: 1.10,
		Note: "codex-connector run by the engine's own user, on a repository of theirs; an engine of the benchmark's own; limits accepted unenforced (cgroup v1)"},
		c.agentRun(b, s, "codex_agent on "+name),
		func() float64 { return c.dockerRunWith(b, []string{"-H", e.Host}, nil) })
}
