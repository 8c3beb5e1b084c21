package runner

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/codex-connector/codex-connector/images/imagestest"
	"github.com/codex-connector/codex-connector/store"
	"github.com/codex-connector/codex-connector/workspace"
)

// committedRepo is a test repository with one commit (README and
// src/main.txt), owned as the repository is.
func committedRepo(t *testing.T) string {
	t.Helper()
	repo := newRepo(t)
	writeRepoFiles(t, repo, map[string]string{"src/main.txt": "main\n", ".gitignore": "*.log\n"})
	mustGit(t, repo, "add", "-A")
	mustGit(t, repo, "-c", "user.name=u", "-c", "user.email=u@example.invalid", "commit", "-qm", "first")
	imagestest.Chown(t, repo)
	return repo
}

func mustGit(t *testing.T, dir string, args ...string) string {
	t.Helper()
	out, err := runGit(dir, args...)
	if err != nil {
		t.Fatalf("git %v: %v\n%s", args, err, out)
	}
	return strings.TrimSpace(out)
}

// Three branch tasks started at once on one repository, each writing the
// same file differently and a file of its own: three branches, each with
// exactly its task's change; the user's work tree, index and HEAD as they
// were, the user's uncommitted edit seen by every task and in no branch's
// diff.
func TestBranchTasksAtOnceEachGetABranchOfTheirOwn(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	repo := committedRepo(t)
	writeRepoFiles(t, repo, map[string]string{"README": "the user's uncommitted edit\n"})
	head := mustGit(t, repo, "rev-parse", "HEAD")
	status := mustGit(t, repo, "status", "--porcelain")
	var tasks []*store.Task
	for i := 1; i <= 3; i++ {
		task, err := h.Start(context.Background(), Spec{
			Prompt:           fmt.Sprintf("read README; write shared.txt from task %d; write own-%d.txt %d; say done", i, i, i),
			WorkingDirectory: repo, Sandbox: WorkspaceWrite, Workspace: workspace.KindBranch,
		})
		if err != nil {
			t.Fatal(err)
		}
		tasks = append(tasks, task)
	}
	for i, task := range tasks {
		n := i + 1
		got := h.waitFinal(t, task.ID)
		log := readLog(h.LogPath(task.ID))
		if got.Status != store.Completed || got.Branch == nil || got.Branch.Head == "" {
			t.Fatalf("task %d: %s (%s), branch %+v\n%s", n, got.Status, got.Error, got.Branch, log)
		}
		// The task ran, in a checkout that carried the user's edit.
		if !strings.Contains(log, "read README: the user's uncommitted edit") {
			t.Errorf("task %d did not see the user's edit:\n%s", n, log)
		}
		b := got.Branch
		if b.Name != "codex/"+task.ID || b.Base != head || b.Start == head || !slices.Equal(b.Carried, []string{"README"}) {
			t.Errorf("task %d: branch %+v, want codex/%s from %s with README carried", n, b, task.ID, head)
		}
		if branchHead := mustGit(t, repo, "rev-parse", b.Name); branchHead != b.Head {
			t.Errorf("task %d: %s is at %s, the record says %s", n, b.Name, branchHead, b.Head)
		}
		if diff := mustGit(t, repo, "diff", "--name-only", b.Start, b.Name); diff != fmt.Sprintf("own-%d.txt\nshared.txt", n) {
			t.Errorf("task %d: its branch's diff names %q", n, diff)
		}
		if shared := mustGit(t, repo, "show", b.Name+":shared.txt"); shared != fmt.Sprintf("from task %d", n) {
			t.Errorf("task %d: shared.txt on its branch holds %q", n, shared)
		}
		if want := []string{fmt.Sprintf("own-%d.txt", n), "shared.txt"}; !slices.Equal(got.Summary.FilesChanged, want) {
			t.Errorf("task %d: files changed %v, want %v", n, got.Summary.FilesChanged, want)
		}
		if _, err := os.Stat(h.workspaceDir(task.ID)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("task %d: its workspace is still there: %v", n, err)
		}
	}
	if mustGit(t, repo, "rev-parse", "HEAD") != head || mustGit(t, repo, "status", "--porcelain") != status {
		t.Errorf("the user's HEAD or work tree changed:\n%s", mustGit(t, repo, "status", "--porcelain"))
	}
	if _, err := os.Stat(filepath.Join(repo, "shared.txt")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a task wrote into the user's work tree: %v", err)
	}
	mustGit(t, repo, "fsck", "--no-dangling")
}

// What a branch task may not be, said before anything runs.
func TestBranchTaskRequestsThatCannotRun(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	repo := committedRepo(t)
	for _, c := range []struct {
		name string
		spec Spec
		want string
	}{
		{"read-only", Spec{Sandbox: ReadOnly, Workspace: workspace.KindBranch}, "needs no branch"},
		{"an unknown base", Spec{Sandbox: WorkspaceWrite, Workspace: workspace.KindBranch, Base: "no-such-branch"}, "no branch, tag or commit"},
		{"an unknown kind", Spec{Sandbox: WorkspaceWrite, Workspace: "clone"}, "not a workspace kind"},
		{"a base for a shared task", Spec{Sandbox: WorkspaceWrite, Workspace: workspace.KindShared, Base: "HEAD"}, "base is for workspace branch"},
		{"a repository with no commit", Spec{Sandbox: WorkspaceWrite, Workspace: workspace.KindBranch, WorkingDirectory: newRepo(t)}, "has no commit yet"},
	} {
		spec := c.spec
		spec.Prompt = "say hi"
		if spec.WorkingDirectory == "" {
			spec.WorkingDirectory = repo
		}
		_, err := h.Start(context.Background(), spec)
		if !errors.Is(err, ErrInvalidTask) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want an invalid task that says %q", c.name, err, c.want)
		}
	}
	if tasks, _, _ := h.List(store.Filter{}); len(tasks) != 0 {
		t.Errorf("refused requests left %d records", len(tasks))
	}
}

// The real Codex commits in its workspace (git there reads the user's
// objects through the read-only bind), then leaves a change uncommitted:
// the branch holds its commit, then the rest; a reply continues from it.
func TestABranchTaskCommitsInItsWorkspaceAndAReplyContinuesItsBranch(t *testing.T) {
	t.Parallel()
	model := imagestest.StartModelServer(t, imagestest.Engine(t))
	h := newHarness(t, codexConfig(t, model))
	repo := committedRepo(t)
	model.SetTurns(imagestest.Turn{Command: "git log --oneline | wc -l && echo changed > src/main.txt && git commit -qam 'the task commits' && echo later > later.txt && git status --porcelain"}, imagestest.Turn{Message: "committed"})
	task := h.startAndWait(t, Spec{Prompt: "commit a change", WorkingDirectory: repo, Sandbox: WorkspaceWrite, Workspace: workspace.KindBranch, Model: "gpt-5-codex"})
	log := readFile(t, h.LogPath(task.ID))
	if task.Status != store.Completed || task.Branch == nil || task.Branch.Head == "" || len(task.Summary.Commands) != 1 ||
		task.Summary.Commands[0].ExitCode == nil || *task.Summary.Commands[0].ExitCode != 0 {
		t.Fatalf("%s (%s), branch %+v, summary %+v\n%s", task.Status, task.Error, task.Branch, task.Summary, log)
	}
	b := task.Branch
	if b.Commits != 1 || !b.Rest {
		t.Errorf("branch %+v: want the task's commit and its rest", b)
	}
	if got := mustGit(t, repo, "log", "--format=%s", b.Start+".."+b.Name); got != "What task "+task.ID+" left uncommitted\nthe task commits" {
		t.Errorf("the branch's commits:\n%s", got)
	}
	if got := mustGit(t, repo, "show", b.Name+":later.txt"); got != "later" {
		t.Errorf("later.txt on the branch: %q", got)
	}
	model.SetTurns(imagestest.Turn{Command: "cat later.txt && echo again >> later.txt"}, imagestest.Turn{Message: "again"})
	reply := h.startAndWait(t, Spec{Prompt: "go on", Parent: task.ID, Model: "gpt-5-codex"})
	if reply.Status != store.Completed || reply.Branch == nil || reply.Branch.Base != b.Head || reply.Branch.Head == "" {
		t.Fatalf("reply: %s (%s), branch %+v\n%s", reply.Status, reply.Error, reply.Branch, readFile(t, h.LogPath(reply.ID)))
	}
	if got := mustGit(t, repo, "show", reply.Branch.Name+":later.txt"); got != "later\nagain" {
		t.Errorf("later.txt on the reply's branch: %q", got)
	}
	if got := mustGit(t, repo, "rev-parse", reply.Branch.Name+"~1"); got != b.Head {
		t.Errorf("the reply's branch does not continue the task's: its parent is %s, want %s", got, b.Head)
	}
}
