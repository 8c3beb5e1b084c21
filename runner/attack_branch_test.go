package runner

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/codex-connector/codex-connector/store"
	"github.com/codex-connector/codex-connector/workspace"
)

// A branch task that turns its workspace's .git and work tree hostile, from
// inside a real container, with the real Codex running the commands: git
// configuration that runs programs (fsmonitor, hooks), alternates and a
// commondir that lead to another repository of the user (whose commit the
// task names as its head), a commit whose object file holds another
// object, a 10 GB sparse file, a symlink to a root-only host file and a
// named pipe. The plant is proven to have run (its command and its output);
// then nothing of it reached the host: no marker made (not by collecting,
// not by git on the host after it), nothing of the other repository in the
// user's, the symlink stored as a link, the rest left out, each with why.
func TestAHostileBranchWorkspaceChangesNothingOnTheHost(t *testing.T) {
	t.Parallel()
	marks := ownerDir(t)
	other := ownerDir(t)
	gitCLI(t, other, "init", "-q", "-b", "main")
	if err := os.WriteFile(filepath.Join(other, "secret.txt"), []byte("the other repository's secret\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	gitCLI(t, other, "add", "-A")
	gitCLI(t, other, "commit", "-qm", "secret")
	secret := strings.TrimSpace(gitCLI(t, other, "rev-parse", "HEAD"))

	run := func(name string) string { return "touch " + filepath.Join(marks, name) }
	plant := strings.Join([]string{
		"set -e",
		"printf '[core]\\n\\tfsmonitor = " + run("fsmonitor") + "\\n\\thooksPath = .git/hooks\\n' >> .git/config",
		"mkdir -p .git/hooks",
		"for h in post-checkout post-commit pre-commit post-merge post-index-change reference-transaction; do printf '#!/bin/sh\\n" + run("hook") + "\\n' > .git/hooks/$h; chmod +x .git/hooks/$h; done",
		// A commit of its own whose object file then holds its blob.
		"echo mine > mine.txt && git add mine.txt && git -c core.hooksPath=/dev/null commit -qm mine",
		"h=$(git rev-parse HEAD) && b=$(git rev-parse HEAD:mine.txt)",
		"chmod u+w .git/objects/${h:0:2}/${h:2} && cp .git/objects/${b:0:2}/${b:2} .git/objects/${h:0:2}/${h:2}",
		"echo " + filepath.Join(other, ".git/objects") + " >> .git/objects/info/alternates",
		"echo " + filepath.Join(other, ".git") + " > .git/commondir",
		"truncate -s 10G big && ln -s /etc/shadow shadow && mkfifo pipe",
		"echo planted",
	}, " && ")
	h := realCodex(t, plant)
	repo := committedRepo(t)
	before := mustGit(t, repo, "status", "--porcelain")
	started := time.Now()
	task := h.startAndWait(t, Spec{Prompt: "plant", WorkingDirectory: repo, Sandbox: WorkspaceWrite, Workspace: workspace.KindBranch, Model: "gpt-5-codex"})
	log := readLog(h.LogPath(task.ID))
	// The plant ran, whole.
	if task.Summary == nil || len(task.Summary.Commands) != 1 || task.Summary.Commands[0].ExitCode == nil || *task.Summary.Commands[0].ExitCode != 0 || !strings.Contains(log, `planted`) {
		t.Fatalf("the plant did not run: %s (%s), summary %+v\n%s", task.Status, task.Error, task.Summary, log)
	}
	if task.Status != store.Completed || task.Branch == nil || task.Branch.Head == "" {
		t.Fatalf("%s (%s), branch %+v", task.Status, task.Error, task.Branch)
	}
	t.Logf("the task ran and was collected in %s", time.Since(started).Round(time.Millisecond))
	left := strings.Join(task.Branch.Left, "\n")
	for _, want := range []string{"its name is not its own", "pipe: a named pipe", "big: 10 GiB"} {
		if !strings.Contains(left, want) {
			t.Errorf("what was left out does not say %q:\n%s", want, left)
		}
	}
	// git on the host, as the user runs it after reading the result.
	for _, args := range [][]string{{"status"}, {"log", "--all", "--oneline"}, {"diff", task.Branch.Start, task.Branch.Name}, {"show", task.Branch.Name}} {
		mustGit(t, repo, args...)
	}
	for _, m := range []string{"fsmonitor", "hook"} {
		if _, err := os.Stat(filepath.Join(marks, m)); !os.IsNotExist(err) {
			t.Errorf("the planted %s ran on the host: %v", m, err)
		}
	}
	if _, err := runGit(repo, "cat-file", "-e", secret); err == nil {
		t.Error("the other repository's commit reached the user's repository")
	}
	if got := mustGit(t, repo, "cat-file", "-p", task.Branch.Name+":shadow"); got != "/etc/shadow" {
		t.Errorf("the symlink is stored as %q, want its target as text", got)
	}
	files := mustGit(t, repo, "ls-tree", "--name-only", task.Branch.Name)
	for _, name := range []string{"pipe", "big"} {
		if strings.Contains("\n"+files+"\n", "\n"+name+"\n") {
			t.Errorf("%s is on the branch:\n%s", name, files)
		}
	}
	// The task's work came as the rest, since its commit was refused.
	if got := mustGit(t, repo, "show", task.Branch.Name+":mine.txt"); got != "mine" {
		t.Errorf("mine.txt on the branch: %q", got)
	}
	if after := mustGit(t, repo, "status", "--porcelain"); after != before {
		t.Errorf("the user's work tree changed:\n%s", after)
	}
	mustGit(t, repo, "fsck", "--no-dangling")
}

// A branch task that crafts its branch against the apply, from inside a
// real container with the real Codex running the commands: a directory
// shaped as a bare repository with an fsmonitor in its config (git on the
// host takes it for one, whatever its name), a nested repository with a
// hook, a .GIT at the root, and a link out of the repository, some of
// them committed. The plant is proven to have run; the apply then writes
// the honest files and the link as a link, and nothing git would obey: no
// repository of any name is in the user's work tree, git run there and in
// the planted directories runs nothing, and nothing is written outside.
func TestABranchCraftedAgainstTheApplyPlantsNothingInTheWorkTree(t *testing.T) {
	t.Parallel()
	marks := ownerDir(t)
	outside := ownerDir(t)
	run := "touch " + filepath.Join(marks, "ran")
	plant := strings.Join([]string{
		"set -e",
		"mkdir -p notgit/objects/info notgit/refs/heads && echo 'ref: refs/heads/main' > notgit/HEAD && printf '[core]\\n\\tfsmonitor = " + run + "\\n\\tworktree = ..\\n' > notgit/config && echo x > notgit/objects/info/x && echo x > notgit/refs/heads/x",
		"mkdir -p sub && git -C sub init -q && printf '#!/bin/sh\\n" + run + "\\n' > sub/.git/hooks/post-checkout && chmod +x sub/.git/hooks/post-checkout && echo x > sub/file",
		"mkdir .GIT && printf '[core]\\n\\tfsmonitor = " + run + "\\n' > .GIT/config",
		"ln -s " + outside + " escape && echo honest > plain.txt",
		"git add notgit plain.txt escape && git -c core.hooksPath=/dev/null commit -qm crafted",
		"echo planted",
	}, " && ")
	h := realCodex(t, plant)
	repo := committedRepo(t)
	task := h.startAndWait(t, Spec{Prompt: "plant", WorkingDirectory: repo, Sandbox: WorkspaceWrite, Workspace: workspace.KindBranch, Model: "gpt-5-codex"})
	log := readLog(h.LogPath(task.ID))
	if task.Summary == nil || len(task.Summary.Commands) != 1 || task.Summary.Commands[0].ExitCode == nil || *task.Summary.Commands[0].ExitCode != 0 || !strings.Contains(log, `planted`) {
		t.Fatalf("the plant did not run: %s (%s), summary %+v\n%s", task.Status, task.Error, task.Summary, log)
	}
	if task.Status != store.Completed || task.Branch == nil || task.Branch.Head == "" {
		t.Fatalf("%s (%s), branch %+v", task.Status, task.Error, task.Branch)
	}
	left := strings.Join(task.Branch.Left, "\n")
	for _, want := range []string{"notgit is a directory git takes for a repository", "sub/.git: a git directory of its own"} {
		if !strings.Contains(left, want) {
			t.Errorf("what was left out does not say %q:\n%s", want, left)
		}
	}
	_, applied, err := h.Apply(t.Context(), task.ID)
	if err != nil || len(applied.Conflicts) > 0 {
		t.Fatalf("apply: %+v, %v", applied, err)
	}
	if got, err := os.ReadFile(filepath.Join(repo, "plain.txt")); err != nil || string(got) != "honest\n" {
		t.Errorf("plain.txt: %q, %v", got, err)
	}
	if target, err := os.Readlink(filepath.Join(repo, "escape")); err != nil || target != outside {
		t.Errorf("escape is not the link the task made: %q, %v", target, err)
	}
	for _, p := range []string{"notgit", ".GIT", "sub/.git"} {
		if _, err := os.Lstat(filepath.Join(repo, p)); !os.IsNotExist(err) {
			t.Errorf("%s reached the user's work tree: %v", p, err)
		}
	}
	// git on the host, where the user would run it.
	for _, dir := range []string{repo, filepath.Join(repo, "sub"), filepath.Join(repo, "notgit")} {
		if _, err := os.Stat(dir); err == nil {
			_, _ = runGit(dir, "status")
		}
	}
	if _, err := os.Stat(filepath.Join(marks, "ran")); !os.IsNotExist(err) {
		t.Errorf("a planted command ran on the host: %v", err)
	}
	if entries, _ := os.ReadDir(outside); len(entries) != 0 {
		t.Errorf("the apply wrote outside the repository: %v", entries)
	}
}

// Branch tasks of two repositories at once reach nothing of each other:
// while one runs, the other, in a real container, tries to read and write
// the first's workspace and repository by their host paths, and to read
// its own repository (the control, which it can). The first's branch
// holds only its own file.
func TestBranchTasksOfTwoRepositoriesReachNothingOfEachOther(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	repoA, repoB := committedRepo(t), committedRepo(t)
	b, err := h.Start(context.Background(), Spec{Prompt: "write mine-b.txt b; await go-b; say done",
		WorkingDirectory: repoB, Sandbox: WorkspaceWrite, Workspace: workspace.KindBranch})
	if err != nil {
		t.Fatal(err)
	}
	treeB := workspace.TreeDir(h.workspaceDir(b.ID))
	deadline := time.Now().Add(2 * time.Minute)
	for {
		if _, err := os.Stat(filepath.Join(treeB, "mine-b.txt")); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("task b never wrote its file:\n%s", readLog(h.LogPath(b.ID)))
		}
		time.Sleep(50 * time.Millisecond)
	}
	prompt := strings.Join([]string{
		"read src/main.txt",
		"read " + filepath.Join(treeB, "mine-b.txt"),
		"read " + filepath.Join(repoB, "src/main.txt"),
		"write " + filepath.Join(treeB, "from-a.txt") + " a",
		"write " + filepath.Join(repoB, "from-a.txt") + " a",
		"say done",
	}, "; ")
	a := h.startAndWait(t, Spec{Prompt: prompt, WorkingDirectory: repoA, Sandbox: WorkspaceWrite, Workspace: workspace.KindBranch})
	logA := readLog(h.LogPath(a.ID))
	if a.Status != store.Completed || !strings.Contains(logA, "read src/main.txt: main") {
		t.Fatalf("task a did not run, or could not read its own repository: %s (%s)\n%s", a.Status, a.Error, logA)
	}
	for _, p := range []string{filepath.Join(treeB, "mine-b.txt"), filepath.Join(repoB, "src/main.txt")} {
		if !strings.Contains(logA, "read "+p+": open "+p+": no such file or directory") {
			t.Errorf("task a's read of %s did not fail for want of the path:\n%s", p, logA)
		}
	}
	writeRepoFiles(t, treeB, map[string]string{"go-b": ""})
	gotB := h.waitFinal(t, b.ID)
	if gotB.Status != store.Completed || gotB.Branch == nil {
		t.Fatalf("task b: %s (%s)", gotB.Status, gotB.Error)
	}
	if files := mustGit(t, repoB, "diff", "--name-only", gotB.Branch.Start, gotB.Branch.Name); files != "go-b\nmine-b.txt" {
		t.Errorf("task b's branch holds %q, want its own files alone", files)
	}
	if a.Branch == nil || len(a.Summary.FilesChanged) != 0 {
		t.Errorf("task a changed files: %v", a.Summary.FilesChanged)
	}
	if _, err := os.Stat(filepath.Join(repoB, "from-a.txt")); !os.IsNotExist(err) {
		t.Errorf("task a wrote into b's repository: %v", err)
	}
}
