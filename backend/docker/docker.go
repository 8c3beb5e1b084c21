// Package docker is the backend on a Docker engine the server shares its
// filesystem with (the local one): everything that speaks the Docker API
// for a task's run — the container made from a run spec, its start behind
// the gate, the wait for its exit, its logs, its stop and removal — with a
// deadline on every engine call that does not last as long as a run or a
// build (deadlines.go).
package docker

import (
	"context"
	"net/netip"
	"slices"
	"sync"

	"github.com/codex-connector/codex-connector/backend"
	"github.com/docker/docker/api/types/network"
)

// Backend runs tasks' runs as containers of one Docker engine.
type Backend struct {
	eng Engine
	// builder builds the helper image; nil when eng cannot build.
	builder ImageBuilder
	// facts are the engine's, by runtime, once looked at (Helpers.Look):
	// what an engine enforces does not change while it runs.
	factsMu sync.Mutex
	facts   map[string]Facts
}

// New is the backend of the engine eng, each of whose calls gets a
// deadline (deadlines.go).
func New(eng Engine) *Backend {
	b := &Backend{eng: WithDeadlines(eng)}
	if ib, ok := eng.(ImageBuilder); ok {
		b.builder = ib
	}
	return b
}

// Capabilities of a local engine: it binds the server's own paths; its
// runs' uids are mapped when a probe saw a user namespace (before any
// look, they are taken as not); they run on the engine's default runtime.
func (b *Backend) Capabilities() backend.Capabilities {
	b.factsMu.Lock()
	defer b.factsMu.Unlock()
	caps := backend.Capabilities{SharedFilesystem: true, UserNamespace: b.facts[""].Enforced.UserNamespace}
	for name := range b.facts[""].Runtimes {
		caps.Runtimes = append(caps.Runtimes, name)
	}
	slices.Sort(caps.Runtimes)
	return caps
}

// Inspect is the run of ref as the engine sees it now.
func (b *Backend) Inspect(ctx context.Context, ref backend.Ref) (backend.State, error) {
	info, err := b.eng.ContainerInspect(ctx, ref.Key())
	if err != nil {
		return backend.State{}, Classify(err)
	}
	return stateOf(info), nil
}

var _ backend.Backend = (*Backend)(nil)

// Subnets lists the subnets of the engine's networks, which the egress
// proxy refuses besides the private ranges: a user may have given Docker
// addresses outside them. The proxy's own network is among them.
func (h *Helpers) Subnets(ctx context.Context) ([]string, error) {
	nets, err := h.b.eng.NetworkList(ctx, network.ListOptions{})
	if err != nil {
		return nil, Error("list the Docker networks for the egress policy", err)
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
