package main

import (
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/codex-connector/codex-connector/images/imagestest"
	"github.com/codex-connector/codex-connector/store"
)

// A task the detached follower takes over when its server exits reports
// the files it changed and the host-run files it touched, which Codex did
// not report (shell commands), as a task followed from the start does:
// the follower reads what the server measured before the run.
func TestTheFollowerReportsTheFilesATaskChanged(t *testing.T) {
	repo := imagestest.Repo(t)
	home := t.TempDir()
	s := startServerAt(t, home)
	script := "await " + filepath.Join(repo, "go") + "; append notes.txt changed; append Makefile all:; append .git/config # planted; say done"
	id := s.startAsync(t, map[string]any{"task": script, "workingDirectory": repo, "sandbox": "danger-full-access"})
	waitContainerRunning(t, imagestest.Engine(t), id)
	first, err := openHome(home).Get(id)
	if err != nil {
		t.Fatal(err)
	}
	s.leave(t, false)
	if err := os.WriteFile(filepath.Join(repo, "go"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	task := waitEnded(t, home, id)[id]
	if task.Status != store.Completed || task.Follower == first.Follower {
		t.Fatalf("status %s (%s), follower %q (the server was %q): the follower did not take the task over", task.Status, task.Error, task.Follower, first.Follower)
	}
	for _, c := range task.Summary.Commands {
		if c.Command == "append .git/config" && (c.ExitCode == nil || *c.ExitCode != 0) {
			t.Fatalf("the task could not change .git/config: %+v", c)
		}
	}
	for _, want := range []string{"Makefile", "go", "notes.txt"} {
		if !slices.Contains(task.Summary.FilesChanged, want) {
			t.Errorf("files changed %q lack %s", task.Summary.FilesChanged, want)
		}
	}
	if !slices.Equal(task.Summary.HostRunFiles, []string{".git/config", "Makefile"}) {
		t.Errorf("host-run files %q, want .git/config and Makefile", task.Summary.HostRunFiles)
	}
	if task.Error != "" {
		t.Errorf("the follower says %q", task.Error)
	}
	waitHomeIdle(t, home)
}
