package docker

import (
	"fmt"

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
	case cerrdefs.IsInternal(err) || cerrdefs.IsUnavailable(err):
		// As a shutting-down engine answers ("failed to update store for
		// object type *libnetwork.endpoint").
		kind = backend.ErrTrouble
	default:
		return err
	}
	return &classified{err: err, kind: kind}
}
