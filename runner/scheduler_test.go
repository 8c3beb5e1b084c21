package runner

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/codex-connector/codex-connector/backend"
	"github.com/codex-connector/codex-connector/store"
)

// The scheduler's answers to what a backend can tell it and a real engine
// does not show on demand: a wait that breaks while the engine answers, a
// backend that stays away and then has lost the run, a mount that changed
// at the gate, an engine in trouble at the launch. The runs are real; only
// what the backend says about them is scripted (faultybackend_test.go).

// A wait that breaks while the run goes on is followed again: the task
// ends as it ran, its log holds each line once, its result is kept.
func TestAWaitThatBreaksIsFollowedAgainAndLosesNothing(t *testing.T) {
	f := newFaultyBackend()
	f.waits = []error{errors.New("the wait's stream broke")}
	h := newHarnessOnBackend(t, f.wrap)
	repo := newRepo(t)
	task := h.startAndWait(t, Spec{Prompt: "say first line; sleep 1s; write out.txt made; say last line", WorkingDirectory: repo, Sandbox: WorkspaceWrite})
	if task.Status != store.Completed || task.ExitCode == nil || *task.ExitCode != 0 {
		t.Fatalf("status %s, error %q", task.Status, task.Error)
	}
	if f.count("wait") < 2 || f.count("reattach") < 1 {
		t.Fatalf("the broken wait was not followed again: %v", f)
	}
	if !f.reads("out/last-message.txt") {
		t.Fatal("the result was not read through the backend's Files")
	}
	log := readLog(h.LogPath(task.ID))
	if strings.Count(log, "first line") != 1 || strings.Count(log, "last line") != 1 {
		t.Fatalf("the log does not hold each line once:\n%s", log)
	}
	if got := readFile(t, filepath.Join(repo, "out.txt")); got != "made\n" {
		t.Fatalf("out.txt = %q", got)
	}
	if got := readFile(t, h.ResultPath(task.ID)); got != "last line" {
		t.Fatalf("result %q", got)
	}
}

// A backend that does not answer is waited for, however many times it is
// asked; when it answers that the run is gone, the task ends saying so.
func TestARunGoneWhileTheBackendWasAwayEndsWithTheReason(t *testing.T) {
	f := newFaultyBackend()
	away := fmt.Errorf("reattach: %w", backend.ErrUnreachable)
	f.waits = []error{errors.New("the wait's stream broke")}
	f.reattaches = []error{away, away, fmt.Errorf("reattach: %w", backend.ErrNotFound)}
	h := newHarnessOnBackend(t, f.wrap)
	task := h.startAndWait(t, Spec{Prompt: "say first line; sleep 1s; say last line", WorkingDirectory: newRepo(t)})
	if task.Status != store.Failed || !strings.Contains(task.Error, "its container is gone") {
		t.Fatalf("status %s, error %q", task.Status, task.Error)
	}
	if n := f.count("reattach"); n != 3 {
		t.Fatalf("asked the backend %d times, want 3: an unreachable backend is waited for", n)
	}
	if log := readLog(h.LogPath(task.ID)); !strings.Contains(log, "first line") {
		t.Fatalf("the log lost what the run printed before:\n%s", log)
	}
}

// A gate the backend will not open (its mounts are not what was checked)
// fails the task with the backend's reason, and the run held at its gate
// is removed, not left for a later open. That nothing ran is the fault's
// own doing; it is checked to show the gate was never opened around it.
func TestAMountChangedAtTheGateRunsNothing(t *testing.T) {
	f := newFaultyBackend()
	f.gates = []error{fmt.Errorf("the work tree was swapped for a symlink: %w", backend.ErrMountChanged)}
	h := newHarnessOnBackend(t, f.wrap)
	repo := newRepo(t)
	task := h.startAndWait(t, Spec{Prompt: "write out.txt ran; say ran", WorkingDirectory: repo, Sandbox: WorkspaceWrite})
	if task.Status != store.Failed || !strings.Contains(task.Error, "swapped for a symlink") {
		t.Fatalf("status %s, error %q", task.Status, task.Error)
	}
	if f.count("gate") != 1 {
		t.Fatalf("the gate was asked %d times", f.count("gate"))
	}
	if _, err := os.Lstat(filepath.Join(repo, "out.txt")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a step of the task ran behind a closed gate: %v", err)
	}
	if _, err := h.backend.Inspect(context.Background(), backend.Ref{Name: task.ContainerName}); !errors.Is(err, backend.ErrNotFound) {
		t.Fatalf("the run held at the gate was left: %v", err)
	}
}

// An engine in trouble at the launch (as one shutting down answers) is
// tried again, and the task runs once: once before anything was made, and
// once after the run was made and left held at its gate, whose name the
// next launch takes over.
func TestTroubleAtTheLaunchIsTriedAgainAndRunsOnce(t *testing.T) {
	f := newFaultyBackend()
	trouble := fmt.Errorf("create container: %w", backend.ErrTrouble)
	f.launches = []error{trouble}
	f.launchesAfter = []error{trouble}
	h := newHarnessOnBackend(t, f.wrap)
	repo := newRepo(t)
	task := h.startAndWait(t, Spec{Prompt: "append count.txt once; say ok", WorkingDirectory: repo, Sandbox: WorkspaceWrite})
	if task.Status != store.Completed {
		t.Fatalf("status %s, error %q", task.Status, task.Error)
	}
	if n := f.count("launch"); n != 3 {
		t.Fatalf("launched %d times, want 3", n)
	}
	if got := readFile(t, filepath.Join(repo, "count.txt")); got != "once\n" {
		t.Fatalf("the task ran more than once: count.txt = %q", got)
	}
	// The run that ran is removed once it ended; the one left at its gate
	// went when the next launch took its name.
	runs, err := h.backend.List(context.Background(), map[string]string{LabelTask: task.ID})
	if err != nil || len(runs) != 0 {
		t.Fatalf("runs of the task left: %+v, %v", runs, err)
	}
}
