package docker

import (
	"bytes"
	"context"
	"errors"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/codex-connector/codex-connector/backend"
	"github.com/codex-connector/codex-connector/images/imagestest"
	"github.com/codex-connector/codex-connector/internal/hostfs"
	"github.com/codex-connector/codex-connector/internal/hostfs/hostfstest"
	"golang.org/x/sys/unix"
)

// runToEnd launches spec and waits for its end.
func runToEnd(t *testing.T, b *Backend, spec backend.Spec) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	h, err := b.Launch(ctx, spec, recordNothing)
	if err != nil {
		t.Fatal(err)
	}
	if err := h.Wait(ctx); err != nil {
		t.Fatal(err)
	}
}

// A run's state is read as a hostile tree: a run fills its state with a
// link out, a link on the way, a named pipe, a large file and a sparse
// one that claims 10 GB; what Files say of each is what it is, nothing is
// followed or blocks, and caps hold.
func TestARunsStateIsReadAsAHostileTree(t *testing.T) {
	b := New(imagestest.Engine(t))
	ctx := context.Background()
	state, outside := t.TempDir(), hostfstest.Outside(t)
	spec := testSpec(t, b, strings.Join([]string{
		"write /state/result hello",
		"symlink " + outside + "/keep /state/link",
		"symlink " + outside + " /state/up",
		"mkfifo /state/pipe",
		"fill /state/big 3000000",
		"sparse /state/sparse 10000000000",
		"say filled",
	}, "; "))
	// The run sees the directory outside at the same path, so its links
	// lead somewhere real on both sides.
	spec.Mounts = []backend.Mount{{Kind: backend.Bind, Source: state, Target: "/state"}, {Kind: backend.Bind, Source: outside, Target: outside, ReadOnly: true}}
	runToEnd(t, b, spec)
	// The hostile steps ran: every plant is there on the host.
	for _, name := range []string{"result", "link", "up", "pipe", "big", "sparse"} {
		if _, err := os.Lstat(filepath.Join(state, name)); err != nil {
			t.Fatalf("the run did not make %s: %v", name, err)
		}
	}
	files, err := b.Files(backend.Mount{Kind: backend.Bind, Source: state, Target: "/state"})
	if err != nil {
		t.Fatal(err)
	}

	if data, size, err := files.ReadFile(ctx, "result", 1<<20); err != nil || string(data) != "hello\n" || size != 6 {
		t.Fatalf("result: %q %d %v", data, size, err)
	}
	for _, rel := range []string{"link", "up/keep", "pipe"} {
		var unsafe *hostfs.UnsafeFile
		if _, _, err := files.ReadFile(ctx, rel, 1<<20); !errors.As(err, &unsafe) || !strings.HasPrefix(unsafe.Path, "/state/") {
			t.Errorf("%s was read: %v", rel, err)
		}
	}
	if data, size, err := files.ReadFile(ctx, "big", 1<<20); err != nil || len(data) != 1<<20 || size != 3000000 {
		t.Fatalf("a large file is not cut at the cap: %d of %d, %v", len(data), size, err)
	}
	rc, info, err := files.Open(ctx, "big", 3000000-10)
	if err != nil {
		t.Fatal(err)
	}
	tail, _ := io.ReadAll(rc)
	rc.Close()
	if string(tail) != "ffffffffff" || info.Size != 3000000 {
		t.Fatalf("read from an offset: %q, %+v", tail, info)
	}

	for rel, want := range map[string]fs.FileMode{"link": fs.ModeSymlink, "up": fs.ModeSymlink, "pipe": fs.ModeNamedPipe, "result": 0} {
		if info, err := files.Stat(ctx, rel); err != nil || info.Mode.Type() != want {
			t.Errorf("stat %s: %v %v, want type %v", rel, info.Mode, err, want)
		}
	}
	if _, err := files.Stat(ctx, "up/keep"); err == nil {
		t.Error("stat followed a link on the way")
	}
	entries, err := files.ReadDir(ctx, "", nil)
	if err != nil || len(entries) < 6 {
		t.Fatalf("read the state: %d entries, %v", len(entries), err)
	}

	// Holes cost nothing, in the measure and in a copy; data past the
	// limit stops the copy.
	used, err := files.Usage(ctx, 1<<40)
	if err != nil || used < 3000000 || used > 64<<20 {
		t.Fatalf("usage %d, %v: not the blocks the state holds", used, err)
	}
	out, err := os.Create(filepath.Join(t.TempDir(), "copy"))
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	if size, err := files.CopyFile(ctx, "sparse", out, 1<<20); err != nil || size != 10000000000 {
		t.Fatalf("copy a sparse file: %d, %v", size, err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(int(out.Fd()), &st); err != nil || st.Size != 10000000000 || st.Blocks*512 > 1<<20 {
		t.Fatalf("the copy is not sparse: %d bytes, %d blocks (%v)", st.Size, st.Blocks, err)
	}
	big, err := os.Create(filepath.Join(t.TempDir(), "big"))
	if err != nil {
		t.Fatal(err)
	}
	defer big.Close()
	if _, err := files.CopyFile(ctx, "big", big, 1<<20); !errors.Is(err, hostfs.ErrTooMuchData) {
		t.Fatalf("a copy past its limit: %v", err)
	}
	if _, err := files.CopyFile(ctx, "link", big, 1<<20); err == nil {
		t.Fatal("a link was copied")
	}
	hostfstest.OutsideIntact(t, outside)

	if _, err := b.Files(backend.Mount{Kind: backend.Volume, Source: "some-volume", Target: "/state"}); err == nil {
		t.Fatal("a volume's files are read as if they were the server's")
	}
}

// Preparing a state a run has had replaces what the run left in a path's
// place (a link out, a pipe) and follows none of it; a copy into it lands
// whole or not at all; and no path leads out of the state.
func TestPreparingAStateReplacesWhatARunLeft(t *testing.T) {
	b := New(imagestest.Engine(t))
	ctx := context.Background()
	parent, outside := t.TempDir(), hostfstest.Outside(t)
	state, sibling := filepath.Join(parent, "task"), filepath.Join(parent, "other")
	hostfstest.Must(t, os.Mkdir(state, 0o700))
	hostfstest.Must(t, os.Mkdir(sibling, 0o700))
	hostfstest.Must(t, os.WriteFile(filepath.Join(sibling, "keep"), []byte("keep me"), 0o600))
	spec := testSpec(t, b, strings.Join([]string{
		"symlink " + outside + " /state/codex-home",
		"mkfifo /state/out",
		"symlink " + outside + "/keep /state/prompt",
		"say planted",
	}, "; "))
	spec.Mounts = []backend.Mount{{Kind: backend.Bind, Source: state, Target: "/state"}}
	runToEnd(t, b, spec)
	for _, name := range []string{"codex-home", "out", "prompt"} {
		if fi, err := os.Lstat(filepath.Join(state, name)); err != nil || fi.Mode().IsRegular() || fi.IsDir() {
			t.Fatalf("the run did not plant %s: %v", name, err)
		}
	}
	files, err := b.Files(backend.Mount{Kind: backend.Bind, Source: state, Target: "/state"})
	if err != nil {
		t.Fatal(err)
	}
	owner := backend.Owner{UID: os.Getuid(), GID: os.Getgid()}
	for _, rel := range []string{"", "codex-home", "out", "codex-home/sessions"} {
		hostfstest.Must(t, files.MakeDir(ctx, rel, owner))
		if fi, err := os.Lstat(filepath.Join(state, rel)); err != nil || !fi.IsDir() || fi.Mode().Perm() != 0o700 {
			t.Fatalf("%s is not a real directory of mode 0700: %v %v", rel, fi.Mode(), err)
		}
	}
	hostfstest.Must(t, files.WriteFile(ctx, "prompt", []byte("say hi"), owner))
	if data, err := os.ReadFile(filepath.Join(state, "prompt")); err != nil || string(data) != "say hi" {
		t.Fatalf("prompt %q %v", data, err)
	}
	hostfstest.OutsideIntact(t, outside)
	if entries, _ := os.ReadDir(outside); len(entries) != 1 {
		t.Fatalf("something was made outside the state: %v", entries)
	}

	// A copy lands whole under its name, from another state.
	srcDir := t.TempDir()
	hostfstest.Must(t, os.MkdirAll(filepath.Join(srcDir, "codex-home", "sessions"), 0o700))
	hostfstest.Must(t, os.WriteFile(filepath.Join(srcDir, "codex-home", "sessions", "s.jsonl"), []byte("one turn\n"), 0o600))
	hostfstest.Must(t, os.WriteFile(filepath.Join(srcDir, "big"), bytes.Repeat([]byte("b"), 3<<20), 0o600))
	src, err := b.Files(backend.Mount{Kind: backend.Bind, Source: srcDir, Target: "/state"})
	if err != nil {
		t.Fatal(err)
	}
	if size, err := files.CopyFrom(ctx, src, "codex-home/sessions/s.jsonl", owner, 1<<20); err != nil || size != 9 {
		t.Fatalf("copy: %d %v", size, err)
	}
	if data, err := os.ReadFile(filepath.Join(state, "codex-home", "sessions", "s.jsonl")); err != nil || string(data) != "one turn\n" {
		t.Fatalf("the copy holds %q, %v", data, err)
	}
	// One past its limit leaves nothing, not even its temporary file.
	if _, err := files.CopyFrom(ctx, src, "big", owner, 1<<20); !errors.Is(err, hostfs.ErrTooMuchData) {
		t.Fatalf("a copy past its limit: %v", err)
	}
	for _, name := range []string{"big", "big.partial"} {
		if _, err := os.Lstat(filepath.Join(state, name)); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("a failed copy left %s: %v", name, err)
		}
	}

	// No path leads out: not to the state beside it, not to their parent.
	for _, rel := range []string{"..", "../other", "../other/keep", ".", "./prompt", "/etc/passwd", "out//x"} {
		if err := files.Remove(ctx, rel); err == nil {
			t.Errorf("removed %q", rel)
		}
		if err := files.WriteFile(ctx, rel, []byte("x"), owner); err == nil {
			t.Errorf("wrote %q", rel)
		}
		if err := files.MakeDir(ctx, rel, owner); err == nil {
			t.Errorf("made directory %q", rel)
		}
		if _, err := files.Stat(ctx, rel); err == nil {
			t.Errorf("stat %q answered", rel)
		}
	}
	if data, err := os.ReadFile(filepath.Join(sibling, "keep")); err != nil || string(data) != "keep me" {
		t.Fatalf("the state beside it was touched: %q %v", data, err)
	}
	if _, err := files.Stat(ctx, "prompt"); err != nil {
		t.Fatalf("a refused path took a file with it: %v", err)
	}
	for _, source := range []string{"", "relative/state", state + "/", "/"} {
		if _, err := b.Files(backend.Mount{Kind: backend.Bind, Source: source, Target: "/state"}); err == nil {
			t.Errorf("files of %q", source)
		}
	}

	// Removing the state removes it whole, and nothing beside it.
	hostfstest.Must(t, files.Remove(ctx, ""))
	if _, err := os.Lstat(state); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the state is still there: %v", err)
	}
	hostfstest.Must(t, files.Remove(ctx, ""))
	hostfstest.OutsideIntact(t, outside)
	if _, err := os.Stat(filepath.Join(sibling, "keep")); err != nil {
		t.Fatal(err)
	}
}

// A run may take the bits off its own state directory. Stat of one name
// in it still answers when the search bit is left (the gate's check needs
// that), and tells a name that is not there from one it cannot see. As a
// user other than root, to whom the bits apply.
func TestStatOfOneNameAnswersInALockedState(t *testing.T) {
	if os.Getenv("FILES_AS_USER") == "" {
		if os.Geteuid() != 0 {
			t.Fatal("this test switches to another user, which needs root")
		}
		shared, err := os.MkdirTemp("", "files-as-user-")
		hostfstest.Must(t, err)
		t.Cleanup(func() { _ = hostfs.RemoveTree(shared) })
		hostfstest.Must(t, os.Chmod(shared, 0o755))
		self, err := os.Executable()
		hostfstest.Must(t, err)
		bin := filepath.Join(shared, "docker.test")
		data, err := os.ReadFile(self)
		hostfstest.Must(t, err)
		hostfstest.Must(t, os.WriteFile(bin, data, 0o755))
		dir := filepath.Join(shared, "dir")
		hostfstest.Must(t, os.Mkdir(dir, 0o700))
		hostfstest.Must(t, os.Chown(dir, imagestest.RepoUID, imagestest.RepoGID))
		cmd := exec.Command(bin, "-test.run=^TestStatOfOneNameAnswersInALockedState$", "-test.count=1", "-test.v")
		cmd.Env = append(os.Environ(), "FILES_AS_USER="+dir, "HOME="+dir)
		cmd.Dir = dir
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: imagestest.RepoUID, Gid: imagestest.RepoGID}}
		out, err := cmd.CombinedOutput()
		if err != nil || !strings.Contains(string(out), "--- PASS: TestStatOfOneNameAnswersInALockedState") {
			t.Fatalf("as uid %d: %v\n%s", imagestest.RepoUID, err, out)
		}
		return
	}
	ctx := context.Background()
	state := filepath.Join(os.Getenv("FILES_AS_USER"), "state")
	hostfstest.Must(t, os.Mkdir(state, 0o700))
	hostfstest.Must(t, os.WriteFile(filepath.Join(state, "gate-1"), nil, 0o444))
	files, err := New(nil).Files(backend.Mount{Kind: backend.Bind, Source: state, Target: "/state"})
	hostfstest.Must(t, err)
	hostfstest.Must(t, os.Chmod(state, 0o100))
	defer os.Chmod(state, 0o700)
	if _, _, err := files.ReadFile(ctx, "gate-1", 10); err == nil {
		t.Fatal("the bits do not apply to this user: the test proves nothing")
	}
	if _, err := files.Stat(ctx, "gate-1"); err != nil {
		t.Fatalf("stat of a name in a state with the search bit alone: %v", err)
	}
	if _, err := files.Stat(ctx, "gate-2"); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("stat of a name that is not there: %v", err)
	}
	hostfstest.Must(t, os.Chmod(state, 0))
	if _, err := files.Stat(ctx, "gate-1"); err == nil || errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("stat in a state with no bits: %v, want an error other than not there", err)
	}
}
