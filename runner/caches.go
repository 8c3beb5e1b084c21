package runner

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"

	"github.com/codex-connector/codex-connector/backend"
	"github.com/codex-connector/codex-connector/backend/docker"
	"github.com/codex-connector/codex-connector/internal/hostfs"
	"github.com/codex-connector/codex-connector/store"
)

// Package caches make a user's second task fast: a named volume per cache
// and trust domain, mounted into the tasks that may write. A trust domain
// is one user's tasks in one repository at one sandbox level: a cache
// holds code that later tasks run (modules they build, packages' install
// scripts, wheels, crates' build.rs), so a cache shared wider would carry
// what an untrusted repository's task planted into another repository's
// task, or what a workspace-write task planted into a danger-full-access
// task of the same repository, which may write .git and reach the
// network. A read-only task gets none: it promises to leave nothing
// behind, and a cache it could write would outlive it and reach the
// user's later tasks. Without a volume the same variables point into the
// task's /tmp, so tools behave alike either way (the rootfs is read-only:
// GOPATH=/go could not be written).

// cacheMount is where the caches are mounted in a task's container, and
// noCache where the same variables point when they are not.
const (
	cacheMount = "/codex-connector-cache"
	noCache    = "/tmp/.cache/codex-connector"
)

// cacheSpec is where a cache's volume is mounted, and the variables that
// point its tool at it.
type cacheSpec struct {
	mount string
	env   [][2]string
}

// KnownCaches are the caches codex-connector can keep. Cargo keeps only
// its registry (downloaded crates and the index): CARGO_HOME itself holds
// config.toml and bin/, which would run in every later task, so it stays
// in the task's /tmp.
var KnownCaches = map[string]cacheSpec{
	"go":    {cacheMount + "/go", [][2]string{{"GOMODCACHE", cacheMount + "/go/mod"}, {"GOCACHE", cacheMount + "/go/build"}}},
	"npm":   {cacheMount + "/npm", [][2]string{{"npm_config_cache", cacheMount + "/npm"}}},
	"pip":   {cacheMount + "/pip", [][2]string{{"PIP_CACHE_DIR", cacheMount + "/pip"}}},
	"cargo": {noCache + "/cargo/registry", [][2]string{{"CARGO_HOME", noCache + "/cargo"}}},
}

// DefaultCaches are kept unless config.json says otherwise.
var DefaultCaches = []string{"cargo", "go", "npm", "pip"}

// Labels of a cache volume: which cache, and the trust domain it serves.
const (
	LabelCache      = "codex-connector.cache"
	LabelCacheUser  = "codex-connector.cache-user"
	LabelCacheRepo  = "codex-connector.cache-repo"
	LabelCacheLevel = "codex-connector.cache-level"
	// LabelCacheLife is random, set when the volume is made: it tells a
	// volume from one made anew under its name.
	LabelCacheLife = "codex-connector.cache-life"
)

// newLife is a LabelCacheLife.
func newLife() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// CacheDomain is the trust domain of a task's caches: the user its tasks
// run as, the repository (its path and the identity of its root
// directory, so that another repository put at the same path gets caches
// of its own) and the sandbox level.
type CacheDomain struct {
	UID      string
	Repo     string
	Dev, Ino uint64
	Level    string
}

// cacheDomain is the trust domain of t's caches.
func cacheDomain(t *store.Task) CacheDomain {
	uid, _, _ := strings.Cut(t.User, ":")
	return CacheDomain{UID: uid, Repo: t.RepoRoot, Dev: t.RepoDev, Ino: t.RepoIno, Level: t.Sandbox}
}

// key names the domain in a volume's name.
func (d CacheDomain) key() string {
	sum := sha256.Sum256(fmt.Appendf(nil, "%s\x00%s\x00%d:%d\x00%s", d.UID, d.Repo, d.Dev, d.Ino, d.Level))
	return hex.EncodeToString(sum[:6])
}

// CacheVolume is the volume of a cache for the trust domain d.
func CacheVolume(name string, d CacheDomain) string {
	return "codex-connector-cache-" + d.UID + "-" + name + "-" + d.key()
}

// cacheEnv points the tools of the configured caches at the task's: the
// mounted volumes, or directories in /tmp where none is mounted.
func cacheEnv(configured, mounted []string) []string {
	var env []string
	for _, name := range slices.Sorted(slices.Values(configured)) {
		for _, v := range KnownCaches[name].env {
			path := v[1]
			if !slices.Contains(mounted, name) {
				path = strings.Replace(path, cacheMount, noCache, 1)
			}
			env = append(env, v[0]+"="+path)
		}
	}
	return env
}

// cacheMounts are the cache volumes of a task, made ready for its user.
func (r *Runner) cacheMounts(ctx context.Context, t *store.Task) ([]string, []backend.Mount, error) {
	if t.Sandbox == ReadOnly || len(r.cfg.Caches) == 0 {
		return nil, nil, nil
	}
	d := cacheDomain(t)
	if err := r.readyCaches(ctx, t.User, d); err != nil {
		return nil, nil, err
	}
	var ms []backend.Mount
	for _, name := range r.cfg.Caches {
		// A volume mount has no copy-up of the image's content.
		ms = append(ms, backend.Mount{Kind: backend.Volume, Source: CacheVolume(name, d), Target: KnownCaches[name].mount})
	}
	return r.cfg.Caches, ms, nil
}

// readyCaches makes the domain's cache volumes, and makes them the user's:
// a new volume belongs to root. A volume is readied once in its life: the
// home keeps the life of each volume it readied (cachesReadyFile), so
// a one-shot client pays for the helper container only when a volume is
// new, or was removed and made anew since (`caches remove`). A second run
// changes nothing, so two servers doing it at once do no harm.
func (r *Runner) readyCaches(ctx context.Context, user string, d CacheDomain) error {
	r.cachesMu.Lock()
	defer r.cachesMu.Unlock()
	uid, gid, _ := strings.Cut(user, ":")
	ready := r.readCachesReady()
	var vols []docker.VolumeDir
	made := map[string]string{}
	for _, name := range r.cfg.Caches {
		vol := CacheVolume(name, d)
		// Create returns the volume there is, if there is one, with the
		// labels it was made with: its life is its LabelCacheLife. (Not its
		// CreatedAt: the local driver reports the directory's change time,
		// which readying it changes.)
		labels, err := r.docker.CreateVolume(ctx, vol,
			map[string]string{LabelCache: name, LabelCacheUser: d.UID, LabelCacheRepo: d.Repo,
				LabelCacheLevel: d.Level, LabelCacheLife: newLife(), LabelHomePath: r.cfg.Home, LabelVersion: r.cfg.Version})
		if err != nil {
			return err
		}
		life := labels[LabelCacheLife]
		made[vol] = life
		if life == "" || ready[user+" "+vol] != life {
			vols = append(vols, docker.VolumeDir{Volume: vol, Dir: cacheMount + "/" + name})
		}
	}
	if len(vols) == 0 {
		return nil
	}
	// The helper image holds nothing but this binary.
	if err := r.helpers.ReadyVolumes(ctx, uid, gid, vols,
		map[string]string{LabelComponent: "cache-init", LabelVersion: r.cfg.Version, LabelHomePath: r.cfg.Home}); err != nil {
		return err
	}
	for vol, created := range made {
		ready[user+" "+vol] = created
	}
	r.writeCachesReady(ready)
	return nil
}

// cachesReadyFile holds, per "user volume", the life (LabelCacheLife) of
// the cache volume readied for that user, in the home.
const cachesReadyFile = "caches-ready.json"

// cachesReadyMax bounds what is read of it: a few hundred bytes a volume.
const cachesReadyMax = 4 << 20

// readCachesReady reads which volumes the home readied; a missing or
// damaged file means none, which costs a helper container, nothing else.
func (r *Runner) readCachesReady() map[string]string {
	ready := map[string]string{}
	data, _, err := hostfs.ReadRegular(r.cfg.Home, r.cfg.Home, cachesReadyFile, cachesReadyMax)
	if err == nil {
		_ = json.Unmarshal(data, &ready)
	}
	return ready
}

// writeCachesReady keeps which volumes the home readied. Volumes that are
// gone stay listed until their names are used again, when their life
// tells them apart; the file stays small, since there are a handful
// of caches per repository and level.
func (r *Runner) writeCachesReady(ready map[string]string) {
	data, err := json.Marshal(ready)
	if err == nil && len(data) < cachesReadyMax {
		err = hostfs.WriteFileAtomic(filepath.Join(r.cfg.Home, cachesReadyFile), data)
	}
	if err != nil {
		r.logf("keep which cache volumes are ready: %v (the next process readies them again)", err)
	}
}

// InitCaches runs inside the helper container: it gives each directory to
// uid:gid, owner-only. Only the top directory: what a task put inside is
// the user's already, and nothing below is followed.
func InitCaches(uid, gid string, dirs []string) error {
	u, err := strconv.Atoi(uid)
	if err != nil {
		return fmt.Errorf("uid %q: %w", uid, err)
	}
	g, err := strconv.Atoi(gid)
	if err != nil {
		return fmt.Errorf("gid %q: %w", gid, err)
	}
	for _, d := range dirs {
		fi, err := os.Lstat(d)
		if err != nil {
			return err
		}
		if st, ok := fi.Sys().(*syscall.Stat_t); ok && int(st.Uid) == u && int(st.Gid) == g && fi.Mode().Perm() == 0o700 {
			continue // readied before
		}
		if err := os.Lchown(d, u, g); err != nil {
			return err
		}
		if err := os.Chmod(d, 0o700); err != nil {
			return err
		}
	}
	return nil
}

// CacheVolumes lists the cache volumes of the user uid ("" for every
// user's) on be's engine, by name.
func CacheVolumes(ctx context.Context, be *docker.Backend, uid string) ([]docker.Volume, error) {
	match := map[string]string{LabelCache: ""}
	if uid != "" {
		match[LabelCacheUser] = uid
	}
	return be.Volumes(ctx, match)
}

// withDefaults is env with the variables of defaults it does not set
// itself before it: the user's env wins.
func withDefaults(defaults, env []string) []string {
	set := map[string]bool{}
	for _, e := range env {
		k, _, _ := strings.Cut(e, "=")
		set[k] = true
	}
	var out []string
	for _, e := range defaults {
		if k, _, _ := strings.Cut(e, "="); !set[k] {
			out = append(out, e)
		}
	}
	return append(out, env...)
}

// removeOrphanCaches removes the cache volumes this home made for
// repositories that no longer exist: no task can mount them again, and
// each may hold hundreds of megabytes. Only its own, and only where the
// path is gone (a repository this process may not read is left); a volume
// in use is left for the next round.
func (r *Runner) removeOrphanCaches(ctx context.Context) {
	vols, err := r.docker.Volumes(ctx, map[string]string{LabelCache: "", LabelHomePath: r.cfg.Home})
	if err != nil {
		r.logf("housekeeping: %v", err)
		return
	}
	for _, v := range vols {
		repo := v.Labels[LabelCacheRepo]
		if repo == "" {
			continue
		}
		if _, err := os.Lstat(repo); !errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err := r.docker.RemoveVolume(ctx, v.Name); err != nil {
			r.logf("housekeeping: %v", err)
		}
	}
}
