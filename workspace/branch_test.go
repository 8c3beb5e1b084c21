package workspace

import (
	"bytes"
	"compress/zlib"
	"context"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/codex-connector/codex-connector/internal/hostfs/hostfstest"
	"github.com/go-git/go-git/v5/plumbing/format/gitignore"
)

func runGit(t *testing.T, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GIT_CONFIG_NOSYSTEM=1", "HOME="+t.TempDir(),
		"GIT_AUTHOR_NAME=u", "GIT_AUTHOR_EMAIL=u@example.invalid", "GIT_COMMITTER_NAME=u", "GIT_COMMITTER_EMAIL=u@example.invalid")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("git %v in %s: %v\n%s", args, dir, err, out)
	}
	return strings.TrimSpace(string(out))
}

func writeFiles(t *testing.T, root string, files map[string]string) {
	t.Helper()
	for rel, text := range files {
		p := filepath.Join(root, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// branchRepo makes a repository with two commits and the user's
// uncommitted work: an edit, a new file, and an ignored one.
func branchRepo(t *testing.T) string {
	repo := t.TempDir()
	runGit(t, repo, "init", "-q", "-b", "main")
	writeFiles(t, repo, map[string]string{"a.txt": "a\n", "dir/b.txt": "b\n", ".gitignore": "*.log\n", "gone.txt": "x\n"})
	if err := os.Symlink("a.txt", filepath.Join(repo, "link")); err != nil {
		t.Fatal(err)
	}
	runGit(t, repo, "add", "-A")
	runGit(t, repo, "commit", "-qm", "one")
	writeFiles(t, repo, map[string]string{"a.txt": "a two\n"})
	runGit(t, repo, "commit", "-qam", "two")
	writeFiles(t, repo, map[string]string{"a.txt": "the user's edit\n", "new.txt": "the user's new file\n", "debug.log": "ignored\n"})
	if err := os.Remove(filepath.Join(repo, "gone.txt")); err != nil {
		t.Fatal(err)
	}
	return repo
}

func prepareIn(t *testing.T, repo string, carry bool) (BranchSpec, Prepared) {
	t.Helper()
	spec := BranchSpec{Repo: repo, Dir: filepath.Join(t.TempDir(), "ws"), Carry: carry, Branch: "codex/t1", Task: "t1",
		Owner: Owner{UID: os.Getuid(), GID: os.Getgid()}}
	spec.ObjectsMount = filepath.Join(repo, ".git", "objects") // where git on this host finds them
	p, err := PrepareBranch(context.Background(), spec)
	if err != nil {
		t.Fatal(err)
	}
	return spec, p
}

func TestPrepareBranchCarriesTheUsersChangesAsAFirstCommit(t *testing.T) {
	repo := branchRepo(t)
	headBefore := runGit(t, repo, "rev-parse", "HEAD")
	statusBefore := runGit(t, repo, "status", "--porcelain")
	spec, p := prepareIn(t, repo, true)
	tree := TreeDir(spec.Dir)
	if p.Base != headBefore || p.Start == p.Base {
		t.Fatalf("base %s start %s, want base %s and a carried commit on it", p.Base, p.Start, headBefore)
	}
	if want := []string{"a.txt", "gone.txt", "new.txt"}; !slices.Equal(p.Carried, want) {
		t.Fatalf("carried %v, want %v", p.Carried, want)
	}
	// The task sees what the user sees, in a clean tree of its own.
	for rel, want := range map[string]string{"a.txt": "the user's edit\n", "new.txt": "the user's new file\n", "dir/b.txt": "b\n"} {
		if got, err := os.ReadFile(filepath.Join(tree, rel)); err != nil || string(got) != want {
			t.Errorf("%s in the workspace: %q, %v; want %q", rel, got, err, want)
		}
	}
	for _, rel := range []string{"gone.txt", "debug.log"} {
		if _, err := os.Lstat(filepath.Join(tree, rel)); !os.IsNotExist(err) {
			t.Errorf("%s is in the workspace: %v", rel, err)
		}
	}
	if target, err := os.Readlink(filepath.Join(tree, "link")); err != nil || target != "a.txt" {
		t.Errorf("link: %q, %v", target, err)
	}
	if st := runGit(t, tree, "status", "--porcelain"); st != "" {
		t.Errorf("git status in the workspace is not clean:\n%s", st)
	}
	if got := runGit(t, tree, "rev-parse", "HEAD^"); got != p.Base {
		t.Errorf("the workspace's HEAD^ is %s, want the base %s", got, p.Base)
	}
	if got := runGit(t, tree, "symbolic-ref", "HEAD"); got != "refs/heads/codex/t1" {
		t.Errorf("the workspace's HEAD is %s", got)
	}
	// The carried commit is in the user's repository; nothing else moved.
	if got := runGit(t, repo, "cat-file", "-t", p.Start); got != "commit" {
		t.Errorf("the start commit in the user's repository: %s", got)
	}
	if runGit(t, repo, "rev-parse", "HEAD") != headBefore || runGit(t, repo, "status", "--porcelain") != statusBefore {
		t.Error("the user's HEAD or work tree changed")
	}
	if out := runGit(t, repo, "branch", "--list", "codex/*"); out != "" {
		t.Errorf("a branch exists before the task ran: %s", out)
	}
}

func TestPrepareBranchFromABaseWithoutTheUsersChanges(t *testing.T) {
	repo := branchRepo(t)
	first := runGit(t, repo, "rev-parse", "HEAD^")
	spec := BranchSpec{Repo: repo, Dir: filepath.Join(t.TempDir(), "ws"), Base: "HEAD^", Branch: "codex/t1", Task: "t1",
		Owner: Owner{UID: os.Getuid(), GID: os.Getgid()}, ObjectsMount: filepath.Join(repo, ".git", "objects")}
	p, err := PrepareBranch(context.Background(), spec)
	if err != nil {
		t.Fatal(err)
	}
	if p.Start != first || p.Base != first || len(p.Carried) != 0 {
		t.Fatalf("%+v, want to start at %s with nothing carried", p, first)
	}
	if got, _ := os.ReadFile(filepath.Join(TreeDir(spec.Dir), "a.txt")); string(got) != "a\n" {
		t.Errorf("a.txt at the base: %q", got)
	}
	spec.Base = "no-such-branch"
	spec.Dir = filepath.Join(t.TempDir(), "ws2")
	if _, err := PrepareBranch(context.Background(), spec); err == nil || !strings.Contains(err.Error(), "no branch, tag or commit") {
		t.Errorf("an unknown base: %v", err)
	}
	if _, err := os.Stat(spec.Dir); !os.IsNotExist(err) {
		t.Errorf("a failed workspace was left: %v", err)
	}
}

func TestCollectBranchTakesTheTasksCommitsThenItsUncommittedRest(t *testing.T) {
	repo := branchRepo(t)
	spec, p := prepareIn(t, repo, true)
	tree := TreeDir(spec.Dir)
	userStatus := runGit(t, repo, "status", "--porcelain")
	userHead := runGit(t, repo, "rev-parse", "HEAD")
	// The task commits one change, then leaves others uncommitted.
	writeFiles(t, tree, map[string]string{"dir/b.txt": "b by the task\n"})
	runGit(t, tree, "commit", "-qam", "the task's commit")
	writeFiles(t, tree, map[string]string{"task.txt": "new\n", "build.log": "ignored by .gitignore\n"})
	if err := os.Remove(filepath.Join(tree, "new.txt")); err != nil {
		t.Fatal(err)
	}
	c, err := CollectBranch(context.Background(), CollectSpec{Repo: repo, Dir: spec.Dir, Branch: spec.Branch, Start: p.Start, Task: "t1", Owner: spec.Owner, When: time.Unix(1800000000, 0)})
	if err != nil {
		t.Fatal(err)
	}
	if c.Commits != 1 || !c.Rest {
		t.Fatalf("%+v: want the task's one commit and a rest", c)
	}
	if want := []string{"dir/b.txt", "new.txt", "task.txt"}; !slices.Equal(c.Files, want) {
		t.Errorf("files %v, want %v", c.Files, want)
	}
	if got := runGit(t, repo, "rev-parse", "codex/t1"); got != c.Head {
		t.Errorf("the branch is at %s, want %s", got, c.Head)
	}
	if log := runGit(t, repo, "log", "--format=%s", p.Start+"..codex/t1"); log != "What task t1 left uncommitted\nthe task's commit" {
		t.Errorf("the branch's commits:\n%s", log)
	}
	if got := runGit(t, repo, "diff", "--name-only", p.Start, "codex/t1"); got != "dir/b.txt\nnew.txt\ntask.txt" {
		t.Errorf("the branch's diff against its start: %q", got)
	}
	if got := runGit(t, repo, "show", "codex/t1:task.txt"); got != "new" {
		t.Errorf("task.txt on the branch: %q", got)
	}
	runGit(t, repo, "fsck", "--strict", "--no-dangling")
	if runGit(t, repo, "rev-parse", "HEAD") != userHead || runGit(t, repo, "status", "--porcelain") != userStatus {
		t.Error("the user's HEAD or work tree changed")
	}
	// Collecting again (a server that died in it, and the one that took
	// the task over, an hour later) makes the same branch.
	again, err := CollectBranch(context.Background(), CollectSpec{Repo: repo, Dir: spec.Dir, Branch: spec.Branch, Start: p.Start, Task: "t1", Owner: spec.Owner, When: time.Unix(1800003600, 0)})
	if err != nil || again.Head != c.Head {
		t.Errorf("collected again: %+v, %v; want head %s", again, err, c.Head)
	}
}

func TestCollectBranchOfATaskThatChangedNothing(t *testing.T) {
	repo := branchRepo(t)
	spec, p := prepareIn(t, repo, false)
	c, err := CollectBranch(context.Background(), CollectSpec{Repo: repo, Dir: spec.Dir, Branch: spec.Branch, Start: p.Start, Task: "t1", Owner: spec.Owner, When: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	if c.Head != p.Start || c.Commits != 0 || c.Rest || len(c.Files) != 0 {
		t.Errorf("%+v: want the branch at its start, with no change", c)
	}
}

// The task's .git and work tree are hostile: objects under names not their
// own, alternates that lead to another repository of the user, a FIFO, a
// huge sparse file, a symlink to a root-only file.
func TestCollectBranchFromAHostileWorkspace(t *testing.T) {
	repo := branchRepo(t)
	spec, p := prepareIn(t, repo, false)
	tree := TreeDir(spec.Dir)

	// A commit that exists only in another repository of the user, which
	// the task's alternates point at.
	other := t.TempDir()
	runGit(t, other, "init", "-q", "-b", "main")
	writeFiles(t, other, map[string]string{"secret.txt": "the other repository's secret\n"})
	runGit(t, other, "add", "-A")
	runGit(t, other, "commit", "-qm", "secret")
	secret := runGit(t, other, "rev-parse", "HEAD")
	if err := os.WriteFile(filepath.Join(tree, ".git/objects/info/alternates"), []byte(filepath.Join(other, ".git/objects")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(tree, ".git/refs/heads/codex/t1"), []byte(secret+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(filepath.Join(tree, "pipe"), 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.Create(filepath.Join(tree, "sparse"))
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(10 << 30); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if err := os.Symlink("/etc/shadow", filepath.Join(tree, "shadow")); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	var c Collected
	go func() {
		defer close(done)
		c, err = CollectBranch(context.Background(), CollectSpec{Repo: repo, Dir: spec.Dir, Branch: spec.Branch, Start: p.Start, Task: "t1", Owner: spec.Owner, When: time.Now()})
	}()
	select {
	case <-done:
	case <-time.After(time.Minute):
		t.Fatal("collecting hangs")
	}
	if err != nil {
		t.Fatal(err)
	}
	left := strings.Join(c.Left, "\n")
	for _, want := range []string{"the task's commits (" + secret, "pipe: a named pipe", "sparse: 10 GiB"} {
		if !strings.Contains(left, want) {
			t.Errorf("what was left out does not say %q:\n%s", want, left)
		}
	}
	if out, err := exec.Command("git", "-C", repo, "cat-file", "-e", secret).CombinedOutput(); err == nil {
		t.Errorf("the other repository's commit reached the user's repository: %s", out)
	}
	if got := runGit(t, repo, "cat-file", "-p", "codex/t1:shadow"); got != "/etc/shadow" {
		t.Errorf("the symlink is stored as %q, want its target as text", got)
	}
	if out := runGit(t, repo, "ls-tree", "--name-only", "codex/t1"); strings.Contains(out, "pipe") || strings.Contains(out, "sparse") {
		t.Errorf("the branch holds what was left out:\n%s", out)
	}
}

// An object whose content is not its name is refused, with the task's
// commits, and the work tree is taken instead.
func TestCollectBranchRefusesAnObjectUnderAnotherName(t *testing.T) {
	repo := branchRepo(t)
	spec, p := prepareIn(t, repo, false)
	tree := TreeDir(spec.Dir)
	writeFiles(t, tree, map[string]string{"a.txt": "the task's\n"})
	runGit(t, tree, "commit", "-qam", "task")
	head := runGit(t, tree, "rev-parse", "HEAD")
	// The commit's file now holds another object's content.
	blob := runGit(t, tree, "rev-parse", "HEAD:a.txt")
	commitFile := filepath.Join(tree, ".git/objects", head[:2], head[2:])
	blobData, err := os.ReadFile(filepath.Join(tree, ".git/objects", blob[:2], blob[2:]))
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(commitFile, 0o644)
	if err := os.WriteFile(commitFile, blobData, 0o644); err != nil {
		t.Fatal(err)
	}
	c, err := CollectBranch(context.Background(), CollectSpec{Repo: repo, Dir: spec.Dir, Branch: spec.Branch, Start: p.Start, Task: "t1", Owner: spec.Owner, When: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	if c.Commits != 0 || !c.Rest || !strings.Contains(strings.Join(c.Left, "\n"), "its name is not its own") {
		t.Errorf("%+v: want the task's commit refused for its name and the work tree taken", c)
	}
	if got := runGit(t, repo, "show", "codex/t1:a.txt"); got != "the task's" {
		t.Errorf("a.txt on the branch: %q", got)
	}
}

// Tasks started at once carry the same edit: their preparations write the
// same objects into the user's repository at the same moment.
func TestPrepareBranchesAtOnceOnOneRepository(t *testing.T) {
	repo := branchRepo(t)
	errs := make(chan error, 6)
	for i := range 6 {
		go func() {
			spec := BranchSpec{Repo: repo, Dir: filepath.Join(t.TempDir(), "ws"), Carry: true, Branch: "codex/t" + string(rune('a'+i)), Task: "t" + string(rune('a'+i)),
				Owner: Owner{UID: os.Getuid(), GID: os.Getgid()}, ObjectsMount: filepath.Join(repo, ".git", "objects")}
			_, err := PrepareBranch(context.Background(), spec)
			errs <- err
		}()
	}
	for range 6 {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
}

// What a review of the collect found a task could do to the server, each
// refused: the task's commits are not taken, the work tree is, and the
// server neither hangs, nor crashes, nor fills its memory.
func TestCollectBranchRefusesWhatWouldHurtTheServer(t *testing.T) {
	collect := func(t *testing.T, repo string, spec BranchSpec, p Prepared) Collected {
		t.Helper()
		done := make(chan struct{})
		var c Collected
		var err error
		go func() {
			defer close(done)
			c, err = CollectBranch(context.Background(), CollectSpec{Repo: repo, Dir: spec.Dir, Branch: spec.Branch, Start: p.Start, Task: "t1", Owner: spec.Owner, When: time.Now()})
		}()
		select {
		case <-done:
		case <-time.After(time.Minute):
			t.Fatal("collecting hangs")
		}
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	taskCommit := func(t *testing.T, tree string) string {
		writeFiles(t, tree, map[string]string{"a.txt": "the task's\n"})
		runGit(t, tree, "commit", "-qam", "task")
		return runGit(t, tree, "rev-parse", "HEAD")
	}
	wantRefused := func(t *testing.T, repo string, c Collected, why string) {
		t.Helper()
		if c.Commits != 0 || !c.Rest || !strings.Contains(strings.Join(c.Left, "\n"), why) {
			t.Errorf("%+v: want the task's commits refused (%q) and the work tree taken", c, why)
		}
		if got := runGit(t, repo, "show", "codex/t1:a.txt"); got != "the task's" {
			t.Errorf("a.txt on the branch: %q", got)
		}
		runGit(t, repo, "fsck", "--strict", "--no-dangling")
	}
	t.Run("a zlib bomb", func(t *testing.T) {
		repo := branchRepo(t)
		spec, p := prepareIn(t, repo, false)
		tree := TreeDir(spec.Dir)
		head := taskCommit(t, tree)
		var buf bytes.Buffer
		zw := zlib.NewWriter(&buf)
		zw.Write([]byte("commit 10\x00"))
		zw.Write(make([]byte, 200<<20))
		zw.Close()
		file := filepath.Join(tree, ".git/objects", head[:2], head[2:])
		os.Chmod(file, 0o644)
		if err := os.WriteFile(file, buf.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
		wantRefused(t, repo, collect(t, repo, spec, p), "holds more than its header says")
	})
	t.Run("packed objects, which may be deltas without end", func(t *testing.T) {
		repo := branchRepo(t)
		spec, p := prepareIn(t, repo, false)
		tree := TreeDir(spec.Dir)
		taskCommit(t, tree)
		runGit(t, tree, "repack", "-a", "-d", "-q")
		runGit(t, tree, "prune-packed")
		wantRefused(t, repo, collect(t, repo, spec, p), "reads no pack")
	})
	t.Run("a tree with one name twice", func(t *testing.T) {
		repo := branchRepo(t)
		spec, p := prepareIn(t, repo, false)
		tree := TreeDir(spec.Dir)
		writeFiles(t, tree, map[string]string{"a.txt": "the task's\n"})
		blob := runGit(t, tree, "hash-object", "-w", "a.txt")
		raw, err := hex.DecodeString(blob)
		if err != nil {
			t.Fatal(err)
		}
		entry := append([]byte("100644 a.txt\x00"), raw...)
		bad := filepath.Join(t.TempDir(), "tree")
		if err := os.WriteFile(bad, append(append([]byte(nil), entry...), entry...), 0o644); err != nil {
			t.Fatal(err)
		}
		treeHash := runGit(t, tree, "hash-object", "-w", "-t", "tree", "--literally", bad)
		commit := runGit(t, tree, "commit-tree", treeHash, "-p", p.Start, "-m", "twice")
		runGit(t, tree, "update-ref", "refs/heads/codex/t1", commit)
		wantRefused(t, repo, collect(t, repo, spec, p), "or there twice")
	})
	t.Run("a .git that leads to another repository", func(t *testing.T) {
		repo := branchRepo(t)
		spec, p := prepareIn(t, repo, false)
		tree := TreeDir(spec.Dir)
		other := t.TempDir()
		runGit(t, other, "init", "-q", "-b", "main")
		writeFiles(t, other, map[string]string{"secret.txt": "the other repository's secret\n"})
		runGit(t, other, "add", "-A")
		runGit(t, other, "commit", "-qm", "secret")
		secret := runGit(t, other, "rev-parse", "HEAD")
		runGit(t, other, "update-ref", "refs/heads/codex/t1", secret)
		writeFiles(t, tree, map[string]string{"a.txt": "the task's\n"})
		if err := os.RemoveAll(filepath.Join(tree, ".git")); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(filepath.Join(other, ".git"), filepath.Join(tree, ".git")); err != nil {
			t.Fatal(err)
		}
		c := collect(t, repo, spec, p)
		if out, err := exec.Command("git", "-C", repo, "cat-file", "-e", secret).CombinedOutput(); err == nil {
			t.Errorf("the other repository's commit reached the user's repository: %s", out)
		}
		if c.Commits != 0 || !strings.Contains(strings.Join(c.Left, "\n"), "symbolic link") {
			t.Errorf("%+v: want the .git symlink refused", c)
		}
	})
}

// A submodule of the base stays in the workspace's index and on the
// branch, untouched by a task that does not touch it.
func TestBranchKeepsASubmodule(t *testing.T) {
	sub := t.TempDir()
	runGit(t, sub, "init", "-q", "-b", "main")
	writeFiles(t, sub, map[string]string{"s.txt": "s\n"})
	runGit(t, sub, "add", "-A")
	runGit(t, sub, "commit", "-qm", "sub")
	repo := t.TempDir()
	runGit(t, repo, "init", "-q", "-b", "main")
	writeFiles(t, repo, map[string]string{"a.txt": "a\n"})
	runGit(t, repo, "-c", "protocol.file.allow=always", "submodule", "add", "-q", sub, "lib/sub")
	runGit(t, repo, "add", "-A")
	runGit(t, repo, "commit", "-qm", "with a submodule")
	spec, p := prepareIn(t, repo, false)
	tree := TreeDir(spec.Dir)
	if st := runGit(t, tree, "status", "--porcelain"); st != "" {
		t.Errorf("git status in the workspace:\n%s", st)
	}
	writeFiles(t, tree, map[string]string{"a.txt": "changed\n"})
	c, err := CollectBranch(context.Background(), CollectSpec{Repo: repo, Dir: spec.Dir, Branch: spec.Branch, Start: p.Start, Task: "t1", Owner: spec.Owner, When: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(c.Files, []string{"a.txt"}) {
		t.Errorf("files %v, want a.txt alone", c.Files)
	}
	if got := runGit(t, repo, "ls-tree", "codex/t1", "lib/sub"); !strings.HasPrefix(got, "160000 commit ") {
		t.Errorf("the submodule on the branch: %q", got)
	}
}

func TestGlobalExcludesOfTheOwner(t *testing.T) {
	home := t.TempDir()
	match := func() bool {
		return gitignore.NewMatcher(excludesOf(home)).Match([]string{"app", ".env"}, false)
	}
	if match() {
		t.Fatal("no excludes, yet .env matched")
	}
	writeFiles(t, home, map[string]string{".config/git/ignore": "# mine\n.env\n"})
	if !match() {
		t.Error("~/.config/git/ignore is not read")
	}
	writeFiles(t, home, map[string]string{".gitconfig": "[core]\n\texcludesFile = ~/.my-ignore\n", ".my-ignore": "*.secret\n"})
	if match() || !gitignore.NewMatcher(excludesOf(home)).Match([]string{"a.secret"}, false) {
		t.Error("core.excludesFile is not what is read")
	}
}

// The base's files are copied from the user's work tree only where the
// user's file is the base's blob: an edit, a staged change, a symlink put
// in a file's place and an edit that keeps the size and time all come
// from git instead, so the workspace holds the base whatever the user's
// tree holds.
func TestPrepareBranchTakesTheBaseNotTheUsersWorkTree(t *testing.T) {
	repo := t.TempDir()
	runGit(t, repo, "init", "-q", "-b", "main")
	writeFiles(t, repo, map[string]string{"clean.txt": "clean\n", "edited.txt": "base\n", "staged.txt": "base\n", "linked.txt": "base\n", "same.txt": "1234\n", "dir/deep.txt": "deep\n"})
	runGit(t, repo, "add", "-A")
	runGit(t, repo, "commit", "-qm", "one")
	time.Sleep(1100 * time.Millisecond) // past the index's second: nothing racy
	runGit(t, repo, "status")
	secret := filepath.Join(t.TempDir(), "secret")
	writeFiles(t, filepath.Dir(secret), map[string]string{"secret": "secret\n"})
	writeFiles(t, repo, map[string]string{"edited.txt": "the user's\n", "staged.txt": "staged\n"})
	runGit(t, repo, "add", "staged.txt")
	hostfstest.Must(t, os.Remove(filepath.Join(repo, "linked.txt")))
	hostfstest.Must(t, os.Symlink(secret, filepath.Join(repo, "linked.txt")))
	fi, err := os.Stat(filepath.Join(repo, "same.txt"))
	hostfstest.Must(t, err)
	writeFiles(t, repo, map[string]string{"same.txt": "4321\n"})
	hostfstest.Must(t, os.Chtimes(filepath.Join(repo, "same.txt"), fi.ModTime(), fi.ModTime()))

	spec, _ := prepareIn(t, repo, false)
	for _, name := range []string{"clean.txt", "edited.txt", "staged.txt", "linked.txt", "same.txt", "dir/deep.txt"} {
		got, err := os.ReadFile(filepath.Join(TreeDir(spec.Dir), name))
		if want := runGit(t, repo, "show", "HEAD:"+name); err != nil || strings.TrimSpace(string(got)) != want {
			t.Errorf("%s in the workspace: %q, %v; the base has %q", name, got, err, want)
		}
		if fi, err := os.Lstat(filepath.Join(TreeDir(spec.Dir), name)); err != nil || !fi.Mode().IsRegular() {
			t.Errorf("%s in the workspace is not a regular file: %v", name, err)
		}
	}
	if st := runGit(t, TreeDir(spec.Dir), "status", "--porcelain"); st != "" {
		t.Errorf("git status in the workspace:\n%s", st)
	}
}

// A tracked directory the user made a file, and a tracked file the user
// made a directory, are carried as git would commit them: the old entries
// deleted, the new ones added, nothing left out.
func TestPrepareBranchCarriesAFileThatBecameADirectoryAndBack(t *testing.T) {
	repo := t.TempDir()
	runGit(t, repo, "init", "-q", "-b", "main")
	writeFiles(t, repo, map[string]string{"a.txt": "a\n", "dir/b.txt": "b\n", "dir/c.txt": "c\n", "keep.txt": "k\n"})
	runGit(t, repo, "add", "-A")
	runGit(t, repo, "commit", "-qm", "one")
	hostfstest.Must(t, os.RemoveAll(filepath.Join(repo, "dir")))
	hostfstest.Must(t, os.Remove(filepath.Join(repo, "a.txt")))
	writeFiles(t, repo, map[string]string{"dir": "now a file\n", "a.txt/inner": "now below a directory\n"})
	spec, p := prepareIn(t, repo, true)
	if len(p.Left) != 0 {
		t.Errorf("left out: %q", p.Left)
	}
	if want := []string{"a.txt", "a.txt/inner", "dir", "dir/b.txt", "dir/c.txt"}; !slices.Equal(p.Carried, want) {
		t.Errorf("carried %q, want %q", p.Carried, want)
	}
	tree := TreeDir(spec.Dir)
	for name, want := range map[string]string{"dir": "now a file\n", "a.txt/inner": "now below a directory\n", "keep.txt": "k\n"} {
		if got, err := os.ReadFile(filepath.Join(tree, name)); err != nil || string(got) != want {
			t.Errorf("%s in the workspace: %q, %v", name, got, err)
		}
	}
	if st := runGit(t, tree, "status", "--porcelain"); st != "" {
		t.Errorf("git status in the workspace:\n%s", st)
	}
	if got := runGit(t, repo, "ls-tree", "-r", "--name-only", p.Start); got != "a.txt/inner\ndir\nkeep.txt" {
		t.Errorf("the start commit holds:\n%s", got)
	}
}

// A directory git takes for a repository whatever its name (a HEAD with
// objects and refs) never reaches the branch from the task: git run in it
// on the host would obey its config. One the task left uncommitted is
// left out, one it committed makes its commits refused, and what it did
// in one the base has is not taken; the base's own stays as it is.
func TestCollectBranchLeavesOutDirectoriesGitTakesForARepository(t *testing.T) {
	bare := map[string]string{"HEAD": "ref: refs/heads/main\n", "objects/info/x": "", "refs/heads/.keep": "", "config": "[core]\n\tfsmonitor = touch /tmp/planted\n"}
	with := func(dir string, files map[string]string) map[string]string {
		out := map[string]string{}
		for k, v := range files {
			out[dir+"/"+k] = v
		}
		return out
	}
	repo := t.TempDir()
	runGit(t, repo, "init", "-q", "-b", "main")
	writeFiles(t, repo, with("fixture", map[string]string{"HEAD": "ref: refs/heads/main\n", "objects/info/x": "", "refs/heads/.keep": "", "config": "[core]\n"}))
	writeFiles(t, repo, map[string]string{"a.txt": "a\n"})
	runGit(t, repo, "add", "-A")
	runGit(t, repo, "commit", "-qm", "one")

	t.Run("left uncommitted", func(t *testing.T) {
		spec, p := prepareIn(t, repo, false)
		tree := TreeDir(spec.Dir)
		writeFiles(t, tree, with("notgit", bare))
		writeFiles(t, tree, map[string]string{"fixture/config": "[core]\n\tfsmonitor = touch /tmp/planted\n", "b.txt": "b\n"})
		c, err := CollectBranch(context.Background(), CollectSpec{Repo: repo, Dir: spec.Dir, Branch: spec.Branch, Start: p.Start, Task: "t1", Owner: spec.Owner, When: time.Now()})
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(c.Files, []string{"b.txt"}) {
			t.Errorf("files %v, want b.txt alone", c.Files)
		}
		if left := strings.Join(c.Left, "\n"); !strings.Contains(left, "notgit: a directory git takes for a repository") || !strings.Contains(left, "fixture: a directory git takes for a repository") {
			t.Errorf("what was left out:\n%s", left)
		}
		if got := runGit(t, repo, "show", spec.Branch+":fixture/config"); got != "[core]" {
			t.Errorf("fixture/config on the branch: %q", got)
		}
		runGit(t, repo, "branch", "-D", spec.Branch)
	})
	t.Run("committed", func(t *testing.T) {
		spec, p := prepareIn(t, repo, false)
		tree := TreeDir(spec.Dir)
		writeFiles(t, tree, with("notgit", bare))
		runGit(t, tree, "add", "-A")
		runGit(t, tree, "commit", "-qm", "a repository in disguise")
		c, err := CollectBranch(context.Background(), CollectSpec{Repo: repo, Dir: spec.Dir, Branch: spec.Branch, Start: p.Start, Task: "t1", Owner: spec.Owner, When: time.Now()})
		if err != nil {
			t.Fatal(err)
		}
		if c.Commits != 0 || !strings.Contains(strings.Join(c.Left, "\n"), "notgit is a directory git takes for a repository") {
			t.Errorf("%+v: want the task's commits refused for notgit", c)
		}
		if files := runGit(t, repo, "ls-tree", "-r", "--name-only", spec.Branch); strings.Contains(files, "notgit") {
			t.Errorf("notgit is on the branch:\n%s", files)
		}
	})
}
