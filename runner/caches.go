package runner

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/mount"
	"github.com/docker/docker/api/types/volume"
)

// Package caches make a user's second task fast: a named volume per user
// and cache, mounted into the tasks that run as that user and may write.
// A read-only task gets none: it promises to leave nothing behind, and a
// cache it could write would outlive it and reach the user's later tasks.
// Without a volume the same variables point into the task's /tmp, so tools
// behave alike either way (the rootfs is read-only: GOPATH=/go could not
// be written).

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

// Labels of a cache volume.
const (
	LabelCache     = "codex-connector.cache"
	LabelCacheUser = "codex-connector.cache-user"
)

// CacheVolume is the volume of a cache for the user uid.
func CacheVolume(name, uid string) string { return "codex-connector-cache-" + uid + "-" + name }

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
func (r *Runner) cacheMounts(ctx context.Context, sandbox, user string) ([]string, []mount.Mount, error) {
	if sandbox == ReadOnly || len(r.cfg.Caches) == 0 {
		return nil, nil, nil
	}
	uid, _, _ := strings.Cut(user, ":")
	if err := r.readyCaches(ctx, user); err != nil {
		return nil, nil, err
	}
	var ms []mount.Mount
	for _, name := range r.cfg.Caches {
		ms = append(ms, cacheVolumeMount(CacheVolume(name, uid), KnownCaches[name].mount))
	}
	return r.cfg.Caches, ms, nil
}

// readyCaches makes the user's cache volumes, and makes them the user's: a
// new volume belongs to root. A volume is readied once per process, and
// again when it was removed and made anew since (`caches remove`); a
// second run changes nothing, so two servers doing it at once do no harm.
func (r *Runner) readyCaches(ctx context.Context, user string) error {
	r.cachesMu.Lock()
	defer r.cachesMu.Unlock()
	uid, gid, _ := strings.Cut(user, ":")
	var ms []mount.Mount
	var dirs []string
	made := map[string]string{}
	for _, name := range r.cfg.Caches {
		vol := CacheVolume(name, uid)
		// Create returns the volume there is, if there is one.
		v, err := r.engine.VolumeCreate(ctx, volume.CreateOptions{Name: vol,
			Labels: map[string]string{LabelCache: name, LabelCacheUser: uid, LabelVersion: r.cfg.Version}})
		if err != nil {
			return engineError("create the cache volume "+vol, err)
		}
		made[vol] = v.CreatedAt
		if r.cachesReady[user+" "+vol] != v.CreatedAt || v.CreatedAt == "" {
			ms = append(ms, cacheVolumeMount(vol, cacheMount+"/"+name))
			dirs = append(dirs, cacheMount+"/"+name)
		}
	}
	if len(dirs) == 0 {
		return nil
	}
	r.proxyMu.Lock()
	ref, err := r.proxyImage(ctx)
	r.proxyMu.Unlock()
	if err != nil {
		return err
	}
	// The proxy image holds nothing but this binary; as root with no
	// capability but CHOWN and FOWNER (to chmod what it no longer owns),
	// and no network, it only hands the volumes' top directories to the
	// user.
	cfg := &container.Config{Image: ref, User: "0:0", Entrypoint: []string{"/codex-connector", "cache-init", uid, gid},
		Cmd: dirs, Labels: map[string]string{LabelComponent: "cache-init", LabelVersion: r.cfg.Version, LabelHomePath: r.cfg.Home}}
	host := &container.HostConfig{Mounts: ms, NetworkMode: "none", ReadonlyRootfs: true,
		CapDrop: []string{"ALL"}, CapAdd: []string{"CHOWN", "FOWNER"}, SecurityOpt: []string{"no-new-privileges"}}
	created, err := r.engine.ContainerCreate(ctx, cfg, host, nil, nil, "")
	if err != nil {
		return engineError("create the container that readies the caches", err)
	}
	defer func() { _ = r.remove(context.WithoutCancel(ctx), created.ID) }()
	waitC, errC := r.engine.ContainerWait(ctx, created.ID, container.WaitConditionNextExit)
	if err := r.engine.ContainerStart(ctx, created.ID, container.StartOptions{}); err != nil {
		return engineError("start the container that readies the caches", err)
	}
	select {
	case w := <-waitC:
		if w.StatusCode != 0 {
			return fmt.Errorf("ready the cache volumes of user %s: the helper exited with %d — remove them with `codex-connector caches remove` and run the task again", uid, w.StatusCode)
		}
	case err := <-errC:
		return engineError("wait for the container that readies the caches", err)
	case <-ctx.Done():
		return ctx.Err()
	}
	if r.cachesReady == nil {
		r.cachesReady = map[string]string{}
	}
	for vol, created := range made {
		r.cachesReady[user+" "+vol] = created
	}
	return nil
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
// user's).
func CacheVolumes(ctx context.Context, eng interface {
	VolumeList(context.Context, volume.ListOptions) (volume.ListResponse, error)
}, uid string) ([]*volume.Volume, error) {
	f := filters.NewArgs(filters.Arg("label", LabelCache))
	if uid != "" {
		f.Add("label", LabelCacheUser+"="+uid)
	}
	resp, err := eng.VolumeList(ctx, volume.ListOptions{Filters: f})
	if err != nil {
		return nil, engineError("list the cache volumes", err)
	}
	slices.SortFunc(resp.Volumes, func(a, b *volume.Volume) int { return strings.Compare(a.Name, b.Name) })
	return resp.Volumes, nil
}

// RemoveCacheVolume removes a cache volume; one in use by a running task
// is left, and the error says so.
func RemoveCacheVolume(ctx context.Context, eng interface {
	VolumeRemove(context.Context, string, bool) error
}, name string) error {
	err := eng.VolumeRemove(ctx, name, false)
	switch {
	case err == nil, cerrdefs.IsNotFound(err):
		return nil
	case cerrdefs.IsConflict(err):
		return fmt.Errorf("%s is in use by a running task: cancel it or wait for its end, then remove the cache again", name)
	}
	return engineError("remove the cache volume "+name, err)
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

// cacheVolumeMount mounts a cache volume without the engine's copy-up: an
// image with files where the volume goes must not seed the user's cache
// (nor give its top directory the image's owner).
func cacheVolumeMount(vol, target string) mount.Mount {
	return mount.Mount{Type: mount.TypeVolume, Source: vol, Target: target, VolumeOptions: &mount.VolumeOptions{NoCopy: true}}
}
