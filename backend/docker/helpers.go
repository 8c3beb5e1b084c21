package docker

import (
	"context"
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/codex-connector/codex-connector/images"
	"github.com/codex-connector/codex-connector/runner/egress"
	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/api/types/mount"
)

// Helpers are the containers of codex-connector's own binary that run
// beside a data directory's tasks: its egress proxy, and the one-shot
// helper that hands new cache volumes to their user. They share one image,
// FROM scratch, holding nothing but the static binary, tagged with the
// binary's hash.
type Helpers struct {
	b   *Backend
	cfg HelperConfig
	// mu guards the proxy's container and ref, the image reference of the
	// binary.
	mu  sync.Mutex
	ref string
}

// HelperConfig says how a data directory's helpers are made.
type HelperConfig struct {
	// Binary is the static codex-connector binary every helper runs.
	Binary string
	// ImageLabels are set on a helper image built here: housekeeping
	// removes only images that carry them.
	ImageLabels map[string]string
	// ProxyName is the egress proxy's container; ProxyDir the host
	// directory of its policies/ and sockets/; ProxyUser its uid:gid;
	// ProxyLabels its container's labels.
	ProxyName   string
	ProxyDir    string
	ProxyUser   string
	ProxyLabels map[string]string
	// ProbeLabels are set on a probe's containers besides ImageLabels, for
	// housekeeping to find one a server killed mid-probe left.
	ProbeLabels map[string]string
	// FactsFile keeps what a probe saw of the engine (factsfile.go); ""
	// probes once per Backend.
	FactsFile string
	// CABundle is the host's file of CA certificates (PEM) the proxy
	// verifies upstreams with; "" leaves them unverifiable.
	CABundle string
}

// HelperRepo is the repository of helper images; the tag is the hash of
// the binary.
const HelperRepo = "codex-connector/egress"

// Helpers are the helpers of cfg on this engine.
func (b *Backend) Helpers(cfg HelperConfig) *Helpers { return &Helpers{b: b, cfg: cfg} }

// Limits of the egress proxy's container. Each connection costs it about
// 100 KiB (buffers and goroutines), and each task holds at most its
// policy's MaxConns of them.
const (
	ProxyMemory = 512 << 20
	ProxyPids   = 256
)

// ImageRef reads and hashes the binary once and returns the helper image
// reference of it, without asking the engine: a launch checks with it that
// the binary, which every task's gate runs, is there and static.
func (h *Helpers) ImageRef() (string, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.refLocked()
}

func (h *Helpers) refLocked() (string, error) {
	if h.ref != "" {
		return h.ref, nil
	}
	bin := h.cfg.Binary
	if bin == "" {
		return "", errors.New("tasks need the codex-connector binary (it holds each container's gate and runs the egress proxy), and none is configured")
	}
	if err := CheckStatic(bin); err != nil {
		return "", err
	}
	// Hashed as it is read, not held: the binary is some 17 MB, which a
	// server kept for its life only to build an image it seldom builds.
	f, err := os.Open(bin)
	if err != nil {
		return "", fmt.Errorf("read %s: %w", bin, err)
	}
	defer f.Close()
	sum := sha256.New()
	if _, err := io.Copy(sum, f); err != nil {
		return "", fmt.Errorf("read %s: %w", bin, err)
	}
	h.ref = helperRefOf(sum.Sum(nil))
	return h.ref, nil
}

func helperRefOf(sum []byte) string { return HelperRepo + ":" + hex.EncodeToString(sum[:6]) }

// Image returns the helper image of this binary, building it if the engine
// lacks it. The binary cannot change under a running process, so it is
// checked and hashed once, not on every task's start.
func (h *Helpers) Image(ctx context.Context) (string, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.imageLocked(ctx)
}

func (h *Helpers) imageLocked(ctx context.Context) (string, error) {
	ref, err := h.refLocked()
	if err != nil {
		return "", err
	}
	_, err = h.b.eng.ImageInspect(ctx, ref)
	if cerrdefs.IsNotFound(err) && h.b.builder == nil {
		return "", fmt.Errorf("the egress proxy image %s is missing, and this engine client cannot build images", ref)
	}
	if cerrdefs.IsNotFound(err) {
		// Not with the label of a home's task containers: every container
		// of the image inherits its labels.
		dockerfile := "FROM scratch\nCOPY codex-connector /codex-connector\n"
		keys := make([]string, 0, len(h.cfg.ImageLabels))
		for k := range h.cfg.ImageLabels {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			dockerfile += "LABEL " + k + "=" + h.cfg.ImageLabels[k] + "\n"
		}
		dockerfile += "ENTRYPOINT [\"/codex-connector\", \"egress-proxy\", \"--dir\", \"/egress\"]\n"
		data, err := h.binary()
		if err != nil {
			return "", err
		}
		// Two servers of this user starting on a new engine would build
		// it twice, leaving one image untagged under a running proxy.
		unlock, err := images.LockBuild(ctx, ref)
		if err != nil {
			return "", err
		}
		defer unlock()
		if _, err := h.b.eng.ImageInspect(ctx, ref); err == nil {
			return ref, nil
		}
		err = images.BuildFiles(ctx, h.b.builder, ref, map[string][]byte{"Dockerfile": []byte(dockerfile), "codex-connector": data}, map[string]int64{"codex-connector": 0o755})
		return ref, err
	}
	if err != nil {
		return "", Error("inspect the egress proxy image", err)
	}
	return ref, nil
}

// binary reads the binary to build the helper image from, and checks that
// it is still the one whose hash names the image.
func (h *Helpers) binary() ([]byte, error) {
	data, err := os.ReadFile(h.cfg.Binary)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", h.cfg.Binary, err)
	}
	if sum := sha256.Sum256(data); helperRefOf(sum[:]) != h.ref {
		return nil, fmt.Errorf("the codex-connector binary %s changed since this process started (reinstalled?) — restart Claude Code (and `codex-connector run`s) so that they run the new one", h.cfg.Binary)
	}
	return data, nil
}

// CheckStatic refuses a dynamically linked binary: it could not run in the
// FROM scratch helper image nor in every Codex image.
func CheckStatic(path string) error {
	f, err := elf.Open(path)
	if err != nil {
		return fmt.Errorf("read %s: %w", path, err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return fmt.Errorf("%s is dynamically linked; tasks need a static build: `make install` (CGO_ENABLED=0)", path)
		}
	}
	return nil
}

// EnsureProxy makes sure the egress proxy container runs the current
// binary. Replacing it is safe while tasks run: their sockets live in
// directories the new proxy serves again. ProxyDir must exist.
func (h *Helpers) EnsureProxy(ctx context.Context) error {
	// Whose the proxy's files are inside depends on the engine's user
	// namespace: looked at first (once), outside the lock Look's probe
	// takes too.
	if _, err := h.Look(ctx, ""); err != nil {
		return err
	}
	// Mapped before the lock: mapUser takes the facts' lock, which Look
	// holds while its probe takes this one.
	user, err := h.b.mapUser(h.cfg.ProxyUser)
	if err != nil {
		return err
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	ref, err := h.imageLocked(ctx)
	if err != nil {
		return err
	}
	name := h.cfg.ProxyName
	info, err := h.b.eng.ContainerInspect(ctx, name)
	switch {
	case err == nil && info.Config != nil && info.Config.Image == ref && info.State != nil && info.State.Running:
		return nil
	case err == nil:
		if err := h.b.remove(ctx, name); err != nil {
			return err
		}
	case !cerrdefs.IsNotFound(err):
		return Error("inspect the egress proxy", err)
	}
	// The proxy runs as the server's user, so the sockets it makes in the
	// user's data directory need no capability. Its memory and pids are
	// capped, and GOMEMLIMIT keeps the Go heap under the cap, so that a
	// flood makes it collect garbage sooner rather than be killed.
	pids := int64(ProxyPids)
	cfg := &container.Config{Image: ref, User: user,
		Env:    []string{fmt.Sprintf("GOMEMLIMIT=%dMiB", ProxyMemory*3/4>>20)},
		Labels: h.cfg.ProxyLabels}
	host := &container.HostConfig{
		// The policies are read-only to the proxy as well: it only reads
		// them; the sockets directory is where it makes sockets.
		Mounts: []mount.Mount{
			{Type: mount.TypeBind, Source: filepath.Join(h.cfg.ProxyDir, egress.PoliciesDir), Target: "/egress/" + egress.PoliciesDir, ReadOnly: true},
			{Type: mount.TypeBind, Source: filepath.Join(h.cfg.ProxyDir, egress.SocketsDir), Target: "/egress/" + egress.SocketsDir},
		},
		RestartPolicy:  container.RestartPolicy{Name: container.RestartPolicyUnlessStopped},
		ReadonlyRootfs: true,
		CapDrop:        []string{"ALL"},
		SecurityOpt:    []string{"no-new-privileges"},
		NetworkMode:    "bridge",
		LogConfig:      container.LogConfig{Type: "json-file", Config: map[string]string{"max-size": "10m", "max-file": "3"}},
		Resources: container.Resources{
			Memory:     ProxyMemory,
			MemorySwap: ProxyMemory,
			PidsLimit:  &pids,
		},
	}
	if ca := h.cfg.CABundle; ca != "" {
		// Where Go looks first on Linux.
		host.Mounts = append(host.Mounts, mount.Mount{Type: mount.TypeBind, Source: ca, Target: "/etc/ssl/certs/ca-certificates.crt", ReadOnly: true})
	}
	created, err := h.b.eng.ContainerCreate(ctx, cfg, host, nil, nil, name)
	if cerrdefs.IsConflict(err) {
		return nil // another server created it at the same moment
	}
	if err != nil {
		return Error("create the egress proxy", err)
	}
	if err := h.b.eng.ContainerStart(ctx, created.ID, container.StartOptions{}); err != nil {
		return Error("start the egress proxy", err)
	}
	return nil
}

// ProxyRunning says whether the egress proxy container runs.
func (h *Helpers) ProxyRunning(ctx context.Context) (bool, error) {
	c, err := h.b.eng.ContainerInspect(ctx, h.cfg.ProxyName)
	if cerrdefs.IsNotFound(err) {
		return false, nil
	}
	if err != nil {
		return false, Error("inspect the egress proxy", err)
	}
	return c.State != nil && c.State.Running, nil
}

// RemoveProxy removes the egress proxy container; any launch that needs it
// starts it again.
func (h *Helpers) RemoveProxy(ctx context.Context) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.b.remove(ctx, h.cfg.ProxyName)
}

// RemoveOldImages removes the helper images of other binaries (left by
// upgrades and rebuilds) older than age that no container uses and that
// carry ImageLabels: the engine may be shared, and another user's server
// may be about to use its own. It returns the tags it removed.
func (h *Helpers) RemoveOldImages(ctx context.Context, age time.Duration) ([]string, error) {
	current, _ := h.ImageRef()
	f := labelFilter(h.cfg.ImageLabels)
	f.Add("reference", HelperRepo+":*")
	imgs, err := h.b.eng.ImageList(ctx, image.ListOptions{Filters: f})
	if err != nil {
		return nil, Error("list egress proxy images", err)
	}
	var removed []string
	for _, img := range imgs {
		if time.Since(time.Unix(img.Created, 0)) < age {
			continue
		}
		for _, tag := range img.RepoTags {
			if tag == current {
				continue
			}
			// Not forced: the engine keeps an image a container uses.
			if _, err := h.b.eng.ImageRemove(ctx, tag, image.RemoveOptions{}); err == nil {
				removed = append(removed, tag)
			}
		}
	}
	return removed, nil
}

// VolumeDir is a volume, and where a helper mounts it.
type VolumeDir struct{ Volume, Dir string }

// ReadyVolumes runs the one-shot helper that hands the top directory of
// each volume to uid:gid: a new volume belongs to root. As root with no
// capability but CHOWN and FOWNER (to chmod what it no longer owns), and no
// network, it does only that. labels are its container's.
func (h *Helpers) ReadyVolumes(ctx context.Context, uid, gid string, volumes []VolumeDir, labels map[string]string) error {
	ref, err := h.Image(ctx)
	if err != nil {
		return err
	}
	if _, err := h.Look(ctx, ""); err != nil {
		return err
	}
	// The helper chowns to the ids inside that are the user's.
	inside, err := h.b.mapUser(uid + ":" + gid)
	if err != nil {
		return err
	}
	uid, gid, _ = strings.Cut(inside, ":")
	var ms []mount.Mount
	var dirs []string
	for _, v := range volumes {
		// No copy-up: an image with files where the volume goes must not
		// seed the user's cache (nor give its top directory the image's
		// owner).
		ms = append(ms, mount.Mount{Type: mount.TypeVolume, Source: v.Volume, Target: v.Dir, VolumeOptions: &mount.VolumeOptions{NoCopy: true}})
		dirs = append(dirs, v.Dir)
	}
	cfg := &container.Config{Image: ref, User: "0:0", Entrypoint: []string{"/codex-connector", "cache-init", uid, gid},
		Cmd: dirs, Labels: labels}
	host := &container.HostConfig{Mounts: ms, NetworkMode: "none", ReadonlyRootfs: true,
		CapDrop: []string{"ALL"}, CapAdd: []string{"CHOWN", "FOWNER"}, SecurityOpt: []string{"no-new-privileges"}}
	_, _, err = h.runOnce(ctx, "ready the cache volumes of user "+uid, cfg, host)
	var exit *helperExit
	if errors.As(err, &exit) {
		return fmt.Errorf("%w — remove them with `codex-connector caches remove` and run the task again", err)
	}
	return err
}
