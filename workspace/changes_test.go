package workspace

import (
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/codex-connector/codex-connector/internal/hostfs/hostfstest"
	git "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing/object"
)

// committedRepo makes a repository with one committed file, tracked.txt.
func committedRepo(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	repo, err := git.PlainInit(dir, false)
	hostfstest.Must(t, err)
	hostfstest.Must(t, os.WriteFile(filepath.Join(dir, "tracked.txt"), []byte("v1\n"), 0o644))
	wt, err := repo.Worktree()
	hostfstest.Must(t, err)
	_, err = wt.Add("tracked.txt")
	hostfstest.Must(t, err)
	_, err = wt.Commit("first", &git.CommitOptions{Author: &object.Signature{Name: "t", Email: "t@example.com", When: time.Now()}})
	hostfstest.Must(t, err)
	return dir
}

// waitGoroutines waits until no more goroutines run than before: a scan
// given up on must not go on in the background.
func waitGoroutines(t *testing.T, before int) {
	t.Helper()
	for i := 0; runtime.NumGoroutine() > before; i++ {
		if i > 500 {
			buf := make([]byte, 1<<20)
			t.Fatalf("%d goroutines left behind:\n%s", runtime.NumGoroutine()-before, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// What a task can leave in a repository does not make the host's git
// status hang, leak or read past it: measured with go-git 5.19, a named
// pipe as .git/HEAD, .git/config, .git/index or .git blocked its open
// forever.
func TestSnapshotOfAHostileRepository(t *testing.T) {
	for _, tc := range []struct {
		name  string
		plant func(t *testing.T, dir string)
		want  string
	}{
		{"a named pipe as .git/HEAD", func(t *testing.T, dir string) {
			hostfstest.Must(t, os.Remove(filepath.Join(dir, ".git", "HEAD")))
			hostfstest.Mkfifo(t, filepath.Join(dir, ".git", "HEAD"))
		}, "HEAD is a named pipe"},
		{"a named pipe as .git/config", func(t *testing.T, dir string) {
			hostfstest.Must(t, os.Remove(filepath.Join(dir, ".git", "config")))
			hostfstest.Mkfifo(t, filepath.Join(dir, ".git", "config"))
		}, "config is a named pipe"},
		{"a named pipe as .git/index", func(t *testing.T, dir string) {
			hostfstest.Must(t, os.Remove(filepath.Join(dir, ".git", "index")))
			hostfstest.Mkfifo(t, filepath.Join(dir, ".git", "index"))
		}, "index is a named pipe"},
		{"a named pipe as .git", func(t *testing.T, dir string) {
			hostfstest.Must(t, os.RemoveAll(filepath.Join(dir, ".git")))
			hostfstest.Mkfifo(t, filepath.Join(dir, ".git"))
		}, ".git is a named pipe"},
		{"a symlink as .git/index, to an endless device", func(t *testing.T, dir string) {
			hostfstest.Must(t, os.Remove(filepath.Join(dir, ".git", "index")))
			hostfstest.Symlink(t, "/dev/zero", filepath.Join(dir, ".git", "index"))
		}, "index is a symbolic link"},
		{"a symlink as .git/refs, to another repository", func(t *testing.T, dir string) {
			other := committedRepo(t)
			hostfstest.Must(t, os.RemoveAll(filepath.Join(dir, ".git", "refs")))
			hostfstest.Symlink(t, filepath.Join(other, ".git", "refs"), filepath.Join(dir, ".git", "refs"))
		}, "refs is a symbolic link"},
		{"a huge file in place of a tracked one, of the size the index records", func(t *testing.T, dir string) {
			// The index keeps a size's low 32 bits: 4 GiB and 3 bytes is
			// "v1\n"'s size there, so the file must be hashed, as git would.
			hostfstest.Must(t, os.Truncate(filepath.Join(dir, "tracked.txt"), 1<<32+3))
			future := time.Now().Add(time.Hour)
			hostfstest.Must(t, os.Chtimes(filepath.Join(dir, "tracked.txt"), future, future))
		}, "took longer than"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := committedRepo(t)
			pin := mustPin(t, dir) // as the launch does, before the task
			tc.plant(t, dir)
			before := runtime.NumGoroutine()
			state, err := snapshotWorktree(dir, pin, time.Second)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, %v; want an error saying %q", state, err, tc.want)
			}
			waitGoroutines(t, before)
		})
	}
	t.Run("a named pipe in place of a tracked file is a change, not a hang", func(t *testing.T) {
		dir := committedRepo(t)
		pin := mustPin(t, dir)
		before, err := snapshotWorktree(dir, pin, 10*time.Second)
		hostfstest.Must(t, err)
		hostfstest.Must(t, os.Remove(filepath.Join(dir, "tracked.txt")))
		hostfstest.Mkfifo(t, filepath.Join(dir, "tracked.txt"))
		hostfstest.Mkfifo(t, filepath.Join(dir, "new-pipe"))
		after, err := snapshotWorktree(dir, pin, 10*time.Second)
		hostfstest.Must(t, err)
		if got := changedPaths(before, after); strings.Join(got, ",") != "new-pipe,tracked.txt" {
			t.Fatalf("changed %q", got)
		}
	})
	t.Run("an ordinary repository still shows its changes", func(t *testing.T) {
		dir := committedRepo(t)
		pin := mustPin(t, dir)
		before, err := snapshotWorktree(dir, pin, 10*time.Second)
		hostfstest.Must(t, err)
		hostfstest.Must(t, os.WriteFile(filepath.Join(dir, "tracked.txt"), []byte("v2\n"), 0o644))
		hostfstest.Must(t, os.WriteFile(filepath.Join(dir, "new.txt"), []byte("x\n"), 0o644))
		after, err := snapshotWorktree(dir, pin, 10*time.Second)
		hostfstest.Must(t, err)
		if got := changedPaths(before, after); strings.Join(got, ",") != "new.txt,tracked.txt" {
			t.Fatalf("changed %q", got)
		}
	})
}

// mustPin pins the git directories of the work tree at dir, as a launch
// does.
func mustPin(t *testing.T, dir string) *gitPin {
	t.Helper()
	pin, err := pinGitDirs(dir)
	if err != nil {
		t.Fatalf("pin the git directories of %s: %v", dir, err)
	}
	return pin
}
