package docker

import (
	"context"
	"fmt"
	"io"
	"math"
	"time"

	"github.com/codex-connector/codex-connector/backend"
	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
)

// handle is one run's container. The wait for its exit is registered with
// the context of the launch or the recovery, and ends with it.
type handle struct {
	b    *Backend
	ref  backend.Ref
	gate *backend.Gate
	// warnings are what the engine said when it made the container.
	warnings []string
	// waited is the registered wait's answer: nil for an exit, or the
	// wait's error.
	waited <-chan error
}

func (h *handle) Ref() backend.Ref { return h.ref }

func (h *handle) Warnings() []string { return h.warnings }

// watch registers the wait for the container's exit. The client answers
// on a channel it blocks on until read, so the answer is always read here
// and kept: a wait nobody asks (a run removed before it is followed) must
// not hold the client's goroutine for ever. The client answers once the
// container exits, or once ctx ends.
func (h *handle) watch(ctx context.Context, cond container.WaitCondition) {
	exited, failed := h.b.eng.ContainerWait(ctx, h.ref.Key(), cond)
	waited := make(chan error, 1)
	h.waited = waited
	go func() {
		select {
		case <-exited:
			waited <- nil
		case err := <-failed:
			waited <- Classify(err)
		}
	}()
}

func (h *handle) State(ctx context.Context) (backend.State, error) {
	return h.b.Inspect(ctx, h.ref)
}

// Wait returns nil once the container exited, or the wait's error: the
// engine went away, or the context of the wait ended.
func (h *handle) Wait(ctx context.Context) error {
	select {
	case err := <-h.waited:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (h *handle) Reattach(ctx context.Context) (backend.State, error) {
	st, err := h.State(ctx)
	if err == nil {
		h.watch(ctx, container.WaitConditionNotRunning)
	}
	return st, err
}

func (h *handle) Logs(ctx context.Context, opts backend.LogOptions) (io.ReadCloser, error) {
	o := container.LogsOptions{ShowStdout: true, ShowStderr: true, Follow: opts.Follow, Timestamps: true}
	if !opts.Since.IsZero() {
		o.Since = engineTime(opts.Since)
	}
	if !opts.Until.IsZero() {
		o.Until = engineTime(opts.Until)
	}
	rc, err := h.b.eng.ContainerLogs(ctx, h.ref.Key(), o)
	return rc, Classify(err)
}

// engineTime is t as the engine's log options take it: seconds and
// nanoseconds since the epoch.
func engineTime(t time.Time) string {
	return fmt.Sprintf("%d.%09d", t.Unix(), t.Nanosecond())
}

func (h *handle) Stop(ctx context.Context, grace time.Duration) error {
	return h.b.Stop(ctx, h.ref, grace)
}

func (h *handle) Remove(ctx context.Context) error { return h.b.remove(ctx, h.ref.Key()) }

// Stop asks the container of ref to stop: SIGTERM, then SIGKILL after the
// grace. A container that is gone or already stopped is not an error.
func (b *Backend) Stop(ctx context.Context, ref backend.Ref, grace time.Duration) error {
	secs := int(math.Ceil(grace.Seconds()))
	err := b.eng.ContainerStop(ctx, ref.Key(), container.StopOptions{Timeout: &secs})
	if err == nil || cerrdefs.IsNotFound(err) {
		return nil
	}
	return Error("stop container "+ref.Key(), err)
}

// Remove removes the container of ref; one already gone is success.
func (b *Backend) Remove(ctx context.Context, ref backend.Ref) error { return b.remove(ctx, ref.Key()) }

// stateOf is a container as a run's state.
func stateOf(info container.InspectResponse) backend.State {
	st := backend.State{ID: info.ID}
	if s := info.State; s != nil {
		st.Status = string(s.Status)
		st.Created = s.Status == container.StateCreated
		st.Running = s.Running
		st.Exit = backend.Exit{Code: s.ExitCode, OOMKilled: s.OOMKilled}
	}
	if info.Config != nil {
		st.Command = info.Config.Cmd
	}
	return st
}

var _ backend.Handle = (*handle)(nil)
