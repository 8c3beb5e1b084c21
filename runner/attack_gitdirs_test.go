package runner

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/codex-connector/codex-connector/store"
)

// TestAGitDirectoryOfAnyNameIsFlagged: a task turns a tracked directory
// into a bare repository that host git obeys (HEAD, objects/, refs/, a
// config with core.worktree and core.fsmonitor) — no .git anywhere — and
// plants a .git file in another directory. The result must list them as
// host-run; and a bare repository the repository already tracks is as
// read-only to a workspace-write task as its .git.
func TestAGitDirectoryOfAnyNameIsFlagged(t *testing.T) {
	h := newHarness(t, nil)
	base := ownerDir(t)
	repo := ownedRepo(t, base, "repo", map[string]string{"sub/a.txt": "a\n", "sub2/b.txt": "b\n", "README": "hi\n"})
	// A bare repository kept in the tree (a test fixture): tracked by its
	// files, a git directory on disk.
	gitCLI(t, repo, "init", "-q", "--bare", "fixture.git")
	gitCLI(t, repo, "add", "-A")
	gitCLI(t, repo, "commit", "-qm", "fixture")
	fixtureConfig := readFile(t, filepath.Join(repo, "fixture.git", "config"))
	marks := markerDir(t)

	script := strings.Join([]string{
		"mkdir sub/objects 755", "mkdir sub/refs 755", "write sub/HEAD ref: refs/heads/master",
		"write sub/config [core]", "append sub/config \trepositoryformatversion = 0", "append sub/config \tbare = false", "append sub/config \tworktree = .",
		"append sub/config \tfsmonitor = touch " + filepath.Join(marks, "sub"),
		"write sub2/.git gitdir: ../sub",
		"write fixture.git/config " + fsmonitorConfig(filepath.Join(marks, "fixture")),
		"write fixture.git/hooks/post-checkout #!/bin/sh",
		"write done.txt ok",
	}, "; ")
	task := h.startAndWait(t, Spec{Prompt: script, WorkingDirectory: repo, Sandbox: WorkspaceWrite})
	if task.Status != store.Completed {
		t.Fatalf("%s: %s\n%s", task.Status, task.Error, readFile(t, h.LogPath(task.ID)))
	}
	for _, step := range []string{"append sub/config", "write sub2/.git", "write done.txt"} {
		ran(t, task, step)
	}
	// The proof that what the task made is a repository host git obeys:
	// git status in it runs the planted program.
	if _, err := gitTry(t, filepath.Join(repo, "sub"), "status", "--short"); err != nil || !lexists(filepath.Join(marks, "sub")) {
		out, _ := gitTry(t, filepath.Join(repo, "sub"), "status", "--short")
		t.Fatalf("git on the host did not take sub/ for a repository (%v: %s): the attack did not happen, so the test proves nothing", err, out)
	}

	t.Run("the result lists the planted git directory and .git file", func(t *testing.T) {
		for _, want := range []string{"sub", "sub/config", "sub2/.git"} {
			if !slices.Contains(task.Summary.HostRunFiles, want) {
				t.Errorf("host-run files %q lack %s", task.Summary.HostRunFiles, want)
			}
		}
	})
	t.Run("the tracked bare repository was read-only", func(t *testing.T) {
		got := exitCodes(t, task)
		for _, step := range []string{"write fixture.git/config", "write fixture.git/hooks/post-checkout"} {
			if code, ok := got[step]; !ok || code == 0 {
				t.Errorf("%s: ran %v, exit %d", step, ok, code)
			}
		}
		if readFile(t, filepath.Join(repo, "fixture.git", "config")) != fixtureConfig {
			t.Error("the fixture's config changed")
		}
		if lexists(filepath.Join(repo, "fixture.git", "hooks", "post-checkout")) {
			t.Error("a hook was planted in the fixture")
		}
		// git in the fixture reads its config, as it would the planted one.
		_, _ = gitTry(t, filepath.Join(repo, "fixture.git"), "status", "--short")
		if lexists(filepath.Join(marks, "fixture")) {
			t.Error("git on the host ran a program planted in the fixture")
		}
	})
	t.Run("git at the repository's root obeys its own .git only", func(t *testing.T) {
		if err := os.Remove(filepath.Join(marks, "sub")); err != nil {
			t.Fatal(err)
		}
		if out, err := gitTry(t, repo, "status", "--short"); err != nil {
			t.Fatalf("git status: %v\n%s", err, out)
		}
		if m := ranOnHost(marks); len(m) != 0 {
			t.Errorf("git at the root ran planted programs %v", m)
		}
	})
}
