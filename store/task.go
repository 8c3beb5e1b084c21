// Package store keeps task records in a BoltDB file. It owns the record
// format, its schema version and the rules for sharing one file between
// several codex-connector processes; it knows nothing of Docker or MCP.
package store

import (
	"crypto/rand"
	"encoding/hex"
	"time"
)

// SchemaVersion is the database's layout, written into its meta bucket: a
// database of a newer layout is refused rather than misread. 2 added the
// index of live tasks.
const SchemaVersion = 2

// RecordVersion is written into every record; a record written by a newer
// version is refused rather than misread. The records of schema 2 are
// those of 1: servers of both can read them.
const RecordVersion = 1

// Status is where a task is in its life.
type Status string

const (
	Queued    Status = "queued"
	Running   Status = "running"
	Completed Status = "completed"
	Failed    Status = "failed"
	Cancelled Status = "cancelled"
	TimedOut  Status = "timed_out"
)

// Statuses lists every status, in lifecycle order.
var Statuses = []Status{Queued, Running, Completed, Failed, Cancelled, TimedOut}

// Final reports whether a task in this status will never change again.
func (s Status) Final() bool {
	switch s {
	case Completed, Failed, Cancelled, TimedOut:
		return true
	}
	return false
}

// Valid reports whether s is one of the known statuses.
func (s Status) Valid() bool {
	for _, k := range Statuses {
		if s == k {
			return true
		}
	}
	return false
}

// Task is the record of one user request and of the run that executes it.
type Task struct {
	Version int    `json:"v"`
	ID      string `json:"id"`
	// Prompt is the task text the user sent to Codex.
	Prompt           string `json:"task"`
	WorkingDirectory string `json:"workingDirectory"`
	RepoRoot         string `json:"repoRoot"`
	// RepoDev and RepoIno identify the repository root that was checked
	// when the task was accepted: the one mounted at launch must be the
	// same directory, not a path swapped in between.
	RepoDev uint64 `json:"repoDev,omitempty"`
	RepoIno uint64 `json:"repoIno,omitempty"`
	Sandbox string `json:"sandbox"`
	// Workspace is where the task's files are: "shared" (or "", records
	// from before it) is the user's own work tree; "branch" is a checkout
	// of its own, collected into Branch.
	Workspace string  `json:"workspace,omitempty"`
	Branch    *Branch `json:"branch,omitempty"`
	Model     string  `json:"model,omitempty"`
	// Effort is the reasoning effort asked for; "" leaves Codex's default.
	Effort string `json:"reasoningEffort,omitempty"`
	// Parent is the task whose Codex session this one continues (a
	// codex_reply); "" for a task of its own.
	Parent string `json:"parent,omitempty"`
	// Review is set for a review of the repository's changes (codex_review).
	Review *Review `json:"review,omitempty"`
	// ResumeThread is the Codex session a reply continues: its parent's.
	// ResumeFrom is the size of the session file the reply copied: its
	// own turns come after.
	ResumeThread string `json:"resumeThread,omitempty"`
	ResumeFrom   int64  `json:"resumeFrom,omitempty"`
	// Ran is what actually ran, as far as it is known: filled at launch
	// and from Codex's session file at the end, killed or not.
	Ran *Ran `json:"ran,omitempty"`
	// Image is the image the task runs in: the Codex image, or a task
	// image (Codex put onto BaseImage), set at launch; ImageID is its id.
	Image   string `json:"image"`
	ImageID string `json:"imageId,omitempty"`
	// BaseImage is the toolchain image the user chose for the repository,
	// and ImageSource says where that choice was made (config.json, or the
	// repository's dev container file the user opted into). Empty for the
	// Codex image alone.
	BaseImage   string `json:"baseImage,omitempty"`
	ImageSource string `json:"imageSource,omitempty"`
	// ImageBuild is set when the base is built from the repository's dev
	// container Dockerfile, which the user opted into for it.
	ImageBuild *ImageBuild `json:"imageBuild,omitempty"`
	// ImageNotes say what a reader should know of the image: what it
	// lacks, what of a dev container file was ignored.
	ImageNotes []string `json:"imageNotes,omitempty"`
	// ImageLacks lists what Codex would use that the image has not (bash,
	// git), found when the image was made.
	ImageLacks []string `json:"imageLacks,omitempty"`
	TimeoutMs  int64    `json:"timeoutMs,omitempty"`
	// Engine is the engine the task was launched on, as its server found
	// it, with the limits it does not enforce.
	Engine *Engine `json:"engine,omitempty"`
	// Deadline is absolute so that a timeout still fires after a restart.
	Deadline time.Time `json:"deadline,omitzero"`

	Status     Status    `json:"status"`
	CreatedAt  time.Time `json:"createdAt"`
	StartedAt  time.Time `json:"startedAt,omitzero"`
	FinishedAt time.Time `json:"finishedAt,omitzero"`

	ContainerID   string `json:"containerId,omitempty"`
	ContainerName string `json:"containerName,omitempty"`
	// User is the uid:gid the container runs as.
	User     string `json:"user,omitempty"`
	ExitCode *int   `json:"exitCode,omitempty"`
	// Error says why a task failed, timed out or was cancelled.
	Error string `json:"error,omitempty"`
	// Result is the start of Codex's last message; the whole message is in
	// the result file.
	Result string `json:"result,omitempty"`
	// Summary is what Codex did, as the runner parsed it from the event stream.
	Summary *Summary `json:"summary,omitempty"`
	// CancelRequested is set before the container is stopped, so that
	// whichever process sees the exit records it as cancelled.
	CancelRequested bool `json:"cancelRequested,omitempty"`
	// StopReason is set before the runner stops a task on its own (a stall),
	// so that whichever process sees the exit records why.
	StopReason string `json:"stopReason,omitempty"`
	// LogBytes is how much of the container's output is safely in the log
	// file: the checkpoint a follower resumes from.
	LogBytes int64 `json:"logBytes,omitempty"`
	// Follower is the server process that runs or follows the task
	// (host/pid/nonce) and LeaseUntil how long its claim holds unless
	// renewed: another server takes the task over when it lapses.
	Follower   string    `json:"follower,omitempty"`
	LeaseUntil time.Time `json:"leaseUntil,omitzero"`
}

// Branch is a branch task's branch in the user's repository.
type Branch struct {
	// Name is the branch: codex/<id>.
	Name string `json:"name"`
	// BaseRef is the base as asked ("" for HEAD); Base is its commit.
	BaseRef string `json:"baseRef,omitempty"`
	Base    string `json:"base"`
	// Carry says whether the user's uncommitted changes go in as a first
	// commit; Start is the commit the task starts from (Base, or that
	// commit), set once the workspace is made. Its diff is against Start.
	Carry   bool     `json:"carry,omitempty"`
	Start   string   `json:"start,omitempty"`
	Carried []string `json:"carried,omitempty"`
	// Head is the branch's head once collected: the task's own commits
	// (Commits), then one of what it left uncommitted (Rest).
	Head    string `json:"head,omitempty"`
	Commits int    `json:"commits,omitempty"`
	Rest    bool   `json:"rest,omitempty"`
	// Left says what of the user's changes or of the task's work was not
	// taken, and why.
	Left []string `json:"left,omitempty"`
	// Discarded is set once codex_discard removed the branch.
	Discarded bool `json:"discarded,omitempty"`
}

// Engine is an engine as a server found it before a launch.
type Engine struct {
	// Name names it: "Podman 4.3.1 (API 1.41), rootless, cgroup v1".
	Name string `json:"name"`
	// Unenforced are the limits (memory, cpu, pids) its runs do not get,
	// as seen from inside one: the user's config accepted them.
	Unenforced []string `json:"unenforced,omitempty"`
	// Warnings are what the engine said when asked to make a run.
	Warnings []string `json:"warnings,omitempty"`
	// Runtime is the engine's runtime the task runs under ("" its
	// default), as config.json chose it for the repository.
	Runtime string `json:"runtime,omitempty"`
}

// Review is what a review looks at: the changes against Base (a branch or
// commit: base...HEAD), or, with no Base, the uncommitted ones.
type Review struct {
	Base  string `json:"base,omitempty"`
	Focus string `json:"focus,omitempty"`
	// Task is the branch task whose branch is reviewed, against where it
	// started: the review runs in a read-only checkout of the branch.
	Task string `json:"task,omitempty"`
}

// Ran is what a task's Codex actually ran with.
type Ran struct {
	CodexVersion string `json:"codexVersion,omitempty"`
	// Model, Effort and Provider are what Codex used: what was asked for,
	// or the defaults that applied.
	Model    string `json:"model,omitempty"`
	Effort   string `json:"effort,omitempty"`
	Provider string `json:"provider,omitempty"`
}

// ImageBuild is a build of a repository's dev container Dockerfile: paths
// relative to the repository root, the Dockerfile relative to Context.
type ImageBuild struct {
	File       string            `json:"file"` // the dev container file that asked for it
	Context    string            `json:"context"`
	Dockerfile string            `json:"dockerfile"`
	Args       map[string]string `json:"args,omitempty"`
	Target     string            `json:"target,omitempty"`
	// Commit is the commit (HEAD when the task was accepted) whose files
	// are built: never the work tree, which a task may have changed.
	Commit string `json:"commit,omitempty"`
	// Network gives the build's RUN steps the engine's default network,
	// as the user opted in for the repository; without it they get none.
	Network bool `json:"network,omitempty"`
}

// Summary is what Codex did during a task, parsed from its event stream.
type Summary struct {
	ThreadID     string    `json:"threadId,omitempty"`
	Commands     []Command `json:"commands,omitempty"`
	FilesChanged []string  `json:"filesChanged,omitempty"`
	// HostRunFiles are the changed files that tools on the host run or
	// obey without asking (a Makefile, package.json, .envrc, a .git): the
	// caller reviews them before running anything.
	HostRunFiles []string `json:"hostRunFiles,omitempty"`
	Errors       []string `json:"errors,omitempty"`
	// Findings are a review's, read from Codex's rendered review.
	Findings    []Finding `json:"findings,omitempty"`
	LastMessage string    `json:"lastMessage,omitempty"`
	Usage       Usage     `json:"usage,omitzero"`
}

// Finding is one issue a review reports.
type Finding struct {
	File     string `json:"file,omitempty"`
	Line     int    `json:"line,omitempty"`
	EndLine  int    `json:"endLine,omitempty"`
	Severity string `json:"severity,omitempty"` // Codex's priority: P0 (highest) to P3
	Text     string `json:"text"`
}

// Command is one command Codex ran.
type Command struct {
	Command  string `json:"command"`
	ExitCode *int   `json:"exitCode,omitempty"`
}

// Usage counts tokens for the whole task.
type Usage struct {
	InputTokens           int64 `json:"inputTokens"`
	CachedInputTokens     int64 `json:"cachedInputTokens"`
	OutputTokens          int64 `json:"outputTokens"`
	ReasoningOutputTokens int64 `json:"reasoningOutputTokens"`
}

// NewID returns a task id that sorts by creation time and is safe in file
// and container names.
func NewID(now time.Time) string {
	var b [3]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails on Linux
	return now.UTC().Format(idTimeLayout) + "-" + hex.EncodeToString(b[:])
}

// ValidID reports whether id has the shape NewID produces, so that an id
// from a caller is safe to use in a path or a container name.
func ValidID(id string) bool {
	if len(id) != len("20060102-150405-abcdef") {
		return false
	}
	for i, c := range id {
		switch {
		case i == 8 || i == 15:
			if c != '-' {
				return false
			}
		case c >= '0' && c <= '9', i > 15 && c >= 'a' && c <= 'f':
		default:
			return false
		}
	}
	return true
}
