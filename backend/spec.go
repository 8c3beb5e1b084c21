package backend

// Spec is everything a backend needs to make one run.
type Spec struct {
	// Task is the task's id, for messages; Name is the run's name, unique
	// per task.
	Task    string
	Name    string
	Image   string
	Command []string
	Env     []string
	// User is the uid:gid of the host whose files the run makes: the
	// backend runs it as the id inside that maps to it ("" the image's
	// own user).
	User    string
	WorkDir string
	// Labels are set on the run; the engine may merge in the image's, and
	// those given here win.
	Labels  map[string]string
	Mounts  []Mount
	Network Network
	Limits  Limits
	// Gate, when set, is what OpenGate checks before it opens the run's
	// gate; Command must hold the wrapper that waits for Gate.File.
	Gate *Gate
	// Runtime is the backend's runtime the run uses ("" its default), e.g.
	// gVisor's runsc.
	Runtime string
}

// MountKind is what a mount's source is.
type MountKind int

const (
	// Bind binds a path of the server's filesystem.
	Bind MountKind = iota
	// Volume mounts a volume of the backend, by name.
	Volume
)

// Mount is one mount of a run. A volume is mounted without the image's
// content at its target copied in.
type Mount struct {
	Kind     MountKind
	Source   string
	Target   string
	ReadOnly bool
	// NonRecursive binds the source alone: a mount below it on the host is
	// not carried in (and on Docker engines before 25 a read-only
	// recursive bind would leave such sub-mounts writable).
	NonRecursive bool
}

// Network is a run's network.
type Network string

const (
	// NoNetwork gives the run loopback alone: no route, no DNS.
	NoNetwork Network = "none"
	// Bridged gives the run the backend's default network.
	Bridged Network = "bridge"
)

// Limits bound what one run may use.
type Limits struct {
	MemoryBytes int64 // swap is not given beyond it
	NanoCPUs    int64
	Pids        int64
	// TmpBytes caps the run's /tmp, a tmpfs.
	TmpBytes int64
	// LogBytes caps the backend's own copy of the run's output.
	LogBytes int64
}

// Gate holds a run before anything of the task runs, until what the
// backend bound is seen to be what the scheduler checked: the engine binds
// whatever a path leads to when the run starts, and a task beside this
// one may have swapped a checked path for a symlink in between.
type Gate struct {
	// Bound are the checked bind sources, with the identity each had.
	Bound []Bound
	// File is the host path whose creation opens the gate: the run's
	// wrapper waits for it to appear, at its path inside the run.
	File string
}

// Bound is a bind source that was checked, and the identity it had then.
type Bound struct {
	Path     string
	Dev, Ino uint64
}
