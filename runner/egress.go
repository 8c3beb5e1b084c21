package runner

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/codex-connector/codex-connector/backend/docker"
	"github.com/codex-connector/codex-connector/internal/hostfs"
	"github.com/codex-connector/codex-connector/runner/egress"
	"github.com/codex-connector/codex-connector/store"
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

// ensureProxy makes sure the egress proxy container of this home runs the
// current binary, in the egress directory it serves.
func (r *Runner) ensureProxy(ctx context.Context) error {
	if err := r.makeEgressDirs(); err != nil {
		return err
	}
	return r.helpers.EnsureProxy(ctx)
}

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
	deny, err := r.helpers.Subnets(ctx)
	if err != nil {
		return err
	}
	pol := egress.Policy{TaskID: t.ID, Allow: allow, Deny: deny, MaxConns: r.cfg.Egress.MaxConns, IdleSeconds: int(r.cfg.Egress.Idle / time.Second), Routes: routes}
	// The socket directory first (in the egress directory ensureProxy
	// made): the proxy serves a policy only where it finds one. The task's
	// user, who may not be the server's, needs to pass through it to the
	// socket, and nothing else: 0711.
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
			return fmt.Errorf("the egress proxy (container %s) did not serve task %s within 20s: %s", r.proxyName(), t.ID, r.helpers.ProxyTail(ctx))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
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
// nothing: whether binary, which would run it, can, and whether the proxy
// runs or keeps failing (docker.ProxyStatus).
func EgressStatus(ctx context.Context, eng docker.Engine, home, binary, version string) (string, error) {
	return docker.ProxyStatus(ctx, eng, ProxyName(home), binary, LabelVersion, version)
}
