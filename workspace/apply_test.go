package workspace

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestMerge3(t *testing.T) {
	base := "one\ntwo\nthree\nfour\nfive\nsix\n"
	for _, c := range []struct {
		name, mine, theirs, want string
		ok                       bool
	}{
		{"apart", "ONE\ntwo\nthree\nfour\nfive\nsix\n", "one\ntwo\nthree\nfour\nfive\nSIX\n", "ONE\ntwo\nthree\nfour\nfive\nSIX\n", true},
		{"the same change", "one\nTWO\nthree\nfour\nfive\nsix\n", "one\nTWO\nthree\nfour\nfive\nsix\n", "one\nTWO\nthree\nfour\nfive\nsix\n", true},
		{"one line, two ways", "one\nTWO\nthree\nfour\nfive\nsix\n", "one\n2\nthree\nfour\nfive\nsix\n", "", false},
		{"touching lines", "one\nTWO\nthree\nfour\nfive\nsix\n", "one\ntwo\nTHREE\nfour\nfive\nsix\n", "", false},
		{"an insertion and a deletion apart", "zero\none\ntwo\nthree\nfour\nfive\nsix\n", "one\ntwo\nthree\nfour\nsix\n", "zero\none\ntwo\nthree\nfour\nsix\n", true},
		{"no newline at the end", "one\ntwo\nthree\nfour\nfive\nsix", "ONE\ntwo\nthree\nfour\nfive\nsix\n", "ONE\ntwo\nthree\nfour\nfive\nsix", true},
	} {
		got, ok := merge3(base, c.mine, c.theirs)
		if ok != c.ok || got != c.want {
			t.Errorf("%s: %q, %v; want %q, %v", c.name, got, ok, c.want, c.ok)
		}
	}
}

// collectedBranch makes a branch task's branch in a repository: the task
// changed a.txt's last line, added task.txt, and deleted dir/b.txt.
func collectedBranch(t *testing.T) (repo, start, head string) {
	repo = t.TempDir()
	runGit(t, repo, "init", "-q", "-b", "main")
	writeFiles(t, repo, map[string]string{"a.txt": "1\n2\n3\n4\n5\n6\n", "dir/b.txt": "b\n", "keep.txt": "keep\n"})
	runGit(t, repo, "add", "-A")
	runGit(t, repo, "commit", "-qm", "one")
	spec, p := prepareIn(t, repo, false)
	tree := TreeDir(spec.Dir)
	writeFiles(t, tree, map[string]string{"a.txt": "1\n2\n3\n4\n5\nsix by the task\n", "task.txt": "the task's\n"})
	if err := os.Remove(filepath.Join(tree, "dir/b.txt")); err != nil {
		t.Fatal(err)
	}
	c, err := CollectBranch(context.Background(), CollectSpec{Repo: repo, Dir: spec.Dir, Branch: spec.Branch, Start: p.Start, Task: "t1", Owner: spec.Owner, When: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	return repo, p.Start, c.Head
}

func TestApplyBranch(t *testing.T) {
	owner := Owner{UID: os.Getuid(), GID: os.Getgid()}
	read := func(t *testing.T, repo, rel string) string {
		data, err := os.ReadFile(filepath.Join(repo, rel))
		if err != nil {
			return "(" + err.Error() + ")"
		}
		return string(data)
	}
	t.Run("onto a clean tree", func(t *testing.T) {
		repo, start, head := collectedBranch(t)
		index := runGit(t, repo, "ls-files", "-s")
		a, err := ApplyBranch(context.Background(), repo, start, head, owner)
		if err != nil || len(a.Conflicts) > 0 {
			t.Fatalf("%+v, %v", a, err)
		}
		if got := read(t, repo, "a.txt"); got != "1\n2\n3\n4\n5\nsix by the task\n" {
			t.Errorf("a.txt: %q", got)
		}
		if got := read(t, repo, "task.txt"); got != "the task's\n" {
			t.Errorf("task.txt: %q", got)
		}
		if _, err := os.Lstat(filepath.Join(repo, "dir/b.txt")); !os.IsNotExist(err) {
			t.Errorf("dir/b.txt is still there: %v", err)
		}
		// Uncommitted changes, nothing more: HEAD, the index and the
		// branch checked out are as they were.
		if runGit(t, repo, "ls-files", "-s") != index || runGit(t, repo, "symbolic-ref", "HEAD") != "refs/heads/main" {
			t.Error("the index or HEAD changed")
		}
		if st := runGit(t, repo, "status", "--porcelain"); st != "M a.txt\n D dir/b.txt\n?? task.txt" && st != " M a.txt\n D dir/b.txt\n?? task.txt" {
			t.Errorf("status after the apply:\n%s", st)
		}
		// Again: everything is already there.
		a, err = ApplyBranch(context.Background(), repo, start, head, owner)
		if err != nil || len(a.Written)+len(a.Removed)+len(a.Conflicts) != 0 || len(a.Already) != 3 {
			t.Errorf("applied again: %+v, %v", a, err)
		}
	})
	t.Run("onto an unrelated edit and a clean merge", func(t *testing.T) {
		repo, start, head := collectedBranch(t)
		writeFiles(t, repo, map[string]string{"keep.txt": "the user's\n", "a.txt": "one by the user\n2\n3\n4\n5\n6\n"})
		a, err := ApplyBranch(context.Background(), repo, start, head, owner)
		if err != nil || len(a.Conflicts) > 0 || !slices.Equal(a.Merged, []string{"a.txt"}) {
			t.Fatalf("%+v, %v", a, err)
		}
		if got := read(t, repo, "keep.txt"); got != "the user's\n" {
			t.Errorf("the user's edit of keep.txt: %q", got)
		}
		if got := read(t, repo, "a.txt"); got != "one by the user\n2\n3\n4\n5\nsix by the task\n" {
			t.Errorf("a.txt merged: %q", got)
		}
	})
	t.Run("onto a conflicting edit nothing is written", func(t *testing.T) {
		repo, start, head := collectedBranch(t)
		writeFiles(t, repo, map[string]string{"a.txt": "1\n2\n3\n4\n5\nsix by the user\n"})
		before := runGit(t, repo, "status", "--porcelain")
		a, err := ApplyBranch(context.Background(), repo, start, head, owner)
		if err != nil {
			t.Fatal(err)
		}
		if len(a.Conflicts) != 1 || !strings.HasPrefix(a.Conflicts[0], "a.txt: ") || len(a.Written)+len(a.Removed) != 0 {
			t.Fatalf("%+v: want a.txt as the one conflict, and nothing written", a)
		}
		if got := read(t, repo, "a.txt"); got != "1\n2\n3\n4\n5\nsix by the user\n" {
			t.Errorf("the user's a.txt: %q", got)
		}
		if runGit(t, repo, "status", "--porcelain") != before {
			t.Error("the work tree changed on a conflict")
		}
	})
	t.Run("a file the user writes while the apply plans is kept", func(t *testing.T) {
		repo, start, head := collectedBranch(t)
		afterPlan = func() { writeFiles(t, repo, map[string]string{"a.txt": "the user's, just now\n"}) }
		defer func() { afterPlan = func() {} }()
		a, err := ApplyBranch(context.Background(), repo, start, head, owner)
		if err != nil {
			t.Fatal(err)
		}
		if len(a.Conflicts) != 1 || !strings.Contains(a.Conflicts[0], "a.txt: changed in the work tree while the apply ran") || len(a.Written)+len(a.Removed) != 0 {
			t.Fatalf("%+v: want a.txt as the one conflict, and nothing written", a)
		}
		if got := read(t, repo, "a.txt"); got != "the user's, just now\n" {
			t.Errorf("the user's a.txt: %q", got)
		}
		if got := read(t, repo, "task.txt"); !strings.Contains(got, "no such file") {
			t.Errorf("task.txt written: %q", got)
		}
	})
	t.Run("never through a symlink of the work tree", func(t *testing.T) {
		repo, start, head := collectedBranch(t)
		outside := t.TempDir()
		if err := os.RemoveAll(filepath.Join(repo, "dir")); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(outside, filepath.Join(repo, "dir")); err != nil {
			t.Fatal(err)
		}
		a, err := ApplyBranch(context.Background(), repo, start, head, owner)
		if err != nil {
			t.Fatal(err)
		}
		if len(a.Conflicts) != 1 || !strings.Contains(a.Conflicts[0], "dir is a symlink") {
			t.Errorf("%+v: want dir/b.txt refused for the symlink", a)
		}
	})
}

func TestBranchDiff(t *testing.T) {
	repo, start, head := collectedBranch(t)
	writeFiles(t, repo, nil)
	d, err := BranchDiff(context.Background(), repo, start, head, nil, true, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	var paths []string
	for _, f := range d.Files {
		paths = append(paths, f.Action+" "+f.Path)
	}
	if want := []string{"modified a.txt", "deleted dir/b.txt", "added task.txt"}; !slices.Equal(paths, want) {
		t.Errorf("files %v, want %v", paths, want)
	}
	if !strings.Contains(d.Patch, "+six by the task") || !strings.Contains(d.Patch, "-b") {
		t.Errorf("patch:\n%s", d.Patch)
	}
	d, err = BranchDiff(context.Background(), repo, start, head, []string{"dir"}, false, 0)
	if err != nil || len(d.Files) != 1 || d.Files[0].Path != "dir/b.txt" || d.Patch != "" {
		t.Errorf("limited to dir, stat only: %+v, %v", d, err)
	}
	d, err = BranchDiff(context.Background(), repo, start, head, nil, true, 10)
	if err != nil || !d.Cut || len(d.Files) != 3 {
		t.Errorf("cut at 10 bytes: %+v, %v", d, err)
	}
}

func TestDeleteBranch(t *testing.T) {
	repo, _, head := collectedBranch(t)
	if err := DeleteBranch(repo, "codex/t1", "0123456789012345678901234567890123456789"); err == nil || !strings.Contains(err.Error(), "has moved") {
		t.Errorf("a branch that moved: %v", err)
	}
	if runGit(t, repo, "rev-parse", "codex/t1") != head {
		t.Fatal("a moved branch was deleted")
	}
	runGit(t, repo, "checkout", "-q", "codex/t1")
	if err := DeleteBranch(repo, "codex/t1", head); err == nil || !strings.Contains(err.Error(), "is checked out") {
		t.Errorf("a branch checked out: %v", err)
	}
	runGit(t, repo, "checkout", "-q", "main")
	runGit(t, repo, "pack-refs", "--all")
	if err := DeleteBranch(repo, "codex/t1", head); err != nil {
		t.Fatal(err)
	}
	if out := runGit(t, repo, "branch", "--list", "codex/*"); out != "" {
		t.Errorf("the branch is still there: %s", out)
	}
	if runGit(t, repo, "rev-parse", "main") == "" {
		t.Error("main is gone")
	}
	if err := DeleteBranch(repo, "codex/t1", head); err != nil {
		t.Errorf("deleting it again: %v", err)
	}
}

// The user's file keeps its mode; a file the branch turns into a directory
// is applied on a clean tree.
func TestApplyBranchKeepsModesAndTakesAFileThatBecameADirectory(t *testing.T) {
	repo := t.TempDir()
	runGit(t, repo, "init", "-q", "-b", "main")
	writeFiles(t, repo, map[string]string{"secret.env": "a\n", "f": "file\n"})
	runGit(t, repo, "add", "-A")
	runGit(t, repo, "commit", "-qm", "one")
	if err := os.Chmod(filepath.Join(repo, "secret.env"), 0o600); err != nil {
		t.Fatal(err)
	}
	spec, p := prepareIn(t, repo, false)
	tree := TreeDir(spec.Dir)
	writeFiles(t, tree, map[string]string{"secret.env": "b\n"})
	if err := os.Remove(filepath.Join(tree, "f")); err != nil {
		t.Fatal(err)
	}
	writeFiles(t, tree, map[string]string{"f/inner": "inner\n"})
	c, err := CollectBranch(context.Background(), CollectSpec{Repo: repo, Dir: spec.Dir, Branch: spec.Branch, Start: p.Start, Task: "t1", Owner: spec.Owner, When: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	a, err := ApplyBranch(context.Background(), repo, p.Start, c.Head, Owner{UID: os.Getuid(), GID: os.Getgid()})
	if err != nil || len(a.Conflicts) > 0 {
		t.Fatalf("%+v, %v", a, err)
	}
	if fi, err := os.Stat(filepath.Join(repo, "secret.env")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("secret.env after the apply: %v, %v", fi.Mode(), err)
	}
	if data, err := os.ReadFile(filepath.Join(repo, "f/inner")); err != nil || string(data) != "inner\n" {
		t.Errorf("f/inner: %q, %v", data, err)
	}
}

// A directory the task made a file is applied: its files deleted, the
// directory gone, the file written; and a directory that still holds a
// file of the user's that the branch does not delete is a conflict, with
// nothing written.
func TestApplyBranchTakesADirectoryThatBecameAFile(t *testing.T) {
	owner := Owner{UID: os.Getuid(), GID: os.Getgid()}
	branch := func(t *testing.T) (repo, start, head string) {
		repo = t.TempDir()
		runGit(t, repo, "init", "-q", "-b", "main")
		writeFiles(t, repo, map[string]string{"d/x": "x\n", "d/sub/y": "y\n", "keep": "k\n"})
		runGit(t, repo, "add", "-A")
		runGit(t, repo, "commit", "-qm", "one")
		spec, p := prepareIn(t, repo, false)
		tree := TreeDir(spec.Dir)
		if err := os.RemoveAll(filepath.Join(tree, "d")); err != nil {
			t.Fatal(err)
		}
		writeFiles(t, tree, map[string]string{"d": "a file now\n"})
		c, err := CollectBranch(context.Background(), CollectSpec{Repo: repo, Dir: spec.Dir, Branch: spec.Branch, Start: p.Start, Task: "t1", Owner: spec.Owner, When: time.Now()})
		if err != nil {
			t.Fatal(err)
		}
		return repo, p.Start, c.Head
	}
	t.Run("onto the directory as committed", func(t *testing.T) {
		repo, start, head := branch(t)
		a, err := ApplyBranch(context.Background(), repo, start, head, owner)
		if err != nil || len(a.Conflicts) > 0 {
			t.Fatalf("%+v, %v", a, err)
		}
		if data, err := os.ReadFile(filepath.Join(repo, "d")); err != nil || string(data) != "a file now\n" {
			t.Errorf("d: %q, %v", data, err)
		}
		if st := runGit(t, repo, "status", "--porcelain"); st != "D d/sub/y\n D d/x\n?? d" { // runGit trims the first space
			t.Errorf("status after the apply:\n%s", st)
		}
	})
	t.Run("onto a directory with a file of the user's", func(t *testing.T) {
		repo, start, head := branch(t)
		writeFiles(t, repo, map[string]string{"d/mine.txt": "the user's\n"})
		a, err := ApplyBranch(context.Background(), repo, start, head, owner)
		if err != nil || len(a.Conflicts) != 1 || !strings.HasPrefix(a.Conflicts[0], "d: ") || len(a.Written)+len(a.Removed) != 0 {
			t.Fatalf("%+v, %v: want d as the one conflict, nothing written", a, err)
		}
		if data, err := os.ReadFile(filepath.Join(repo, "d/x")); err != nil || string(data) != "x\n" {
			t.Errorf("d/x: %q, %v", data, err)
		}
	})
}

// A branch writes nothing into a repository the user keeps in the work
// tree under another name than .git (an ignored mirror.git, made by git
// init --bare): a hook there would run when the user runs git in it. It is
// a conflict, and nothing is written.
func TestApplyBranchWritesNothingIntoARepositoryOfTheUsers(t *testing.T) {
	repo := t.TempDir()
	runGit(t, repo, "init", "-q", "-b", "main")
	writeFiles(t, repo, map[string]string{".gitignore": "mirror.git/\n", "a.txt": "a\n"})
	runGit(t, repo, "add", "-A")
	runGit(t, repo, "commit", "-qm", "one")
	spec, p := prepareIn(t, repo, false)
	runGit(t, repo, "init", "-q", "--bare", "mirror.git")
	tree := TreeDir(spec.Dir)
	writeFiles(t, tree, map[string]string{".gitignore": "", "mirror.git/hooks/post-checkout": "#!/bin/sh\ntouch planted\n", "b.txt": "b\n"})
	c, err := CollectBranch(context.Background(), CollectSpec{Repo: repo, Dir: spec.Dir, Branch: spec.Branch, Start: p.Start, Task: "t1", Owner: spec.Owner, When: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(c.Files, "mirror.git/hooks/post-checkout") {
		t.Fatalf("files %v: the branch does not carry the hook, so this tests nothing", c.Files)
	}
	a, err := ApplyBranch(context.Background(), repo, p.Start, c.Head, Owner{UID: os.Getuid(), GID: os.Getgid()})
	if err != nil {
		t.Fatal(err)
	}
	if len(a.Conflicts) != 1 || !strings.Contains(a.Conflicts[0], "mirror.git is a directory git takes for a repository") || len(a.Written)+len(a.Removed) != 0 {
		t.Fatalf("%+v: want the hook refused, nothing written", a)
	}
	if _, err := os.Lstat(filepath.Join(repo, "mirror.git/hooks/post-checkout")); !os.IsNotExist(err) {
		t.Errorf("the hook reached the user's repository: %v", err)
	}
}
