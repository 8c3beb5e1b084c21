package runner

import (
	"context"
	"errors"
	"time"

	"github.com/codex-connector/codex-connector/backend"
	"github.com/codex-connector/codex-connector/backend/docker"
)

// engineError adds to err what a user can do when the engine itself is the
// problem, so that a stopped daemon reads as such and not as a failed task.
func engineError(op string, err error) error { return docker.Error(op, err) }

// engineTrouble says whether a launch failed because of the engine rather
// than the task: it does not answer (worth waiting for, however long), or it
// answers with internal errors, as a shutting-down engine does ("failed to
// update store for object type *libnetwork.endpoint"), worth a few tries.
func engineTrouble(err error, tries int) bool {
	// Classified again: an error of an image build reaches here as the
	// engine gave it.
	err = docker.Classify(err)
	if errors.Is(err, backend.ErrUnreachable) {
		return true
	}
	return tries <= 4 && errors.Is(err, backend.ErrTrouble)
}

// sleep waits for d, or returns false when the lifetime ends first.
func (r *Runner) sleep(d time.Duration) bool {
	select {
	case <-r.lifetime.Done():
		return false
	case <-time.After(d):
		return true
	}
}

// awaitEngine waits while the engine does not answer: it calls look, which
// asks the backend about a run, until the answer is not that the backend is
// unreachable, and returns that answer; it returns ctx's error when that
// ends first.
func (r *Runner) awaitEngine(ctx context.Context, look func() (backend.State, error)) (backend.State, error) {
	pause := 500 * time.Millisecond
	for {
		// Pause first: an engine restart takes longer than this, and a
		// wait that fails for another reason must not spin.
		select {
		case <-ctx.Done():
			return backend.State{}, ctx.Err()
		case <-time.After(pause):
		}
		st, err := look()
		if !errors.Is(err, backend.ErrUnreachable) {
			return st, err
		}
		pause = min(2*pause, 5*time.Second)
	}
}
