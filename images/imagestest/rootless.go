package imagestest

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/docker/docker/client"
	git "github.com/go-git/go-git/v5"
)

// A rootless engine is what an ordinary user of a shared machine runs
// tasks on: rootless Podman's Docker-compatible service, or rootless
// dockerd. Each test starts its own as an ordinary user of this machine,
// by hand (there is no systemd here), with its storage, runtime directory
// and socket in a directory of its own, and stops it when the test ends:
// two test binaries may run one at once.

// Rootless engine kinds.
const (
	Podman         = "podman"
	RootlessDocker = "rootless-docker"
)

// RootlessEngine is one test's rootless engine.
type RootlessEngine struct {
	Kind string
	// User is the ordinary user it runs as, with their uid and gid.
	User     string
	UID, GID int
	// Host is its DOCKER_HOST; Dir the test's directory of it, the
	// user's.
	Host string
	Dir  string
	cmd  *exec.Cmd
	done chan struct{}
}

// rootlessUsers are the ordinary users the tests run engines as, one per
// kind: a user's rootless engine is theirs alone.
var rootlessUsers = map[string]string{Podman: "cc-podman", RootlessDocker: "cc-rootless"}

// StartRootless starts a rootless engine of kind as its ordinary user and
// waits until it answers. It fails the test, never skips, when the engine
// cannot start, saying what is missing.
func StartRootless(t testing.TB, kind string) *RootlessEngine {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("this test makes an ordinary user and starts their engine, which needs root")
	}
	name, ok := rootlessUsers[kind]
	if !ok {
		t.Fatalf("no rootless engine kind %q", kind)
	}
	uid, gid := ensureUser(t, name)
	// Short: the engine's sockets live below it.
	dir, err := os.MkdirTemp("", "ccrl-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	for _, sub := range []string{"", "xdg", "tmp", "home"} {
		p := filepath.Join(dir, sub)
		if err := os.MkdirAll(p, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(p, uid, gid); err != nil {
			t.Fatal(err)
		}
	}
	e := &RootlessEngine{Kind: kind, User: name, UID: uid, GID: gid, Dir: dir}
	useTun(t)
	var args []string
	switch kind {
	case Podman:
		e.Host = "unix://" + filepath.Join(dir, "podman.sock")
		args = []string{"podman", "--root", filepath.Join(dir, "storage"), "--runroot", filepath.Join(dir, "run"), "--tmpdir", filepath.Join(dir, "tmp"),
			"system", "service", "--time=0", e.Host}
	case RootlessDocker:
		e.Host = "unix://" + filepath.Join(dir, "docker.sock")
		args = []string{"dockerd-rootless.sh", "--host", e.Host, "--data-root", filepath.Join(dir, "data"),
			"--exec-root", filepath.Join(dir, "exec"), "--pidfile", filepath.Join(dir, "docker.pid")}
	}
	log, err := os.OpenFile(filepath.Join(dir, "engine.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer log.Close()
	bin, err := exec.LookPath(args[0])
	if err != nil && kind == RootlessDocker {
		bin, err = exec.LookPath("/usr/share/docker.io/contrib/" + args[0])
	}
	if err != nil {
		t.Fatalf("%s: %v (install podman, uidmap, slirp4netns, fuse-overlayfs, rootlesskit and docker.io)", args[0], err)
	}
	cmd := exec.Command(bin, args[1:]...)
	cmd.Dir = dir
	cmd.Env = []string{"HOME=" + homeOf(t, name), "USER=" + name, "LOGNAME=" + name,
		"XDG_RUNTIME_DIR=" + filepath.Join(dir, "xdg"), "TMPDIR=" + filepath.Join(dir, "tmp"),
		// dockerd-rootless.sh lives with Debian's docker.io contrib files,
		// and finds dockerd and rootlesskit on PATH.
		"PATH=/usr/share/docker.io/contrib:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s as %s: %v (install podman, uidmap, slirp4netns, fuse-overlayfs, rootlesskit and docker.io)", args[0], name, err)
	}
	e.cmd, e.done = cmd, make(chan struct{})
	go func() { cmd.Wait(); close(e.done) }()
	t.Cleanup(func() { e.stop(t) })
	cli := dial(t, e.Host)
	defer cli.Close()
	for deadline := time.Now().Add(60 * time.Second); ; {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_, err := cli.Ping(ctx)
		cancel()
		if err == nil {
			return e
		}
		select {
		case <-e.done:
			data, _ := os.ReadFile(filepath.Join(dir, "engine.log"))
			t.Fatalf("the %s engine of %s exited at start:\n%s", kind, name, data)
		case <-time.After(200 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			data, _ := os.ReadFile(filepath.Join(dir, "engine.log"))
			t.Fatalf("the %s engine of %s did not answer within 60s: %v\n%s", kind, name, err, data)
		}
	}
}

// Client is a client of the engine, closed when the test ends.
func (e *RootlessEngine) Client(t testing.TB) *client.Client {
	t.Helper()
	return testClient(t, e.Host)
}

// FakeCodex builds the fake Codex image in the engine's store and returns
// its reference.
func (e *RootlessEngine) FakeCodex(t testing.TB) string {
	t.Helper()
	return fakeCodexIn(t, e.Host, "the "+e.Kind+" engine")
}

// Log is what the engine wrote, for a failure's message.
func (e *RootlessEngine) Log() string {
	data, _ := os.ReadFile(filepath.Join(e.Dir, "engine.log"))
	return string(data)
}

// stop removes the engine's containers and stops it with everything it
// started (its process group: conmon, rootlesskit, slirp4netns).
func (e *RootlessEngine) stop(t testing.TB) {
	removeContainers(e.Host)
	_ = syscall.Kill(-e.cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-e.done:
	case <-time.After(30 * time.Second):
		_ = syscall.Kill(-e.cmd.Process.Pid, syscall.SIGKILL)
		<-e.done
		t.Errorf("the %s engine did not stop within 30s of SIGTERM", e.Kind)
	}
	// Podman's pause process, which holds its user namespace, leaves the
	// group; its pid is in the runtime directory.
	_ = filepath.WalkDir(e.Dir, func(path string, d os.DirEntry, err error) error {
		if err == nil && d.Name() == "pause.pid" {
			if data, err := os.ReadFile(path); err == nil {
				if pid, err := strconv.Atoi(strings.TrimSpace(string(data))); err == nil && pid > 1 {
					_ = syscall.Kill(pid, syscall.SIGKILL)
				}
			}
		}
		return nil
	})
	// A rootless engine's storage holds files of the user's subordinate
	// uids, and mounts of its own.
	_ = exec.Command("sh", "-c", "grep -o ' "+e.Dir+"[^ ]*' /proc/self/mounts | sort -r | xargs -r -n1 umount -l").Run()
}

// ensureUser makes the ordinary user name, with a home and a range of
// subordinate uids and gids, if there is none, and returns their ids.
func ensureUser(t testing.TB, name string) (int, int) {
	t.Helper()
	if _, err := user.Lookup(name); err != nil {
		if out, err := exec.Command("useradd", "--create-home", "--user-group", "--shell", "/bin/sh", name).CombinedOutput(); err != nil {
			if _, lerr := user.Lookup(name); lerr != nil { // another test binary may have made them first
				t.Fatalf("useradd %s: %v\n%s", name, err, out)
			}
		}
	}
	u, err := user.Lookup(name)
	if err != nil {
		t.Fatal(err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	for _, file := range []string{"/etc/subuid", "/etc/subgid"} {
		ensureSubordinates(t, file, name)
	}
	return uid, gid
}

// ensureSubordinates gives name 65536 subordinate ids in file past every
// range there, unless they have some.
func ensureSubordinates(t testing.TB, file, name string) {
	t.Helper()
	unlock := lockFile(t, file+".codex-connector-test.lock", syscall.LOCK_EX)
	defer unlock()
	next := int64(100000)
	f, err := os.Open(file)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	if f != nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			parts := strings.Split(sc.Text(), ":")
			if len(parts) != 3 {
				continue
			}
			if parts[0] == name {
				f.Close()
				return
			}
			start, _ := strconv.ParseInt(parts[1], 10, 64)
			count, _ := strconv.ParseInt(parts[2], 10, 64)
			next = max(next, start+count)
		}
		f.Close()
	}
	out, err := os.OpenFile(file, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	if _, err := fmt.Fprintf(out, "%s:%d:65536\n", name, next); err != nil {
		t.Fatal(err)
	}
}

func homeOf(t testing.TB, name string) string {
	u, err := user.Lookup(name)
	if err != nil {
		t.Fatal(err)
	}
	return u.HomeDir
}

// useTun lets ordinary users open /dev/net/tun while the test runs:
// slirp4netns, which gives a rootless engine's containers a network, opens
// it as the user, and it is 0600 on these machines. The mode is put back
// when the last test that uses it ends, in any test binary: each holds a
// shared lock while it runs, and the one that can take it exclusively at
// its end restores the mode it found.
func useTun(t testing.TB) {
	t.Helper()
	const dev, lock, saved = "/dev/net/tun", "/run/codex-connector-test-tun.lock", "/run/codex-connector-test-tun.mode"
	unlock := lockFile(t, lock, syscall.LOCK_SH)
	fi, err := os.Stat(dev)
	if err != nil {
		unlock()
		t.Fatalf("%s: %v (a rootless engine's network needs the tun device)", dev, err)
	}
	if fi.Mode().Perm() != 0o666 {
		if err := os.WriteFile(saved, []byte(strconv.FormatUint(uint64(fi.Mode().Perm()), 8)), 0o600); err != nil {
			unlock()
			t.Fatal(err)
		}
		if err := os.Chmod(dev, 0o666); err != nil {
			unlock()
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		unlock()
		f, err := os.OpenFile(lock, os.O_CREATE|os.O_RDWR, 0o600)
		if err != nil {
			return
		}
		defer f.Close()
		if syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB) != nil {
			return // another test still uses it
		}
		if data, err := os.ReadFile(saved); err == nil {
			if mode, err := strconv.ParseUint(string(data), 8, 32); err == nil {
				_ = os.Chmod(dev, os.FileMode(mode))
			}
			_ = os.Remove(saved)
		}
	})
}

// lockFile takes a flock of how on path, and returns its release.
func lockFile(t testing.TB, path string, how int) func() {
	t.Helper()
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Flock(int(f.Fd()), how); err != nil {
		f.Close()
		t.Fatal(err)
	}
	return func() { f.Close() }
}

// Repo makes a git repository with one file in the engine's directory,
// owned by the engine's user, as a repository of theirs.
func (e *RootlessEngine) Repo(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp(e.Dir, "repo-")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := git.PlainInit(dir, false); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "README"), []byte("hello\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	e.Own(t, dir)
	return dir
}

// Own gives path and everything below it to the engine's user.
func (e *RootlessEngine) Own(t testing.TB, path string) {
	t.Helper()
	if err := filepath.Walk(path, func(p string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, e.UID, e.GID)
	}); err != nil {
		t.Fatal(err)
	}
}

// Command is name run as the engine's user, in dir, with env and the
// user's own HOME, XDG_RUNTIME_DIR and DOCKER_HOST (their engine).
func (e *RootlessEngine) Command(dir string, env []string, name string, args ...string) *exec.Cmd {
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	cmd.Env = append(append([]string(nil), env...), "HOME="+filepath.Join(e.Dir, "home"), "USER="+e.User, "LOGNAME="+e.User,
		"XDG_RUNTIME_DIR="+filepath.Join(e.Dir, "xdg"), "DOCKER_HOST="+e.Host)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(e.UID), Gid: uint32(e.GID)}}
	return cmd
}
