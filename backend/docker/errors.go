package docker

import (
	"fmt"
	"strings"

	"github.com/codex-connector/codex-connector/backend"
	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/client"
)

// Error says what operation op met err, and adds what a user can do when
// the engine itself is the problem, so that a stopped daemon reads as such
// and not as a failed task. The error wraps err and the backend's error
// its kind is (backend.ErrUnreachable, ErrTrouble, ErrNotFound).
func Error(op string, err error) error {
	if client.IsErrConnectionFailed(err) {
		return Classify(fmt.Errorf("%s: cannot reach the Docker engine: %w — start Docker (e.g. `sudo systemctl start docker`), or point DOCKER_HOST at its socket", op, err))
	}
	if strings.Contains(err.Error(), "running in root network namespace") {
		// gVisor before its fix for issue #10704 takes a container's
		// namespace for the host's on kernels from 6.11 on.
		return Classify(fmt.Errorf("%s: %w — this runsc cannot start containers with its own network stack on this kernel (gVisor issue #10704): use a newer runsc (`make runsc` builds one), or add \"--network=host\" to its runtimeArgs in the engine's daemon.json, which hands the task's networking to the host kernel's stack (in the container's own network namespace) instead of gVisor's", op, err))
	}
	return Classify(fmt.Errorf("%s: %w", op, err))
}

// classified is an error that also is the backend's kind of it.
type classified struct {
	err  error
	kind error
}

func (c *classified) Error() string   { return c.err.Error() }
func (c *classified) Unwrap() []error { return []error{c.err, c.kind} }

// Classify marks err with its backend kind, keeping its text; an error of
// no kind is returned as it is.
func Classify(err error) error {
	var kind error
	switch {
	case err == nil:
		return nil
	case client.IsErrConnectionFailed(err):
		kind = backend.ErrUnreachable
	case cerrdefs.IsNotFound(err):
		kind = backend.ErrNotFound
	case (cerrdefs.IsInternal(err) || cerrdefs.IsUnavailable(err)) && !cannotMake(err):
		// As a shutting-down engine answers ("failed to update store for
		// object type *libnetwork.endpoint").
		kind = backend.ErrTrouble
	default:
		return err
	}
	return &classified{err: err, kind: kind}
}

// cannotMake says an engine's internal error is the run's own: its runtime
// cannot start it, or a mount source is not the engine's to open. Trying
// again gets the same answer (and a runtime that fails at start may leave
// processes each time), so the task fails at once with the reason.
func cannotMake(err error) bool {
	msg := err.Error()
	// Not "OCI runtime" alone: runc under container churn fails now and
	// then ("read init-p: connection reset by peer"), and a second try
	// works.
	for _, mark := range []string{"permission denied", "making volume mountpoint", "error mounting", "unknown or invalid runtime name", "running in root network namespace"} {
		if strings.Contains(msg, mark) {
			return true
		}
	}
	return false
}
