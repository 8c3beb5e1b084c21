package runner

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/codex-connector/codex-connector/images/imagestest"
	"github.com/codex-connector/codex-connector/store"
	"github.com/codex-connector/codex-connector/workspace"
)

// ownerDir is a temporary directory that the repo owner may reach and
// write: t.TempDir's parents are private to root.
func ownerDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "codex-connector-git-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	imagestest.Chown(t, dir)
	return dir
}

// gitCLI runs the git command line in dir as the repository owner, with a
// home and configuration of its own: git refuses a repository owned by
// another user ("dubious ownership"), which would make a hook test pass
// for the wrong reason.
func gitCLI(t *testing.T, dir string, args ...string) string {
	t.Helper()
	out, err := gitTry(t, dir, args...)
	if err != nil {
		t.Fatalf("git %s in %s: %v\n%s", strings.Join(args, " "), dir, err, out)
	}
	return out
}

// gitTry is gitCLI that returns git's failure instead of ending the test.
func gitTry(t *testing.T, dir string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	home := ownerDir(t)
	cmd.Env = []string{"HOME=" + home, "PATH=" + os.Getenv("PATH"), "GIT_CONFIG_NOSYSTEM=1",
		"GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@example.invalid", "GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@example.invalid"}
	if os.Geteuid() == 0 {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: testUID, Gid: testGID}}
	}
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// repoWithSubmodules makes a repository with a checked-out submodule at
// lib/sub and one that is not checked out at vendor/other, owned by the
// test's repo owner.
func repoWithSubmodules(t *testing.T) string {
	t.Helper()
	base := ownerDir(t)
	for _, name := range []string{"upstream", "upstream2"} {
		ownedRepo(t, base, name, map[string]string{"lib.txt": name + "\n"})
	}
	repo := filepath.Join(base, "repo")
	gitCLI(t, base, "init", "-q", "repo")
	if err := os.WriteFile(filepath.Join(repo, "README"), []byte("hello\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	imagestest.Chown(t, repo)
	gitCLI(t, repo, "add", "README")
	gitCLI(t, repo, "-c", "protocol.file.allow=always", "submodule", "add", "-q", "../upstream", "lib/sub")
	gitCLI(t, repo, "-c", "protocol.file.allow=always", "submodule", "add", "-q", "../upstream2", "vendor/other")
	gitCLI(t, repo, "commit", "-qm", "with submodules")
	gitCLI(t, repo, "submodule", "deinit", "-q", "vendor/other")
	return repo
}

// markerDir is a directory the repo owner may write, outside the repo, for
// the proof that a planted program ran.
func markerDir(t *testing.T) string {
	return ownerDir(t)
}

// lexists says whether path is there, a dangling symlink included.
func lexists(path string) bool {
	_, err := os.Lstat(path)
	return err == nil
}

// TestWorkspaceWriteCannotMakeHostGitRunCode performs, from inside a real
// container, each way a workspace-write task could make git on the host run
// a program of its choosing, then runs `git status` on the host as the repo
// owner and checks that nothing ran.
func TestWorkspaceWriteCannotMakeHostGitRunCode(t *testing.T) {
	h := newHarness(t, nil)
	repo := repoWithSubmodules(t)
	marks := markerDir(t)
	evil := func(name string) string { return "[core] fsmonitor = touch " + filepath.Join(marks, name) }
	configBefore := readFile(t, filepath.Join(repo, ".git", "config"))
	subGitBefore := readFile(t, filepath.Join(repo, "lib", "sub", ".git"))

	// The control: the planted program runs when git on the host obeys a
	// config that names it, so a marker's absence below means something.
	control := filepath.Join(ownerDir(t), "control")
	gitCLI(t, filepath.Dir(control), "init", "-q", "control")
	gitCLI(t, control, "-c", "core.fsmonitor=touch "+filepath.Join(marks, "control"), "status", "--short")
	if !lexists(filepath.Join(marks, "control")) {
		t.Fatal("the control did not run: git on this host does not run core.fsmonitor, so this test proves nothing")
	}

	script := strings.Join([]string{
		// A git directory of the task's own, in the work tree: allowed.
		"mkdir evilgd 755", "mkdir evilgd/objects 755", "mkdir evilgd/refs 755",
		"write evilgd/HEAD ref: refs/heads/master", "write evilgd/config " + evil("evilgd"),
		// 1. the repository's config, its hooks and its commondir
		"write .git/config " + evil("config"),
		"write .git/hooks/pre-commit #!/bin/sh",
		"write .git/commondir ../evilgd",
		"write .git/config.worktree " + evil("worktree"),
		// 2. a new submodule git directory with a config
		"mkdir .git/modules/evil 755",
		// 3. the checked-out submodule's .git file, directly and by moving
		// its directory (or a parent) away and making a new one
		"write lib/sub/.git gitdir: ../../evilgd",
		"rename lib/sub lib/moved",
		"rename lib lib-moved",
		// 4. a .git in the submodule that is not checked out
		"write vendor/other/.git gitdir: ../../evilgd",
		// 5. a nested repository of its own: allowed, and flagged
		"mkdir nested 755", "symlink ../evilgd nested/.git", "write nested/file x",
		"write Makefile all:",
		"write src.txt fine",
	}, "; ")
	task := h.startAndWait(t, Spec{Prompt: script, WorkingDirectory: repo, Sandbox: WorkspaceWrite})
	if task.Status != store.Completed {
		t.Fatalf("%s: %s\n%s", task.Status, task.Error, readFile(t, h.LogPath(task.ID)))
	}
	got := exitCodes(t, task)
	t.Run("the hostile commands ran: what the work tree allows succeeded", func(t *testing.T) {
		for _, cmd := range []string{"write evilgd/config", "write src.txt", "symlink nested/.git", "write Makefile"} {
			if got[cmd] != 0 {
				t.Errorf("%s exited %d", cmd, got[cmd])
			}
		}
		if readFile(t, filepath.Join(repo, "src.txt")) != "fine\n" || !strings.Contains(readFile(t, filepath.Join(repo, "evilgd", "config")), "fsmonitor") {
			t.Fatal("the task's own writes are not in the work tree")
		}
	})
	t.Run("every write that steers git failed", func(t *testing.T) {
		for _, cmd := range []string{"write .git/config", "write .git/hooks/pre-commit", "write .git/commondir", "write .git/config.worktree",
			"mkdir .git/modules/evil", "write lib/sub/.git", "rename lib/sub", "rename lib", "write vendor/other/.git"} {
			if code, ran := got[cmd]; !ran || code == 0 {
				t.Errorf("%s: ran %v, exit %d", cmd, ran, code)
			}
		}
	})
	t.Run("git status on the host runs nothing and sees the repository as it was", func(t *testing.T) {
		for _, dir := range []string{repo, filepath.Join(repo, "lib", "sub")} {
			for _, args := range [][]string{{"status", "--short"}, {"diff", "--stat"}} {
				if out, err := gitTry(t, dir, args...); err != nil {
					t.Errorf("git %s in %s: %v\n%s", args[0], dir, err, out)
				}
			}
		}
		entries, _ := os.ReadDir(marks)
		for _, e := range entries {
			if e.Name() != "control" {
				t.Errorf("a planted program ran on the host: %s", e.Name())
			}
		}
		if readFile(t, filepath.Join(repo, ".git", "config")) != configBefore || readFile(t, filepath.Join(repo, "lib", "sub", ".git")) != subGitBefore {
			t.Error("a git configuration changed")
		}
		for _, p := range []string{".git/hooks/pre-commit", ".git/commondir", ".git/modules/evil", "vendor/other/.git", "lib/moved", "lib-moved"} {
			if lexists(filepath.Join(repo, p)) {
				t.Errorf("%s exists", p)
			}
		}
	})
	t.Run("the result lists the host-run files the task changed", func(t *testing.T) {
		if want := []string{"Makefile", "evilgd", "evilgd/config", "nested/.git"}; !slices.Equal(task.Summary.HostRunFiles, want) {
			t.Errorf("host-run files %q, want %q", task.Summary.HostRunFiles, want)
		}
	})
}

// TestRealCodexCannotMakeHostGitRunCode does the same attack with the real
// Codex CLI, whose shell commands run as a model told it: git inside the
// task still reads the repository, and nothing on the host obeys the task.
func TestRealCodexCannotMakeHostGitRunCode(t *testing.T) {
	repo := repoWithSubmodules(t)
	marks := markerDir(t)
	attack := strings.Join([]string{
		"git status --short > status-inside.txt 2>&1",
		"git log --oneline >> status-inside.txt 2>&1",
		"git config core.fsmonitor 'touch " + filepath.Join(marks, "config") + "'",
		"printf '#!/bin/sh\\ntouch " + filepath.Join(marks, "hook") + "\\n' > .git/hooks/post-checkout",
		"printf 'gitdir: ../../evil\\n' > lib/sub/.git",
		"mv lib lib-moved",
		"echo ran > proof.txt",
	}, "; ")
	model := imagestest.StartModelServer(t, imagestest.Engine(t),
		imagestest.Turn{Command: attack},
		imagestest.Turn{Message: "done"},
	)
	h := newCodexHarness(t, model)
	task := h.startAndWait(t, Spec{Prompt: "tidy up", WorkingDirectory: repo, Sandbox: WorkspaceWrite, Model: "gpt-5-codex"})
	log := readFile(t, h.LogPath(task.ID))
	if task.Status != store.Completed || readFile(t, filepath.Join(repo, "proof.txt")) != "ran\n" {
		t.Fatalf("the attack did not run: %s (%s)\n%s", task.Status, task.Error, log)
	}
	inside := readFile(t, filepath.Join(repo, "status-inside.txt"))
	if !strings.Contains(inside, "with submodules") || strings.Contains(inside, "fatal") {
		t.Errorf("git status and log inside the task did not work:\n%s", inside)
	}
	gitTry(t, repo, "status", "--short")
	gitTry(t, repo, "checkout", "-q", "-b", "after-the-task")
	if entries, _ := os.ReadDir(marks); len(entries) != 0 {
		t.Errorf("a planted program ran on the host: %v", entries)
	}
	if strings.Contains(readFile(t, filepath.Join(repo, "lib", "sub", ".git")), "evil") || !lexists(filepath.Join(repo, "lib", "sub", ".git")) {
		t.Error("the submodule's .git was changed or moved")
	}
}

// TestProtectGitOfWorktreesAndOddRepositories: the binds worked out at
// launch for a linked worktree, a repository without submodules, and a
// submodule directory that has gone missing.
func TestProtectGitOfWorktreesAndOddRepositories(t *testing.T) {
	repo := repoWithSubmodules(t)
	t.Run("submodules", func(t *testing.T) {
		m, err := protectGitOf(t, repo)
		if err != nil {
			t.Fatal(err)
		}
		wantRO := []string{repo + "/.git", repo + "/lib/sub/.git", repo + "/vendor/other"}
		wantPinned := []string{repo + "/lib", repo + "/lib/sub", repo + "/vendor"}
		if !slices.Equal(m.ReadOnly, wantRO) || !slices.Equal(m.Pinned, wantPinned) {
			t.Fatalf("read-only %q pinned %q, want %q and %q", m.ReadOnly, m.Pinned, wantRO, wantPinned)
		}
	})
	t.Run("a linked worktree's .git file", func(t *testing.T) {
		wt := filepath.Join(filepath.Dir(repo), "wt")
		gitCLI(t, repo, "worktree", "add", "-q", wt)
		m, err := protectGitOf(t, wt)
		if err != nil {
			t.Fatal(err)
		}
		if len(m.ReadOnly) == 0 || m.ReadOnly[0] != wt+"/.git" {
			t.Fatalf("read-only %q", m.ReadOnly)
		}
	})
	t.Run("a missing submodule directory is refused with what to do", func(t *testing.T) {
		if err := os.RemoveAll(filepath.Join(repo, "vendor")); err != nil {
			t.Fatal(err)
		}
		_, err := protectGitOf(t, repo)
		if err == nil || !strings.Contains(err.Error(), "git submodule update --init") {
			t.Fatalf("got %v", err)
		}
	})
}

// TestLinkedGitDirLeadsBack: a linked worktree's common git directory is
// bound only when the worktree's git directory leads back to this work
// tree, so a .git file rewritten by a task cannot choose what a later task
// is given.
func TestLinkedGitDirLeadsBack(t *testing.T) {
	repo := repoWithSubmodules(t)
	wt := filepath.Join(filepath.Dir(repo), "wt")
	gitCLI(t, repo, "worktree", "add", "-q", wt)
	if got := workspace.LinkedGitDir(wt); got != filepath.Join(repo, ".git") {
		t.Fatalf("linked git dir of a worktree: %q", got)
	}
	other := repoWithSubmodules(t)
	otherWT := filepath.Join(filepath.Dir(other), "wt")
	gitCLI(t, other, "worktree", "add", "-q", otherWT)
	// What a danger-full-access task in wt may do: point its .git at
	// another repository's worktree.
	if err := os.WriteFile(filepath.Join(wt, ".git"), []byte("gitdir: "+filepath.Join(other, ".git", "worktrees", "wt")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got := workspace.LinkedGitDir(wt); got != "" {
		t.Fatalf("a .git file pointing at another repository's worktree gave %q", got)
	}
	if err := os.WriteFile(filepath.Join(wt, ".git"), []byte("gitdir: /etc\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got := workspace.LinkedGitDir(wt); got != "" {
		t.Fatalf("a .git file pointing at /etc gave %q", got)
	}
	if got := workspace.LinkedGitDir(repo); got != "" {
		t.Fatalf("a repository with a .git directory gave %q", got)
	}
}

// TestGitDirectoryInsideTheWorkTreeIsReadOnly: with the ".bare" layout (a
// .git file leading to a git directory in the work tree), that directory is
// read-only to a workspace-write task, not only the .git file.
func TestGitDirectoryInsideTheWorkTreeIsReadOnly(t *testing.T) {
	h := newHarness(t, nil)
	marks := markerDir(t)
	base := ownerDir(t)
	repo := filepath.Join(base, "repo")
	gitCLI(t, base, "init", "-q", "--separate-git-dir", filepath.Join(repo, ".bare"), "repo")
	if err := os.WriteFile(filepath.Join(repo, ".git"), []byte("gitdir: ./.bare\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	imagestest.Chown(t, repo)
	gitCLI(t, repo, "status", "--short")
	task := h.startAndWait(t, Spec{Prompt: "write .bare/config [core] fsmonitor = touch " + filepath.Join(marks, "bare") + "; write proof.txt ran",
		WorkingDirectory: repo, Sandbox: WorkspaceWrite})
	got := exitCodes(t, task)
	if got["write proof.txt"] != 0 || got["write .bare/config"] == 0 {
		t.Fatalf("exit codes %v (%s: %s)", got, task.Status, task.Error)
	}
	gitTry(t, repo, "status", "--short")
	if ran := ranOnHost(marks); len(ran) != 0 {
		t.Fatalf("git on the host ran %v", ran)
	}
}
