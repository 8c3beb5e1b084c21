package runner

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"

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
func (r *Runner) replyTo(spec *Spec) (*store.Task, error) {
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
	if _, err := lstatBelow(r.stateDir(parent.ID), r.stateDir(parent.ID), "codex-home/sessions"); err != nil {
		return nil, invalid("the Codex state of task %s is gone (retention or `codex-connector prune` removed it), so its session cannot be continued: start a new task with codex_agent", parent.ID)
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

// copyParentState gives a reply its own copy of the Codex state of the
// task it continues, once: a relaunch keeps what the first launch copied.
// The state was written by a task, so nothing in it is followed: only
// directories and regular files are copied, at most limit bytes, and the
// login copy is left out (each launch places its own).
func (r *Runner) copyParentState(t *store.Task, limit int64) error {
	runs := filepath.Join(r.cfg.Home, "runs")
	if _, err := lstatBelow(runs, runs, filepath.Join(t.ID, "codex-home", "sessions")); err == nil {
		return nil
	}
	src := r.stateDir(t.Parent)
	uid, gid := splitUser(t.User)
	chown := os.Geteuid() == 0
	var total int64
	var walk func(rel string, depth int) error
	walk = func(rel string, depth int) error {
		if depth > 16 {
			return nil
		}
		entries, err := readDirBelow(src, src, rel, func() error { return nil })
		if err != nil {
			return err
		}
		for _, e := range entries {
			name := e.Name()
			if name == "." || name == ".." || (depth == 1 && name == "auth.json") {
				continue
			}
			from := path.Join(rel, name)
			to := filepath.Join(t.ID, from)
			switch {
			case e.IsDir():
				if err := ensureDir(runs, to, 0o700, chown, uid, gid); err != nil {
					return err
				}
				if err := walk(from, depth+1); err != nil {
					return err
				}
			case e.Mode().IsRegular():
				if total += e.Size(); total > limit {
					return fmt.Errorf("the Codex state of task %s is larger than %d MiB (limits.stateMB)", t.Parent, limit>>20)
				}
				if err := copyBelow(src, from, runs, to, chown, uid, gid); err != nil {
					return err
				}
			}
		}
		return nil
	}
	if err := walk("codex-home", 1); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("the Codex state of task %s is gone (retention or `codex-connector prune` removed it) — start a new task with codex_agent", t.Parent)
		}
		return fmt.Errorf("copy the Codex state of task %s: %w", t.Parent, err)
	}
	return nil
}

// copyBelow copies the regular file rel below srcBase to dstRel below
// dstBase, following nothing on either side.
func copyBelow(srcBase, rel, dstBase, dstRel string, chown bool, uid, gid int) error {
	in, st, err := openRegular(srcBase, srcBase, rel)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := createBelow(dstBase, dstRel, uint32(st.Mode&0o700)|0o600, chown, uid, gid)
	if err != nil {
		return err
	}
	defer out.Close()
	if _, err := io.CopyN(out, in, st.Size); err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	return out.Close()
}
