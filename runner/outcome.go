package runner

import (
	"fmt"
	"time"

	"github.com/codex-connector/codex-connector/internal/hostfs"
	"github.com/codex-connector/codex-connector/store"
)

// ending is everything that decides how a task ended: how its run exited,
// what the record asked of it, and what Codex said of its last turn.
type ending struct {
	// Code is the exit code of the run; OOMKilled says the kernel killed
	// it for its memory limit.
	Code      int
	OOMKilled bool
	// EngineLost says the engine went away while the run was followed: a
	// non-zero exit then is the engine's doing, not the task's.
	EngineLost bool
	// Cancelled is a cancel the user asked for; StopReason is why
	// codex-connector stopped the run itself (the stall watchdog, a cap).
	Cancelled  bool
	StopReason string
	// Deadline is when the task's timeout ends it (zero: none), Timeout
	// the timeout as asked, and Now when the end is recorded.
	Deadline time.Time
	Timeout  time.Duration
	Now      time.Time
	// MemoryLimit is the run's memory limit in bytes, for the OOM reason.
	MemoryLimit int64
	// TurnFailure is Codex's own message about a failed turn, or "".
	TurnFailure string
}

// outcome decides a task's status and the reason a reader sees. The order
// is what the user did or asked, then what codex-connector did, then what
// the kernel and the engine did, and only then what Codex said: a cancelled
// task that exited 137 was cancelled, not killed.
func outcome(e ending) (store.Status, string) {
	switch {
	case e.Cancelled:
		return store.Cancelled, "cancelled by request"
	case e.StopReason != "":
		return store.Failed, e.StopReason
	case !e.Deadline.IsZero() && !e.Now.Before(e.Deadline):
		return store.TimedOut, fmt.Sprintf("timed out after %s", e.Timeout)
	case e.OOMKilled:
		return store.Failed, fmt.Sprintf("killed: out of memory (limit %s) — raise the memory limit in the configuration, or give Codex a smaller task", hostfs.HumanSize(e.MemoryLimit))
	case e.Code == 0:
		return store.Completed, ""
	case e.EngineLost:
		return store.Failed, fmt.Sprintf("stopped by a restart of the Docker engine (exit %d): run the task again — Docker's live-restore option keeps tasks running across engine restarts", e.Code)
	case e.Code == 143:
		return store.Failed, "stopped from outside codex-connector with SIGTERM (exit 143): by `docker stop`, or by a stop or restart of the Docker engine — run the task again; Docker's live-restore option keeps tasks running across engine restarts"
	case e.Code == 137:
		return store.Failed, "killed (exit 137) by something other than codex-connector: probably out of memory, or a `docker kill`"
	case e.TurnFailure != "":
		return store.Failed, turnFailure(e.Code, e.TurnFailure)
	}
	return store.Failed, fmt.Sprintf("codex exited with code %d; see the log", e.Code)
}
