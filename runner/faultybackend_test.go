package runner

import (
	"context"
	"fmt"
	"io"
	"slices"
	"sync"
	"time"

	"github.com/codex-connector/codex-connector/backend"
)

// faultyBackend is the real backend with faults scripted into what the
// scheduler is told: a real engine shows none of these on demand. Each
// fault is taken once, in order; a nil one passes the call through.
type faultyBackend struct {
	backend.Backend

	mu sync.Mutex
	// launches are errors the next launches return before reaching the
	// engine; launchesAfter, errors they return after the real launch made
	// the run, which is left held at its gate, as by an engine that made
	// a container and then answered with an error.
	launches, launchesAfter []error
	// waits, reattaches and gates are what the handles' next calls return
	// instead of the real answer.
	waits, reattaches, gates []error
	// calls counts the calls made, by name; read, the paths the scheduler
	// read of a run's state through Files.
	calls map[string]int
	read  []string
}

func newFaultyBackend() *faultyBackend { return &faultyBackend{calls: map[string]int{}} }

// wrap is the fault-injecting backend over real, for newHarnessOnBackend.
func (f *faultyBackend) wrap(real backend.Backend) backend.Backend {
	f.Backend = real
	return f
}

// next takes the next fault of list, counting the call.
func (f *faultyBackend) next(name string, list *[]error) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls[name]++
	if len(*list) == 0 {
		return nil
	}
	err := (*list)[0]
	*list = (*list)[1:]
	return err
}

func (f *faultyBackend) count(name string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[name]
}

// String is the calls made, for a failure's message.
func (f *faultyBackend) String() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return fmt.Sprint(f.calls)
}

// reads says whether the scheduler read rel of a run's state.
func (f *faultyBackend) reads(rel string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Contains(f.read, rel)
}

func (f *faultyBackend) Files(state backend.Mount) (backend.Files, error) {
	files, err := f.Backend.Files(state)
	if err != nil {
		return nil, err
	}
	return recordingFiles{Files: files, f: f}, nil
}

// recordingFiles are a run's real state, with what is read recorded.
type recordingFiles struct {
	backend.Files
	f *faultyBackend
}

func (r recordingFiles) record(rel string) {
	r.f.mu.Lock()
	defer r.f.mu.Unlock()
	r.f.read = append(r.f.read, rel)
}

func (r recordingFiles) ReadFile(ctx context.Context, rel string, max int64) ([]byte, int64, error) {
	r.record(rel)
	return r.Files.ReadFile(ctx, rel, max)
}

func (r recordingFiles) Open(ctx context.Context, rel string, offset int64) (io.ReadCloser, backend.FileInfo, error) {
	r.record(rel)
	return r.Files.Open(ctx, rel, offset)
}

func (f *faultyBackend) Launch(ctx context.Context, spec backend.Spec, created func(backend.Ref) error) (backend.Handle, error) {
	if err := f.next("launch", &f.launches); err != nil {
		return nil, err
	}
	h, err := f.Backend.Launch(ctx, spec, created)
	if err != nil {
		return nil, err
	}
	if err := f.next("launch made", &f.launchesAfter); err != nil {
		return nil, err
	}
	return &faultyHandle{Handle: h, f: f}, nil
}

func (f *faultyBackend) Recover(ctx context.Context, ref backend.Ref) (backend.Handle, backend.State, error) {
	h, st, err := f.Backend.Recover(ctx, ref)
	if err != nil {
		return nil, st, err
	}
	return &faultyHandle{Handle: h, f: f}, st, nil
}

// faultyHandle is a real handle whose Wait, Reattach and OpenGate answer
// with the backend's scripted faults first.
type faultyHandle struct {
	backend.Handle
	f *faultyBackend
}

// Wait's fault comes after a moment, as a broken stream's would, while the
// run goes on.
func (h *faultyHandle) Wait(ctx context.Context) error {
	if err := h.f.next("wait", &h.f.waits); err != nil {
		select {
		case <-time.After(200 * time.Millisecond):
		case <-ctx.Done():
			return ctx.Err()
		}
		return err
	}
	return h.Handle.Wait(ctx)
}

func (h *faultyHandle) Reattach(ctx context.Context) (backend.State, error) {
	if err := h.f.next("reattach", &h.f.reattaches); err != nil {
		return backend.State{}, err
	}
	return h.Handle.Reattach(ctx)
}

func (h *faultyHandle) OpenGate(ctx context.Context) error {
	if err := h.f.next("gate", &h.f.gates); err != nil {
		return err
	}
	return h.Handle.OpenGate(ctx)
}
