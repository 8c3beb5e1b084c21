package runner

import (
	"strings"
	"testing"
	"time"

	"github.com/codex-connector/codex-connector/store"
)

// The outcome of a run, one row per way a task ends, and the rows where two
// causes meet: the one the user or codex-connector caused wins over what
// the kernel, the engine or Codex reported.
func TestOutcome(t *testing.T) {
	now := time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)
	past, future := now.Add(-time.Second), now.Add(time.Hour)
	for _, c := range []struct {
		name   string
		e      ending
		status store.Status
		reason string // a part of the reason; "" wants none
	}{
		{"exit 0", ending{Code: 0}, store.Completed, ""},
		{"exit 0 before its deadline", ending{Code: 0, Deadline: future}, store.Completed, ""},
		{"a plain failure", ending{Code: 2}, store.Failed, "codex exited with code 2; see the log"},
		{"Codex's failed turn", ending{Code: 1, TurnFailure: "stream disconnected"}, store.Failed, "codex exited with code 1: stream disconnected"},
		{"Codex's failed turn, a refused key", ending{Code: 1, TurnFailure: "401 Unauthorized"}, store.Failed, "the model API refused the key (401)"},
		{"a turn failure, exit 0", ending{Code: 0, TurnFailure: "stream disconnected"}, store.Completed, ""},
		{"SIGTERM from outside", ending{Code: 143}, store.Failed, "stopped from outside codex-connector with SIGTERM (exit 143)"},
		{"SIGKILL from outside", ending{Code: 137}, store.Failed, "killed (exit 137) by something other than codex-connector"},
		{"SIGKILL over a turn failure", ending{Code: 137, TurnFailure: "x"}, store.Failed, "killed (exit 137)"},
		{"out of memory", ending{Code: 137, OOMKilled: true, MemoryLimit: 2 << 30}, store.Failed, "killed: out of memory (limit 2 GiB)"},
		{"out of memory, exit 0", ending{Code: 0, OOMKilled: true, MemoryLimit: 1 << 30}, store.Failed, "out of memory"},
		{"the engine restarted", ending{Code: 143, EngineLost: true}, store.Failed, "stopped by a restart of the Docker engine (exit 143)"},
		{"the engine restarted, exit 0", ending{Code: 0, EngineLost: true}, store.Completed, ""},
		{"the deadline passed", ending{Code: 137, Deadline: past, Timeout: 90 * time.Second}, store.TimedOut, "timed out after 1m30s"},
		{"at the deadline", ending{Code: 0, Deadline: now, Timeout: time.Minute}, store.TimedOut, "timed out after 1m0s"},
		{"the deadline over OOM", ending{Code: 137, OOMKilled: true, Deadline: past, Timeout: time.Minute}, store.TimedOut, "timed out"},
		{"a stop by codex-connector", ending{Code: 143, StopReason: "stalled: no progress for 10m0s"}, store.Failed, "stalled: no progress for 10m0s"},
		{"a stop over the deadline", ending{Code: 143, StopReason: "the work tree is over its cap", Deadline: past}, store.Failed, "the work tree is over its cap"},
		{"a cancel", ending{Code: 143, Cancelled: true}, store.Cancelled, "cancelled by request"},
		{"a cancel that exited 0", ending{Code: 0, Cancelled: true}, store.Cancelled, "cancelled by request"},
		{"a cancel over everything", ending{Code: 137, OOMKilled: true, EngineLost: true, Cancelled: true, StopReason: "stalled", Deadline: past, TurnFailure: "x"}, store.Cancelled, "cancelled by request"},
	} {
		t.Run(c.name, func(t *testing.T) {
			c.e.Now = now
			status, reason := outcome(c.e)
			if status != c.status || (c.reason == "") != (reason == "") || !strings.Contains(reason, c.reason) {
				t.Fatalf("outcome = %s %q; want %s with %q", status, reason, c.status, c.reason)
			}
		})
	}
}
