package hostfs

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/codex-connector/codex-connector/images/imagestest"
	"github.com/codex-connector/codex-connector/internal/hostfs/hostfstest"
	"golang.org/x/sys/unix"
)

// secretFile makes a file only root (or this user) can read, outside any
// task's directory, as the target of a task's symlink.
func secretFile(t *testing.T) (dir, path string) {
	t.Helper()
	dir = t.TempDir()
	path = filepath.Join(dir, "secret")
	if err := os.WriteFile(path, []byte("TOP-SECRET-HOST-FILE\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return dir, path
}

func TestReadRegularRefusesWhatATaskMade(t *testing.T) {
	_, secret := secretFile(t)
	base := t.TempDir()
	hostfstest.Must(t, os.MkdirAll(filepath.Join(base, "out"), 0o755))
	hostfstest.Must(t, os.WriteFile(filepath.Join(base, "out", "plain.txt"), []byte("hello"), 0o644))
	hostfstest.Symlink(t, secret, filepath.Join(base, "out", "link.txt"))
	hostfstest.Symlink(t, filepath.Dir(secret), filepath.Join(base, "linkdir"))
	hostfstest.Mkfifo(t, filepath.Join(base, "out", "fifo.txt"))
	hostfstest.Must(t, os.Mkdir(filepath.Join(base, "out", "dir.txt"), 0o755))
	big, err := os.Create(filepath.Join(base, "out", "big.txt"))
	hostfstest.Must(t, err)
	hostfstest.Must(t, big.Truncate(10<<30)) // sparse: 10 GiB that take no room
	big.Close()

	for _, tc := range []struct{ name, rel, want string }{
		{"a symlink to a host file", "out/link.txt", "is a symbolic link"},
		{"a path through a symlinked directory", "linkdir/secret", "linkdir is a symbolic link where a directory belongs"},
		{"a named pipe, without blocking", "out/fifo.txt", "is a named pipe"},
		{"a directory", "out/dir.txt", "is a directory"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			data, _, err := ReadRegular(base, "state", tc.rel, 1<<20)
			var unsafe *UnsafeFile
			if !errors.As(err, &unsafe) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %q, %v; want an unsafeFile error saying %q", data, err, tc.want)
			}
			if strings.Contains(string(data), "TOP-SECRET") {
				t.Fatal("the secret was read")
			}
		})
	}
	t.Run("a huge file is read up to the cap, and its size told", func(t *testing.T) {
		data, size, err := ReadRegular(base, "state", "out/big.txt", 4096)
		if err != nil || len(data) != 4096 || size != 10<<30 {
			t.Fatalf("got %d bytes, size %d, %v", len(data), size, err)
		}
	})
	t.Run("a regular file is read", func(t *testing.T) {
		data, size, err := ReadRegular(base, "state", "out/plain.txt", 4096)
		if err != nil || string(data) != "hello" || size != 5 {
			t.Fatalf("got %q, %d, %v", data, size, err)
		}
	})
	t.Run("a missing file is os.ErrNotExist", func(t *testing.T) {
		if _, _, err := ReadRegular(base, "state", "out/none.txt", 4096); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("got %v", err)
		}
	})
}

// EnsureDir replaces what a task planted in the server's layout and never
// touches what the plants point at.
func TestEnsureDirReplacesPlantsWithoutFollowingThem(t *testing.T) {
	outside := t.TempDir()
	hostfstest.Must(t, os.WriteFile(filepath.Join(outside, "keep"), []byte("x"), 0o600))
	hostfstest.Must(t, os.Chmod(outside, 0o751))
	base := t.TempDir()
	hostfstest.Must(t, os.MkdirAll(filepath.Join(base, "id"), 0o700))
	hostfstest.Symlink(t, outside, filepath.Join(base, "id", "out"))
	hostfstest.Mkfifo(t, filepath.Join(base, "id", "home"))
	hostfstest.Must(t, os.Mkdir(filepath.Join(base, "id", "locked"), 0o700))
	hostfstest.Must(t, os.Chmod(filepath.Join(base, "id", "locked"), 0))
	for _, rel := range []string{"id/out", "id/home", "id/locked"} {
		if err := EnsureDir(base, rel, 0o700, false, 0, 0); err != nil {
			t.Fatalf("%s: %v", rel, err)
		}
		fi, err := os.Lstat(filepath.Join(base, rel))
		if err != nil || !fi.IsDir() || fi.Mode().Perm() != 0o700 {
			t.Fatalf("%s is %v, %v; want a directory of mode 0700", rel, fi.Mode(), err)
		}
	}
	if fi, err := os.Stat(outside); err != nil || fi.Mode().Perm() != 0o751 {
		t.Fatalf("the symlink's target changed: %v %v", fi.Mode(), err)
	}
	if !hostfstest.Exists(filepath.Join(outside, "keep")) {
		t.Fatal("the symlink's target lost its content")
	}
}

// buildHostileTree makes, under dir, what a hostile task leaves in its
// state directory: symlinks to outside, a named pipe, locked directories,
// a directory without write permission, and a deep nest.
func buildHostileTree(t testing.TB, dir, outside string, depth int) {
	t.Helper()
	hostfstest.Must(t, os.MkdirAll(filepath.Join(dir, "a", "b"), 0o755))
	hostfstest.Must(t, os.WriteFile(filepath.Join(dir, "a", "b", "f"), []byte("x"), 0o644))
	hostfstest.Must(t, os.Symlink(outside, filepath.Join(dir, "a", "to-outside")))
	hostfstest.Must(t, os.Symlink(filepath.Join(outside, "keep"), filepath.Join(dir, "a", "b", "to-file")))
	hostfstest.Must(t, syscall.Mkfifo(filepath.Join(dir, "a", "fifo"), 0o644))
	hostfstest.Must(t, os.MkdirAll(filepath.Join(dir, "locked", "inner"), 0o755))
	hostfstest.Must(t, os.WriteFile(filepath.Join(dir, "locked", "inner", "f"), []byte("x"), 0o644))
	hostfstest.Must(t, os.Chmod(filepath.Join(dir, "locked", "inner"), 0))
	hostfstest.Must(t, os.Chmod(filepath.Join(dir, "locked"), 0))
	hostfstest.Must(t, os.MkdirAll(filepath.Join(dir, "readonly"), 0o755))
	hostfstest.Must(t, os.WriteFile(filepath.Join(dir, "readonly", "f"), []byte("x"), 0o644))
	hostfstest.Must(t, os.Chmod(filepath.Join(dir, "readonly"), 0o555))
	// Deeper than PATH_MAX allows in one path: made one level at a time.
	fd, err := syscall.Open(dir, syscall.O_RDONLY|syscall.O_DIRECTORY, 0)
	hostfstest.Must(t, err)
	for i := 0; i < depth; i++ {
		hostfstest.Must(t, syscall.Mkdirat(fd, "nest-of-directories", 0o755))
		next, err := syscall.Openat(fd, "nest-of-directories", syscall.O_RDONLY|syscall.O_DIRECTORY, 0)
		hostfstest.Must(t, err)
		syscall.Close(fd)
		fd = next
	}
	syscall.Close(fd)
}

func TestRemoveTreeNeverFollowsAndCopesWithLockedDirectories(t *testing.T) {
	outside := hostfstest.Outside(t)
	dir := filepath.Join(t.TempDir(), "task")
	hostfstest.Must(t, os.Mkdir(dir, 0o700))
	buildHostileTree(t, dir, outside, 2000)
	if err := RemoveTree(dir); err != nil {
		t.Fatal(err)
	}
	if hostfstest.Exists(dir) {
		t.Fatal("the tree is still there")
	}
	hostfstest.OutsideIntact(t, outside)
	if err := RemoveTree(dir); err != nil {
		t.Fatalf("removing what is gone: %v", err)
	}
}

// As a user other than root, locked directories need unlocking first, and
// what belongs to someone else cannot go: the removal says which and why,
// and removes all the rest.
func TestRemoveTreeAsAUser(t *testing.T) {
	if os.Getenv("HOSTFS_AS_USER") == "" {
		if os.Geteuid() != 0 {
			t.Fatal("this test switches to another user, which needs root")
		}
		runAsUser(t, "TestRemoveTreeAsAUser")
		return
	}
	// Here as imagestest.RepoUID, in a directory the parent made for it.
	dir, outside := os.Getenv("HOSTFS_DIR"), os.Getenv("HOSTFS_OUTSIDE")
	mine := filepath.Join(dir, "mine")
	hostfstest.Must(t, os.Mkdir(mine, 0o700))
	buildHostileTree(t, mine, outside, 300)
	if err := RemoveTree(mine); err != nil {
		t.Fatal(err)
	}
	if hostfstest.Exists(mine) {
		t.Fatal("the tree is still there")
	}
	// The parent checks that outside, which only root reads, is intact.

	// The parent planted a directory of root's in "theirs".
	theirs := filepath.Join(dir, "theirs")
	err := RemoveTree(theirs)
	if err == nil || !strings.Contains(err.Error(), filepath.Join(theirs, "roots", "f")+": permission denied") || !strings.Contains(err.Error(), "remove it by hand") {
		t.Fatalf("got %v; want the root-owned file named, with why and what to do", err)
	}
	t.Logf("what could not be removed: %v", err)
	if hostfstest.Exists(filepath.Join(theirs, "other")) {
		t.Fatal("what could be removed was left")
	}
}

// runAsUser runs the test name of this test binary again as
// imagestest.RepoUID, with a directory it owns (HOSTFS_DIR) and a directory
// only root can read (HOSTFS_OUTSIDE).
func runAsUser(t *testing.T, name string) {
	t.Helper()
	// The test binary and everything the user needs must be reachable: the
	// go build cache and t.TempDir are private to root.
	shared, err := os.MkdirTemp("", "hostfs-as-user-")
	hostfstest.Must(t, err)
	t.Cleanup(func() { _ = RemoveTree(shared) })
	hostfstest.Must(t, os.Chmod(shared, 0o755))
	self, err := os.Executable()
	hostfstest.Must(t, err)
	bin := filepath.Join(shared, "runner.test")
	copyFile(t, self, bin, 0o755)
	dir := filepath.Join(shared, "dir")
	hostfstest.Must(t, os.Mkdir(dir, 0o755))
	hostfstest.Must(t, os.Chown(dir, imagestest.RepoUID, imagestest.RepoGID))
	outside := filepath.Join(shared, "outside")
	hostfstest.Must(t, os.Mkdir(outside, 0o700))
	hostfstest.Must(t, os.WriteFile(filepath.Join(outside, "keep"), []byte("keep me"), 0o600))
	// A directory of the user's holding one of root's that the user cannot
	// empty, beside things the user can remove.
	theirs := filepath.Join(dir, "theirs")
	hostfstest.Must(t, os.MkdirAll(filepath.Join(theirs, "roots"), 0o755))
	hostfstest.Must(t, os.WriteFile(filepath.Join(theirs, "roots", "f"), []byte("x"), 0o644))
	hostfstest.Must(t, os.WriteFile(filepath.Join(theirs, "other"), []byte("x"), 0o644))
	hostfstest.Must(t, os.Chown(theirs, imagestest.RepoUID, imagestest.RepoGID))
	hostfstest.Must(t, os.Chown(filepath.Join(theirs, "other"), imagestest.RepoUID, imagestest.RepoGID))

	cmd := exec.Command(bin, "-test.run=^"+name+"$", "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), "HOSTFS_AS_USER=1", "HOSTFS_DIR="+dir, "HOSTFS_OUTSIDE="+outside, "HOME="+dir)
	cmd.Dir = dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: imagestest.RepoUID, Gid: imagestest.RepoGID}}
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "--- PASS: "+name) {
		t.Fatalf("as uid %d: %v\n%s", imagestest.RepoUID, err, out)
	}
	t.Logf("as uid %d:\n%s", imagestest.RepoUID, out)
	hostfstest.OutsideIntact(t, outside)
}

func copyFile(t *testing.T, from, to string, mode os.FileMode) {
	t.Helper()
	in, err := os.Open(from)
	hostfstest.Must(t, err)
	defer in.Close()
	out, err := os.OpenFile(to, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, mode)
	hostfstest.Must(t, err)
	_, err = io.Copy(out, in)
	hostfstest.Must(t, err)
	hostfstest.Must(t, out.Close())
}

func TestTreeUsageCountsBlocksNotSymlinksOrHoles(t *testing.T) {
	outside := t.TempDir()
	big := make([]byte, 8<<20)
	hostfstest.Must(t, os.WriteFile(filepath.Join(outside, "big"), big, 0o644))
	dir := t.TempDir()
	sparse, err := os.Create(filepath.Join(dir, "sparse"))
	hostfstest.Must(t, err)
	hostfstest.Must(t, sparse.Truncate(100<<30))
	sparse.Close()
	hostfstest.Symlink(t, filepath.Join(outside, "big"), filepath.Join(dir, "link"))
	hostfstest.Symlink(t, outside, filepath.Join(dir, "linkdir"))
	hostfstest.Mkfifo(t, filepath.Join(dir, "fifo"))
	used, err := TreeUsage(dir, 0)
	if err != nil || used > 1<<20 {
		t.Fatalf("a sparse file, symlinks and a pipe use %d bytes (%v); want little", used, err)
	}
	hostfstest.Must(t, os.WriteFile(filepath.Join(dir, "real"), big, 0o644))
	used, err = TreeUsage(dir, 0)
	if err != nil || used < 8<<20 {
		t.Fatalf("8 MiB written count %d bytes (%v)", used, err)
	}
	t.Run("it stops early past the limit", func(t *testing.T) {
		for i := 0; i < 100; i++ {
			hostfstest.Must(t, os.WriteFile(filepath.Join(dir, fmt.Sprint("f", i)), big[:64<<10], 0o644))
		}
		used, err := TreeUsage(dir, 1<<20)
		if err != nil || used <= 1<<20 || used >= 8<<20+100*64<<10 {
			t.Fatalf("used %d, %v", used, err)
		}
	})
	t.Run("a nest too deep to measure says so", func(t *testing.T) {
		deep := t.TempDir()
		buildHostileTree(t, deep, outside, MaxWalkDepth+10)
		if os.Geteuid() == 0 {
			// Root reads locked directories; the depth is what stops it.
			_, err := TreeUsage(deep, 0)
			var unsafe *UnsafeFile
			if !errors.As(err, &unsafe) || !strings.Contains(err.Error(), "nested more than "+strconv.Itoa(MaxWalkDepth)) {
				t.Fatalf("got %v", err)
			}
		}
		hostfstest.Must(t, RemoveTree(deep))
	})
}

// Codex makes and removes temporary directories in its state directory
// while it runs: one removed between the walk's open and its read holds
// nothing, and is no reason to stop the task.
func TestUsageOfADirectoryRemovedWhileMeasured(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "tmp-git")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	if err := os.Remove(dir); err != nil {
		t.Fatal(err)
	}
	var total int64
	if err := usageOf(fd, dir, 0, 0, &total); err != nil {
		t.Fatalf("measuring a directory removed meanwhile: %v", err)
	}
}
