package runner

import (
	"context"
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/codex-connector/codex-connector/images"
	"github.com/codex-connector/codex-connector/runner/egress"
	"github.com/codex-connector/codex-connector/store"
	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/mount"
)

// Egress configures the network of restricted tasks (read-only and
// workspace-write): no network in their containers, and the egress proxy as
// the only way out.
type Egress struct {
	// Binary is a static codex-connector binary: it runs the proxy (in its
	// own FROM scratch container) and the bridge inside task containers.
	Binary string
	// ModelHosts (host:port) are reachable at every restricted level: Codex
	// cannot work without its model API.
	ModelHosts []string
	// AllowedHosts (host:port) are reachable by workspace-write tasks too.
	AllowedHosts []string
}

// DefaultModelHosts is OpenAI's API; a custom model provider adds its host.
var DefaultModelHosts = []string{"api.openai.com:443"}

// Paths inside a restricted task's container.
const (
	bridgeBinary = "/opt/codex-connector/bin/codex-connector"
	egressMount  = "/codex-connector-egress"
	bridgeListen = "127.0.0.1:3128"
	// LabelComponent marks helper containers, such as the egress proxy.
	LabelComponent = "codex-connector.component"
)

func restricted(sandbox string) bool { return sandbox == ReadOnly || sandbox == WorkspaceWrite }

func (r *Runner) egressDir(id string) string { return filepath.Join(r.cfg.Home, "egress", id) }

func (r *Runner) proxyName() string { return ProxyName(r.cfg.Home) }

// ProxyName is the egress proxy container of a data directory: the servers
// that share a home share its proxy.
func ProxyName(home string) string {
	sum := sha256.Sum256([]byte(home))
	return "codex-connector-egress-" + hex.EncodeToString(sum[:4])
}

// checkStatic refuses a dynamically linked binary: it could not run in the
// FROM scratch proxy image nor in every Codex image.
func checkStatic(path string) error {
	f, err := elf.Open(path)
	if err != nil {
		return fmt.Errorf("read %s: %w", path, err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return fmt.Errorf("%s is dynamically linked; restricted sandboxes need a static build: `make install` (CGO_ENABLED=0)", path)
		}
	}
	return nil
}

// ensureProxy makes sure the egress proxy container of this home runs the
// current binary. Replacing it is safe while tasks run: their sockets live
// in directories the new proxy serves again.
func (r *Runner) ensureProxy(ctx context.Context) error {
	r.proxyMu.Lock()
	defer r.proxyMu.Unlock()
	ref, err := r.proxyImage(ctx)
	if err != nil {
		return err
	}
	name := r.proxyName()
	info, err := r.engine.ContainerInspect(ctx, name)
	switch {
	case err == nil && info.Config != nil && info.Config.Image == ref && info.State != nil && info.State.Running:
		return nil
	case err == nil:
		if err := r.remove(ctx, name); err != nil {
			return err
		}
	case !cerrdefs.IsNotFound(err):
		return engineError("inspect the egress proxy", err)
	}
	dir := filepath.Join(r.cfg.Home, "egress")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	// The proxy runs as the server's user, so the sockets it makes in the
	// user's data directory need no capability.
	cfg := &container.Config{Image: ref, User: fmt.Sprintf("%d:%d", os.Geteuid(), os.Getegid()),
		Labels: map[string]string{LabelComponent: "egress", LabelVersion: r.cfg.Version, LabelHomePath: r.cfg.Home}}
	host := &container.HostConfig{
		Mounts:         []mount.Mount{{Type: mount.TypeBind, Source: dir, Target: "/egress"}},
		RestartPolicy:  container.RestartPolicy{Name: container.RestartPolicyUnlessStopped},
		ReadonlyRootfs: true,
		CapDrop:        []string{"ALL"},
		SecurityOpt:    []string{"no-new-privileges"},
		NetworkMode:    "bridge",
		LogConfig:      container.LogConfig{Type: "json-file", Config: map[string]string{"max-size": "10m", "max-file": "3"}},
	}
	created, err := r.engine.ContainerCreate(ctx, cfg, host, nil, nil, name)
	if cerrdefs.IsConflict(err) {
		return nil // another server created it at the same moment
	}
	if err != nil {
		return engineError("create the egress proxy", err)
	}
	if err := r.engine.ContainerStart(ctx, created.ID, container.StartOptions{}); err != nil {
		return engineError("start the egress proxy", err)
	}
	return nil
}

// proxyImage returns the egress proxy image of this binary, building it if
// the engine lacks it. The binary cannot change under a running process, so
// it is checked and hashed once, not on every task's start.
func (r *Runner) proxyImage(ctx context.Context) (string, error) {
	if _, err := r.proxyRefLocked(); err != nil {
		return "", err
	}
	_, err := r.engine.ImageInspect(ctx, r.proxyRef)
	if cerrdefs.IsNotFound(err) {
		dockerfile := "FROM scratch\nCOPY codex-connector /codex-connector\nENTRYPOINT [\"/codex-connector\", \"egress-proxy\", \"--dir\", \"/egress\"]\n"
		err = images.BuildFiles(ctx, r.imageBuilder, r.proxyRef, map[string][]byte{"Dockerfile": []byte(dockerfile), "codex-connector": r.proxyData}, map[string]int64{"codex-connector": 0o755})
		return r.proxyRef, err
	}
	if err != nil {
		return "", engineError("inspect the egress proxy image", err)
	}
	return r.proxyRef, nil
}

// proxyRepo is the repository of egress proxy images; the tag is the hash
// of the binary.
const proxyRepo = "codex-connector/egress"

// proxyRefLocked reads and hashes the binary once and returns the proxy
// image reference of it. proxyMu must be held.
func (r *Runner) proxyRefLocked() (string, error) {
	if r.proxyData != nil {
		return r.proxyRef, nil
	}
	bin := r.cfg.Egress.Binary
	if bin == "" {
		return "", errors.New("restricted sandboxes need the codex-connector binary for the egress proxy, and none is configured")
	}
	if err := checkStatic(bin); err != nil {
		return "", err
	}
	data, err := os.ReadFile(bin)
	if err != nil {
		return "", fmt.Errorf("read %s: %w", bin, err)
	}
	sum := sha256.Sum256(data)
	r.proxyData, r.proxyRef = data, proxyRepo+":"+hex.EncodeToString(sum[:6])
	return r.proxyRef, nil
}

// prepareEgress writes the task's policy and waits for the proxy to serve
// its socket, which must exist before the container that mounts it.
func (r *Runner) prepareEgress(ctx context.Context, t *store.Task) error {
	if err := r.ensureProxy(ctx); err != nil {
		return err
	}
	allow := append([]string(nil), r.cfg.Egress.ModelHosts...)
	if t.Sandbox == WorkspaceWrite {
		allow = append(allow, r.cfg.Egress.AllowedHosts...)
	}
	dir := r.egressDir(t.ID)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("create egress directory of task %s: %w", t.ID, err)
	}
	data, _ := json.Marshal(egress.Policy{TaskID: t.ID, Allow: allow})
	if err := writeFileAtomic(filepath.Join(dir, "policy.json"), data); err != nil {
		return fmt.Errorf("write egress policy of task %s: %w", t.ID, err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		if _, err := os.Stat(filepath.Join(dir, "sock")); err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the egress proxy (container %s) did not serve task %s within 20s: see `docker logs %s`", r.proxyName(), t.ID, r.proxyName())
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// endEgress removes the task's policy: the proxy stops serving it.
func (r *Runner) endEgress(id string) {
	if err := os.RemoveAll(r.egressDir(id)); err != nil {
		r.logf("task %s: remove egress directory: %v", id, err)
	}
}
