package docker

import (
	"context"
	"fmt"

	"github.com/codex-connector/codex-connector/backend"
	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
)

// Launch creates the run's container, has created record it, registers
// the wait for its exit and starts it.
func (b *Backend) Launch(ctx context.Context, s backend.Spec, created func(backend.Ref) error) (backend.Handle, error) {
	user, err := b.mapUser(s.User)
	if err != nil {
		return nil, err
	}
	s.User = user
	cfg, host := containerConfig(s)
	c, err := b.eng.ContainerCreate(ctx, cfg, host, nil, nil, s.Name)
	if cerrdefs.IsConflict(err) {
		// A container of this name is left from an attempt that died before
		// it was recorded; it never ran for this claim, so replace it.
		if rmErr := b.remove(ctx, s.Name); rmErr != nil {
			return nil, rmErr
		}
		c, err = b.eng.ContainerCreate(ctx, cfg, host, nil, nil, s.Name)
	}
	if err != nil {
		return nil, Error("create container for task "+s.Task, err)
	}
	h := &handle{b: b, ref: backend.Ref{ID: c.ID, Name: s.Name}, gate: s.Gate, warnings: c.Warnings}
	if err := created(h.ref); err != nil {
		_ = b.remove(ctx, c.ID)
		return nil, err
	}
	// Before the start: a wait registered after it misses an exit that
	// comes first.
	h.watch(ctx, container.WaitConditionNextExit)
	if err := b.eng.ContainerStart(ctx, c.ID, container.StartOptions{}); err != nil {
		_ = b.remove(ctx, c.ID)
		if mountRefused(err) {
			return nil, fmt.Errorf("%w: the engine could not bind a path as the container started (did another task on this repository make it a symlink?): %v", backend.ErrMountChanged, err)
		}
		return nil, Error("start container for task "+s.Task, err)
	}
	return h, nil
}

// Recover finds the container of ref as it is now and registers the wait
// for its exit.
func (b *Backend) Recover(ctx context.Context, ref backend.Ref) (backend.Handle, backend.State, error) {
	st, err := b.Inspect(ctx, ref)
	if err != nil {
		return nil, st, err
	}
	h := &handle{b: b, ref: backend.Ref{ID: st.ID, Name: ref.Name}}
	h.watch(ctx, container.WaitConditionNotRunning)
	return h, st, nil
}
