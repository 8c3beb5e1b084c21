// Package docker is the backend on a Docker engine the server shares its
// filesystem with (the local one): everything that speaks the Docker API
// for a task's run — the container made from a run spec, its start behind
// the gate, the wait for its exit, its logs, its stop and removal — with a
// deadline on every engine call.
package docker

import (
	"context"

	"github.com/codex-connector/codex-connector/backend"
)

// Backend runs tasks' runs as containers of one Docker engine.
type Backend struct {
	eng Engine
}

// New is the backend of the engine eng, each of whose calls gets a
// deadline (deadlines.go).
func New(eng Engine) *Backend { return &Backend{eng: WithDeadlines(eng)} }

// Capabilities of a local engine: it binds the server's own paths.
// Whether its runs' uids are mapped, and which runtime they use, are not
// told apart yet: every run is taken as the engine's default.
func (b *Backend) Capabilities() backend.Capabilities {
	return backend.Capabilities{SharedFilesystem: true}
}

// Inspect is the run of ref as the engine sees it now.
func (b *Backend) Inspect(ctx context.Context, ref backend.Ref) (backend.State, error) {
	info, err := b.eng.ContainerInspect(ctx, ref.Key())
	if err != nil {
		return backend.State{}, classify(err)
	}
	return stateOf(info), nil
}

var _ backend.Backend = (*Backend)(nil)
