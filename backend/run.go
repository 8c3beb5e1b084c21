package backend

import "time"

// Ref finds a run again: Name is chosen by the scheduler and unique per
// task, ID is the backend's own (empty until the run exists).
type Ref struct {
	ID   string
	Name string
}

// Key is what the backend is asked by: the ID when known, else the name.
func (r Ref) Key() string {
	if r.ID != "" {
		return r.ID
	}
	return r.Name
}

// State is a run as the backend sees it.
type State struct {
	// ID is the backend's own id of the run.
	ID string
	// Status is the backend's word for it ("created", "running",
	// "exited"), for messages; Created says it never started.
	Status  string
	Created bool
	Running bool
	// Exit is how the run ended, once it has.
	Exit Exit
	// Command is the command the run was made with, which names its gate.
	Command []string
}

// Listed is a run as List finds it.
type Listed struct {
	Ref     Ref
	Labels  map[string]string
	Created time.Time
	Running bool
}

// Exit is how a run ended.
type Exit struct {
	Code int
	// OOMKilled says the kernel killed the run for its memory limit.
	OOMKilled bool
}

// Capabilities say what a backend's runs can do, for the scheduler's
// choices and for doctor.
type Capabilities struct {
	// SharedFilesystem says the backend binds the server's own paths into
	// runs (a local engine): the repository and the state directory are
	// shared, not copied.
	SharedFilesystem bool
	// UserNamespace says runs' uids map to other uids on the host (a
	// rootless engine).
	UserNamespace bool
	// Runtimes are the runtimes a run may name (Spec.Runtime), as far as
	// the backend knows them yet.
	Runtimes []string
}
