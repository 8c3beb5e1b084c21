package backend

import "errors"

// Errors a backend's errors wrap, for the scheduler's decisions; each
// backend's own message says what to do.
var (
	// ErrUnreachable: the backend does not answer. Worth waiting for,
	// however long.
	ErrUnreachable = errors.New("the engine does not answer")
	// ErrTrouble: the backend answers with internal errors, as a
	// shutting-down engine does. Worth a few tries.
	ErrTrouble = errors.New("the engine is in trouble")
	// ErrNotFound: the run is gone.
	ErrNotFound = errors.New("no such run")
	// ErrMountChanged: what a run was given is not what was checked.
	// Nothing of the task ran.
	ErrMountChanged = errors.New("a mount source changed between the check and the start")
)
