package runner

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/codex-connector/codex-connector/internal/hostfs/hostfstest"
	"github.com/codex-connector/codex-connector/store"
)

// changesScript makes changes Codex does not report (shell commands, no
// patch): a file, a host-run file git sees (Makefile) and one git does not
// (.git/config). Only the scans before and after the run find them. It
// waits for the file go in the repository first, so a test can hand the
// task over while it runs.
func changesScript(repo string) string {
	return "await " + filepath.Join(repo, "go") + "; append notes.txt changed; append Makefile all:; append .git/config # planted; say done"
}

// unreported are the files changesScript changes, and the host-run ones.
var (
	unreportedChanged = []string{"Makefile", "notes.txt"}
	unreportedHostRun = []string{".git/config", "Makefile"}
)

// handedOver runs changesScript in a new repository on a first server,
// which stops while the task waits; between, spoil may damage what the
// first left; a second server of the home takes the task over and sees it
// to its end.
func handedOver(t *testing.T, spoil func(first *harness, id string)) *store.Task {
	t.Helper()
	first := newHarness(t, nil)
	repo := newRepo(t)
	task, err := first.Start(context.Background(), Spec{Prompt: changesScript(repo), WorkingDirectory: repo, Sandbox: DangerFullAccess})
	hostfstest.Must(t, err)
	first.waitRunning(t, task.ID)
	// Codex runs (past its gate) before the first server stops: a launch
	// cut short is started afresh, which is no handover.
	waitLogHas(t, first.LogPath(task.ID), "thread.started")
	first.stop()
	if _, err := first.HandOver(); err != nil {
		t.Fatal(err)
	}
	if spoil != nil {
		spoil(first, task.ID)
	}
	second := newHarness(t, func(c *Config) { c.Home = first.home })
	hostfstest.Must(t, os.WriteFile(filepath.Join(repo, "go"), nil, 0o644))
	final := second.waitFinal(t, task.ID)
	if final.Follower != second.instance {
		t.Fatalf("the task ended with follower %q, not the second server: it was not handed over", final.Follower)
	}
	if final.Status != store.Completed {
		t.Fatalf("status %s: %s; log:\n%s", final.Status, final.Error, readLog(second.LogPath(task.ID)))
	}
	ran(t, final, "append Makefile")
	ran(t, final, "append .git/config")
	return final
}

// waitLogHas waits until the log at path holds text.
func waitLogHas(t *testing.T, path, text string) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for !strings.Contains(readLog(path), text) {
		if time.Now().After(deadline) {
			t.Fatalf("the log never held %q:\n%s", text, readLog(path))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// A task taken over by another server reports the files it changed and
// the host-run files it touched as a task followed from the start does:
// what the launcher measured before the run is kept on disk for it.
func TestAnAdoptedTaskReportsTheFilesItChangedAsAFollowedOneDoes(t *testing.T) {
	h := newHarness(t, nil)
	repo := newRepo(t)
	hostfstest.Must(t, os.WriteFile(filepath.Join(repo, "go"), nil, 0o644))
	followed := h.startAndWait(t, Spec{Prompt: changesScript(repo), WorkingDirectory: repo, Sandbox: DangerFullAccess})
	if followed.Status != store.Completed {
		t.Fatalf("status %s: %s", followed.Status, followed.Error)
	}
	for name, want := range map[string][]string{"files changed": unreportedChanged, "host-run files": unreportedHostRun} {
		got := followed.Summary.FilesChanged
		if name == "host-run files" {
			got = followed.Summary.HostRunFiles
		}
		for _, p := range want {
			if !slices.Contains(got, p) {
				t.Fatalf("a task followed from the start lists %s %q, without %s", name, got, p)
			}
		}
	}
	adopted := handedOver(t, nil)
	// The adopted task's go file came after its run began; the followed
	// one's before.
	if !slices.Equal(slices.DeleteFunc(slices.Clone(adopted.Summary.FilesChanged), func(p string) bool { return p == "go" }), followed.Summary.FilesChanged) ||
		!slices.Equal(adopted.Summary.HostRunFiles, followed.Summary.HostRunFiles) {
		t.Fatalf("adopted: changed %q, host-run %q; followed from the start: changed %q, host-run %q",
			adopted.Summary.FilesChanged, adopted.Summary.HostRunFiles, followed.Summary.FilesChanged, followed.Summary.HostRunFiles)
	}
	if adopted.Error != "" {
		t.Fatalf("the adopted task says %q", adopted.Error)
	}
	if _, err := os.Stat(h.preRunPath(adopted.ID)); err == nil {
		t.Fatalf("the state before the run is left after the task ended")
	}
}

// Without what the launcher measured (removed, damaged, of another
// version), the server that takes a task over says plainly that it could
// not scan, rather than report that nothing changed.
func TestAnAdoptedTaskWithoutItsStateBeforeTheRunSaysItCouldNotScan(t *testing.T) {
	for name, spoil := range map[string]func(h *harness, id string){
		"removed": func(h *harness, id string) { hostfstest.Must(t, os.Remove(h.preRunPath(id))) },
		"damaged": func(h *harness, id string) {
			hostfstest.Must(t, os.WriteFile(h.preRunPath(id), []byte(`{"version":1,"worktree":{"REA`), 0o600))
		},
		"of a version this server does not read": func(h *harness, id string) {
			hostfstest.Must(t, os.WriteFile(h.preRunPath(id), []byte(`{"version":99}`), 0o600))
		},
	} {
		t.Run(name, func(t *testing.T) {
			final := handedOver(t, func(first *harness, id string) {
				if _, err := os.Stat(first.preRunPath(id)); err != nil {
					t.Fatalf("the launcher kept no state before the run: %v", err)
				}
				spoil(first, id)
			})
			if !strings.Contains(final.Error, "the scans of the files changed and of the host-run files could not be done") {
				t.Fatalf("the record does not say the scans could not be done: %q", final.Error)
			}
			if slices.ContainsFunc(final.Summary.FilesChanged, func(p string) bool { return slices.Contains(unreportedChanged, p) }) || len(final.Summary.HostRunFiles) != 0 {
				t.Fatalf("files changed %q, host-run %q: listed from scans that could not be done", final.Summary.FilesChanged, final.Summary.HostRunFiles)
			}
		})
	}
}
