package runner

import (
	"context"
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"time"

	"github.com/codex-connector/codex-connector/images"
	"github.com/codex-connector/codex-connector/internal/hostfs"
	"github.com/codex-connector/codex-connector/runner/egress"
	"github.com/codex-connector/codex-connector/store"
	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/mount"
	"github.com/docker/docker/api/types/network"
)

// Egress configures the network of restricted tasks (read-only and
// workspace-write): no network in their containers, and the egress proxy as
// the only way out.
type Egress struct {
	// ModelHosts (host:port) are reachable at every restricted level, by
	// CONNECT: the hosts of a ChatGPT login. Model providers with a route
	// (Config.Routes) are reached through the route, never this way.
	ModelHosts []string
	// AllowedHosts (host:port) are reachable by workspace-write tasks too.
	AllowedHosts []string
	// MaxConns caps one task's open connections through the proxy, and
	// Idle closes a connection that carried nothing for that long (0: the
	// proxy's defaults, egress.DefaultMaxConns and egress.DefaultIdle).
	MaxConns int
	Idle     time.Duration
	// CABundle is the host's file of CA certificates (PEM), which the
	// proxy uses to verify the https upstreams of model routes: its own
	// image is FROM scratch. "" leaves them unverifiable.
	CABundle string
}

// Paths inside a restricted task's container.
const (
	bridgeBinary = "/opt/codex-connector/bin/codex-connector"
	egressMount  = "/codex-connector-egress"
	bridgeListen = "127.0.0.1:3128"
	// LabelComponent marks helper containers, such as the egress proxy.
	LabelComponent = "codex-connector.component"
)

func restricted(sandbox string) bool { return sandbox == ReadOnly || sandbox == WorkspaceWrite }

// needsEgress says whether a task's container gets the bridge and a proxy
// socket: a restricted one for all its network, any one for its model
// routes, which carry the keys it must not hold.
func (r *Runner) needsEgress(t *store.Task) bool {
	return restricted(t.Sandbox) || len(r.cfg.Routes) > 0
}

// The egress directory of a home (see package egress for its layout):
// policies/<id>.json, which no task mounts, and sockets/<id>/sock, whose
// directory the task alone mounts, read-only.
func (r *Runner) egressRoot() string { return filepath.Join(r.cfg.Home, "egress") }

func (r *Runner) policyPath(id string) string {
	return filepath.Join(r.egressRoot(), egress.PoliciesDir, id+".json")
}

func (r *Runner) socketDir(id string) string {
	return filepath.Join(r.egressRoot(), egress.SocketsDir, id)
}

// legacyEgressDir is where an earlier version kept a task's policy and
// socket together, mounted writable into the task; only removed now.
func (r *Runner) legacyEgressDir(id string) string { return filepath.Join(r.egressRoot(), id) }

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
			return fmt.Errorf("%s is dynamically linked; tasks need a static build: `make install` (CGO_ENABLED=0)", path)
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
	if err := r.makeEgressDirs(); err != nil {
		return err
	}
	// The proxy runs as the server's user, so the sockets it makes in the
	// user's data directory need no capability. Its memory and pids are
	// capped, and GOMEMLIMIT keeps the Go heap under the cap, so that a
	// flood makes it collect garbage sooner rather than be killed.
	pids := int64(proxyPids)
	cfg := &container.Config{Image: ref, User: fmt.Sprintf("%d:%d", os.Geteuid(), os.Getegid()),
		Env:    []string{fmt.Sprintf("GOMEMLIMIT=%dMiB", proxyMemory*3/4>>20)},
		Labels: map[string]string{LabelComponent: "egress", LabelVersion: r.cfg.Version, LabelHomePath: r.cfg.Home}}
	root := r.egressRoot()
	host := &container.HostConfig{
		// The policies are read-only to the proxy as well: it only reads
		// them; the sockets directory is where it makes sockets.
		Mounts: []mount.Mount{
			{Type: mount.TypeBind, Source: filepath.Join(root, egress.PoliciesDir), Target: "/egress/" + egress.PoliciesDir, ReadOnly: true},
			{Type: mount.TypeBind, Source: filepath.Join(root, egress.SocketsDir), Target: "/egress/" + egress.SocketsDir},
		},
		RestartPolicy:  container.RestartPolicy{Name: container.RestartPolicyUnlessStopped},
		ReadonlyRootfs: true,
		CapDrop:        []string{"ALL"},
		SecurityOpt:    []string{"no-new-privileges"},
		NetworkMode:    "bridge",
		LogConfig:      container.LogConfig{Type: "json-file", Config: map[string]string{"max-size": "10m", "max-file": "3"}},
		Resources: container.Resources{
			Memory:     proxyMemory,
			MemorySwap: proxyMemory,
			PidsLimit:  &pids,
		},
	}
	if ca := r.cfg.Egress.CABundle; ca != "" {
		// Where Go looks first on Linux.
		host.Mounts = append(host.Mounts, mount.Mount{Type: mount.TypeBind, Source: ca, Target: "/etc/ssl/certs/ca-certificates.crt", ReadOnly: true})
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

// Limits of the egress proxy's container. Each connection costs it about
// 100 KiB (buffers and goroutines), and each task holds at most
// Egress.MaxConns of them.
const (
	proxyMemory = 512 << 20
	proxyPids   = 256
)

// makeEgressDirs makes the egress directory and its two halves, owner-only:
// the tasks reach their sockets through their own mounts, not through
// these directories.
func (r *Runner) makeEgressDirs() error {
	for _, dir := range []string{r.egressRoot(), filepath.Join(r.egressRoot(), egress.PoliciesDir), filepath.Join(r.egressRoot(), egress.SocketsDir)} {
		if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
			return fmt.Errorf("create %s: %w", dir, err)
		}
		fi, err := os.Lstat(dir)
		if err != nil {
			return err
		}
		if !fi.IsDir() {
			return fmt.Errorf("%s is not a directory: remove it, and codex-connector makes it again", dir)
		}
		if fi.Mode().Perm() != 0o700 {
			if err := os.Chmod(dir, 0o700); err != nil {
				return err
			}
		}
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
	if cerrdefs.IsNotFound(err) && r.imageBuilder == nil {
		return "", fmt.Errorf("the egress proxy image %s is missing, and this engine client cannot build images", r.proxyRef)
	}
	if cerrdefs.IsNotFound(err) {
		// Labelled with the home it was built for: housekeeping removes
		// only its own home's images, never another user's. Not with
		// LabelHome: every container of the image inherits its labels, and
		// LabelHome marks a home's task containers.
		dockerfile := "FROM scratch\nCOPY codex-connector /codex-connector\nLABEL " + LabelProxyImageHome + "=" + homeLabel(r.cfg.Home) + "\n" +
			"ENTRYPOINT [\"/codex-connector\", \"egress-proxy\", \"--dir\", \"/egress\"]\n"
		data, err := r.proxyBinary()
		if err != nil {
			return "", err
		}
		// Two servers of this user starting on a new engine would build
		// it twice, leaving one image untagged under a running proxy.
		unlock, err := images.LockBuild(ctx, r.proxyRef)
		if err != nil {
			return "", err
		}
		defer unlock()
		if _, err := r.engine.ImageInspect(ctx, r.proxyRef); err == nil {
			return r.proxyRef, nil
		}
		err = images.BuildFiles(ctx, r.imageBuilder, r.proxyRef, map[string][]byte{"Dockerfile": []byte(dockerfile), "codex-connector": data}, map[string]int64{"codex-connector": 0o755})
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
	if r.proxyRef != "" {
		return r.proxyRef, nil
	}
	bin := r.cfg.HelperBinary
	if bin == "" {
		return "", errors.New("tasks need the codex-connector binary (it holds each container's gate and runs the egress proxy), and none is configured")
	}
	if err := checkStatic(bin); err != nil {
		return "", err
	}
	// Hashed as it is read, not held: the binary is some 17 MB, which a
	// server kept for its life only to build an image it seldom builds.
	f, err := os.Open(bin)
	if err != nil {
		return "", fmt.Errorf("read %s: %w", bin, err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("read %s: %w", bin, err)
	}
	r.proxyRef = proxyRefOf(h.Sum(nil))
	return r.proxyRef, nil
}

func proxyRefOf(sum []byte) string { return proxyRepo + ":" + hex.EncodeToString(sum[:6]) }

// proxyBinary reads the binary to build the proxy image from, and checks
// that it is still the one whose hash names the image.
func (r *Runner) proxyBinary() ([]byte, error) {
	data, err := os.ReadFile(r.cfg.HelperBinary)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", r.cfg.HelperBinary, err)
	}
	if sum := sha256.Sum256(data); proxyRefOf(sum[:]) != r.proxyRef {
		return nil, fmt.Errorf("the codex-connector binary %s changed since this process started (reinstalled?) — restart Claude Code (and `codex-connector run`s) so that they run the new one", r.cfg.HelperBinary)
	}
	return data, nil
}

// prepareEgress writes the task's policy, for the proxy to serve a socket
// for it in the task's socket directory, which the container mounts. A
// danger-full-access task keeps its own network: its policy allows no
// host, and holds its model routes alone.
func (r *Runner) prepareEgress(ctx context.Context, t *store.Task, routes []egress.Route) error {
	if !store.ValidID(t.ID) {
		return fmt.Errorf("task id %q is not valid", t.ID)
	}
	if err := r.ensureProxy(ctx); err != nil {
		return err
	}
	var allow []string
	if restricted(t.Sandbox) {
		allow = append(allow, r.cfg.Egress.ModelHosts...)
	}
	if t.Sandbox == WorkspaceWrite {
		allow = append(allow, r.cfg.Egress.AllowedHosts...)
	}
	deny, err := r.dockerSubnets(ctx)
	if err != nil {
		return err
	}
	pol := egress.Policy{TaskID: t.ID, Allow: allow, Deny: deny, MaxConns: r.cfg.Egress.MaxConns, IdleSeconds: int(r.cfg.Egress.Idle / time.Second), Routes: routes}
	// The socket directory first: the proxy serves a policy only where it
	// finds one. The task's user, who may not be the server's, needs to
	// pass through it to the socket, and nothing else: 0711.
	if err := r.makeEgressDirs(); err != nil {
		return err
	}
	dir := r.socketDir(t.ID)
	if err := os.Mkdir(dir, 0o711); err != nil && !errors.Is(err, os.ErrExist) {
		return fmt.Errorf("create the egress socket directory of task %s: %w", t.ID, err)
	}
	if err := os.Chmod(dir, 0o711); err != nil {
		return fmt.Errorf("create the egress socket directory of task %s: %w", t.ID, err)
	}
	if err := pol.Check(); err != nil {
		return fmt.Errorf("the egress policy of task %s: %w — see Credentials in the README", t.ID, err)
	}
	data, _ := json.Marshal(pol)
	if err := hostfs.WriteFileAtomic(r.policyPath(t.ID), data); err != nil {
		return fmt.Errorf("write egress policy of task %s: %w", t.ID, err)
	}
	// A socket left from an earlier launch of this task goes, so that the
	// socket waited for below is one the proxy made after this policy.
	sock := filepath.Join(dir, egress.SocketName)
	if err := os.Remove(sock); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove the old egress socket of task %s: %w", t.ID, err)
	}
	return nil
}

// awaitEgress waits for the proxy to serve the socket of task t. The
// socket appears in a directory the container binds, so the wait overlaps
// the container's creation and start (the proxy looks for new policies
// every 50 ms); it must end before the gate opens, since Codex reaches the
// model only through it.
func (r *Runner) awaitEgress(ctx context.Context, t *store.Task) error {
	sock := filepath.Join(r.socketDir(t.ID), egress.SocketName)
	deadline := time.Now().Add(20 * time.Second)
	for {
		if fi, err := os.Lstat(sock); err == nil && fi.Mode().Type() == os.ModeSocket {
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

// dockerSubnets lists the subnets of the engine's networks, which the proxy
// refuses besides the private ranges: a user may have given Docker
// addresses outside them. The proxy's own network is among them.
func (r *Runner) dockerSubnets(ctx context.Context) ([]string, error) {
	nets, err := r.engine.NetworkList(ctx, network.ListOptions{})
	if err != nil {
		return nil, engineError("list the Docker networks for the egress policy", err)
	}
	var out []string
	for _, n := range nets {
		for _, c := range n.IPAM.Config {
			if pfx, err := netip.ParsePrefix(c.Subnet); err == nil {
				out = append(out, pfx.Masked().String())
			}
		}
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

// endEgress stops the proxy serving the task: the policy first (the proxy
// drops the task and closes its connections), then its socket directory.
func (r *Runner) endEgress(id string) {
	if err := r.removeEgress(id); err != nil {
		r.logf("task %s: %v", id, err)
	}
}

// removeEgress removes every piece of a task's egress: its policy, its
// socket directory and the directory an earlier version kept. Removing what
// is already gone is success.
func (r *Runner) removeEgress(id string) error {
	if !store.ValidID(id) {
		return fmt.Errorf("remove egress of task %q: not a task id", id)
	}
	var errs []error
	if err := os.Remove(r.policyPath(id)); err != nil && !errors.Is(err, os.ErrNotExist) {
		errs = append(errs, fmt.Errorf("remove egress policy: %w", err))
	}
	// And one half-written by a process killed as it wrote the policy.
	if err := hostfs.RemoveTemps(r.policyPath(id)); err != nil {
		errs = append(errs, err)
	}
	// RemoveAll does not follow symlinks; the socket directory is the
	// server's and the proxy's alone anyway. The legacy directory was
	// writable by its task: what it planted is removed, never followed.
	for _, dir := range []string{r.socketDir(id), r.legacyEgressDir(id)} {
		err := os.RemoveAll(dir)
		// A proxy that read the policy just before it went may be making
		// the socket: once it has seen the policy gone, it makes no more.
		for try := 0; err != nil && errors.Is(err, syscall.ENOTEMPTY) && try < 5; try++ {
			time.Sleep(100 * time.Millisecond)
			err = os.RemoveAll(dir)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("remove egress directory: %w", err))
		}
	}
	return errors.Join(errs...)
}

// EgressStatus says how the egress proxy of the home stands, changing
// nothing: whether binary, which would run it, can (a dynamically linked
// one cannot run FROM scratch), and whether the proxy runs or keeps
// failing. A proxy not running is no fault: the first restricted task
// starts it.
func EgressStatus(ctx context.Context, eng interface {
	ContainerInspect(ctx context.Context, id string) (container.InspectResponse, error)
}, home, binary, version string) (string, error) {
	if err := checkStatic(binary); err != nil {
		return "", err
	}
	name := ProxyName(home)
	info, err := eng.ContainerInspect(ctx, name)
	if cerrdefs.IsNotFound(err) {
		return name + " is not running; the first read-only or workspace-write task starts it", nil
	}
	if err != nil {
		return "", engineError("inspect the egress proxy", err)
	}
	st := info.State
	if st == nil {
		return "", fmt.Errorf("the egress proxy %s has no state — `docker rm -f %s` lets the next task start it afresh", name, name)
	}
	// Stopped or being removed (a follower that exits removes it) is no
	// fault; restarting, dead or out of memory is.
	failing := st.Restarting || st.Dead || st.OOMKilled || st.Status == "exited" && info.RestartCount > 0
	if !st.Running && !failing {
		return fmt.Sprintf("%s is %s; the first read-only or workspace-write task starts it", name, st.Status), nil
	}
	if failing {
		status := fmt.Sprintf("%s (exit code %d", st.Status, st.ExitCode)
		if st.OOMKilled {
			status += ", out of memory"
		}
		status += ")"
		return "", fmt.Errorf("the egress proxy %s is %s after %d restarts — see `docker logs %s`; `docker rm -f %s` lets the next task start it afresh", name, status, info.RestartCount, name, name)
	}
	since := st.StartedAt
	if t, err := time.Parse(time.RFC3339Nano, since); err == nil {
		since = t.Local().Format("2006-01-02 15:04")
	}
	out := fmt.Sprintf("%s runs (since %s", name, since)
	if info.RestartCount > 0 {
		out += fmt.Sprintf(", after %d restarts", info.RestartCount)
	}
	out += ")"
	if info.Config != nil && info.Config.Labels[LabelVersion] != version {
		out += fmt.Sprintf("; codex-connector %s started it, and the next task replaces it with this one's", info.Config.Labels[LabelVersion])
	}
	return out, nil
}
