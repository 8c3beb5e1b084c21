package runner

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/codex-connector/codex-connector/internal/hostfs"
	"github.com/codex-connector/codex-connector/store"
)

// A reply continues the Codex session of an earlier task with a new
// message, as a task of its own: `codex exec resume <thread>` in a fresh
// container, on a copy of the earlier task's Codex state. A copy, never the
// state itself, so that two replies to one task each continue from the
// same point and neither sees the other. The reply runs in the earlier
// task's repository at its sandbox level: a reply never escalates.

// ReasoningEfforts are the values Codex 0.169 takes for
// model_reasoning_effort.
var ReasoningEfforts = []string{"none", "minimal", "low", "medium", "high", "xhigh"}

func checkEffort(effort string) error {
	if effort != "" && !slices.Contains(ReasoningEfforts, effort) {
		return invalid("reasoningEffort %q is not one Codex takes: use one of %s, or leave it out for the model's default", effort, strings.Join(ReasoningEfforts, ", "))
	}
	return nil
}

// replyTo fills a reply's spec from the task it continues, and refuses a
// task that cannot be continued, saying what to do.
func (r *Runner) replyTo(ctx context.Context, spec *Spec) (*store.Task, error) {
	parent, err := r.Get(spec.Parent)
	if err != nil {
		return nil, err
	}
	if !parent.Status.Final() {
		return nil, invalid("task %s is still %s: a reply continues a task that has ended — wait for it (codex_status with waitSeconds) or cancel it (codex_cancel), then reply", parent.ID, parent.Status)
	}
	thread := ""
	if parent.Summary != nil {
		thread = parent.Summary.ThreadID
	}
	if thread == "" {
		return nil, invalid("task %s ended before Codex started a session (%s), so there is nothing to continue: start a new task with codex_agent", parent.ID, orNone(parent.Error))
	}
	if !sessionID.MatchString(thread) {
		return nil, invalid("task %s has no Codex session id that codex-connector can resume (%.60q): start a new task with codex_agent", parent.ID, thread)
	}
	if _, err := r.findSession(ctx, parent.ID, thread); err != nil {
		return nil, invalid("the Codex session of task %s is gone (removed by retention or `codex-connector prune`, or by the task itself), so it cannot be continued: start a new task with codex_agent", parent.ID)
	}
	if spec.WorkingDirectory != "" && spec.WorkingDirectory != parent.WorkingDirectory {
		return nil, invalid("a reply runs where task %s ran (%s), not in %s", parent.ID, parent.WorkingDirectory, spec.WorkingDirectory)
	}
	spec.WorkingDirectory = parent.WorkingDirectory
	if spec.Sandbox != "" && spec.Sandbox != parent.Sandbox {
		return nil, invalid("a reply runs at the sandbox level of task %s (%s), never another", parent.ID, parent.Sandbox)
	}
	spec.Sandbox = parent.Sandbox
	if spec.Model == "" {
		spec.Model = parent.Model
	}
	if spec.Effort == "" {
		spec.Effort = parent.Effort
	}
	spec.thread = thread
	return parent, nil
}

func orNone(s string) string {
	if s == "" {
		return "no reason recorded"
	}
	return s
}

// copySession gives a reply its own copy of the one file of the earlier
// task's Codex state that a resume needs: the session file of its thread.
// Nothing else: the rest of that state (config.toml, .env, hooks, rules,
// skills, databases) was written by the earlier task, and Codex would obey
// it when the reply starts. The copy is made when the reply is accepted,
// so it no longer depends on the earlier task's state, and under a
// temporary name renamed into place, so a crash leaves no half copy. It
// returns the session file's length: what the reply's own turns come
// after.
func (r *Runner) copySession(ctx context.Context, parent *store.Task, id, user string, limit int64) (int64, error) {
	src, err := r.files(parent.ID)
	if err != nil {
		return 0, fmt.Errorf("read the session of task %s: %w", parent.ID, err)
	}
	file, err := findSession(ctx, src, "codex-home/sessions", parent.Summary.ThreadID)
	if err != nil {
		return 0, err
	}
	st, err := src.Stat(ctx, file)
	if err != nil {
		return 0, fmt.Errorf("read the session of task %s: %w", parent.ID, err)
	}
	// What counts is what the copy puts on disk, as for the state cap: a
	// sparse file's holes cost nothing, and stay holes in the copy.
	tooLarge := invalid("the session of task %s holds more than %d MiB (limits.stateMB): start a new task with codex_agent, or raise the limit", parent.ID, limit>>20)
	if min(st.DiskBytes, st.Size) > limit {
		return 0, tooLarge
	}
	dst, err := r.files(id)
	if err != nil {
		return 0, fmt.Errorf("prepare the state of the reply: %w", err)
	}
	size, err := dst.CopyFrom(ctx, src, file, ownerOf(user), limit)
	if err != nil {
		// Not the request's context: a request given up on must not leave
		// half a state behind.
		_ = dst.Remove(context.WithoutCancel(ctx), "")
	}
	if errors.Is(err, hostfs.ErrTooMuchData) {
		return 0, tooLarge
	}
	if err != nil {
		return 0, fmt.Errorf("copy the session of task %s: %w%s", parent.ID, err, r.diskHint(err))
	}
	return size, nil
}
