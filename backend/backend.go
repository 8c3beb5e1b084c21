package backend

import (
	"context"
	"io"
	"time"
)

// Backend makes runs and finds them again.
type Backend interface {
	// Launch makes the run of spec and starts it. created is called with
	// the run's reference once it exists and before it starts, for the
	// scheduler to record it; an error from created removes the run and
	// is returned. The wait for the run's exit is registered before the
	// start, so an exit that comes first is not missed. A launch that
	// fails after the run exists removes it. A run whose command waits at
	// its gate is held there until OpenGate.
	Launch(ctx context.Context, spec Spec, created func(Ref) error) (Handle, error)
	// Recover finds the run of a reference the record keeps, as it is
	// now, and registers the wait for its exit. A run that is gone is an
	// error that wraps ErrNotFound; a backend that does not answer, one
	// that wraps ErrUnreachable (the scheduler decides how long to wait).
	Recover(ctx context.Context, ref Ref) (Handle, State, error)
	// Inspect is the run of ref as it is now, with the errors of Recover.
	Inspect(ctx context.Context, ref Ref) (State, error)
	// Stop asks the run of ref to stop: SIGTERM, then SIGKILL after grace.
	// A run that is gone or stopped is no error.
	Stop(ctx context.Context, ref Ref, grace time.Duration) error
	// Remove removes the run of ref, whatever its state; one already gone
	// is success.
	Remove(ctx context.Context, ref Ref) error
	// List lists the runs that carry every label of match, whatever their
	// state; a label whose value is "" matches any value.
	List(ctx context.Context, match map[string]string) ([]Listed, error)
	// Files reads and prepares the state of a run whose state is the
	// mount state (a bind of a directory of the server's, or a volume of
	// the backend's), whether or not the run exists.
	Files(state Mount) (Files, error)
	// Capabilities says what the backend's runs can do.
	Capabilities() Capabilities
}

// Handle is one run, as the scheduler follows it.
type Handle interface {
	// Ref is what the record keeps to find the run again.
	Ref() Ref
	// Warnings are what the backend said when it made the run (none for a
	// recovered one), for the log and the record.
	Warnings() []string
	// State is the run as the backend sees it now.
	State(ctx context.Context) (State, error)
	// Wait blocks until the run exits (nil), the wait fails (the backend
	// went away: Reattach, then Wait again), or ctx ends.
	Wait(ctx context.Context) error
	// Reattach asks the backend about the run once and, when it answers,
	// registers the wait for the run's exit anew and returns its state. An
	// error wrapping ErrUnreachable means it still does not answer (the
	// scheduler decides how long to try again); ErrNotFound, the run is
	// gone.
	Reattach(ctx context.Context) (State, error)
	// Logs streams the run's output (LogStream says its framing).
	Logs(ctx context.Context, opts LogOptions) (io.ReadCloser, error)
	// OpenGate lets a run that starts held at its gate go on, once what
	// the run was given is what was checked (Gate says what). An error
	// wraps ErrMountChanged when it is not: nothing of the task ran.
	OpenGate(ctx context.Context) error
	// Stop and Remove are the backend's, for this run.
	Stop(ctx context.Context, grace time.Duration) error
	Remove(ctx context.Context) error
}

// LogOptions choose what Logs streams.
type LogOptions struct {
	// Follow goes on streaming while the run runs; otherwise the stream
	// ends with what is stored.
	Follow bool
	// Since and Until bound the messages by their time (zero: unbounded):
	// a copy checks what the backend still holds with Until, and Since is
	// the mark a copy may resume from.
	Since, Until time.Time
}

// LogStream is the framing of Logs' stream: each message is an 8-byte
// header (the stream: 1 stdout, 2 stderr, 3 an error of the backend; three
// zero bytes; the length, big-endian) and the message, which starts with
// its time (RFC 3339, nanoseconds; whole seconds on Podman) and a space. It is the Docker engine's
// framing; another backend produces the same.
const LogStream = "docker-multiplexed-timestamped"
