package imagestest

import (
	"context"
	"crypto/rand"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/client"
)

// Dockerd is a Docker engine of one test's own, which the test may stop and
// start under a running task. Stopping the shared engine instead would break
// the tests that run beside it. It has its own data and its own bridge: with
// `--bridge none` dockerd deletes docker0, the shared engine's bridge.
type Dockerd struct {
	// Host is its DOCKER_HOST.
	Host        string
	dir         string
	bridge      string
	liveRestore bool
	args        []string
	cmd         *exec.Cmd
	exited      chan struct{}
}

// StartDockerd starts an engine that lives until the test ends. With
// liveRestore its containers keep running while it is stopped, as Docker's
// live-restore option does for users who enable it. args are more dockerd
// options, such as a user's daemon-wide --log-opt.
func StartDockerd(t testing.TB, liveRestore bool, args ...string) *Dockerd {
	t.Helper()
	Engine(t) // the same binaries and rights as the shared engine
	if os.Geteuid() != 0 {
		t.Fatal("this test starts its own Docker engine, which needs root")
	}
	// A short directory: the engine's sockets live in it.
	dir, err := os.MkdirTemp("", "ccd-")
	if err != nil {
		t.Fatal(err)
	}
	d := &Dockerd{Host: "unix://" + filepath.Join(dir, "docker.sock"), dir: dir, liveRestore: liveRestore, args: args}
	d.bridge = makeBridge(t)
	d.Start(t)
	t.Cleanup(func() {
		if cli, err := client.NewClientWithOpts(client.WithHost(d.Host), client.WithAPIVersionNegotiation()); err == nil && d.cmd != nil {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			list, _ := cli.ContainerList(ctx, container.ListOptions{All: true})
			for _, c := range list {
				_ = cli.ContainerRemove(ctx, c.ID, container.RemoveOptions{Force: true})
			}
			cancel()
			cli.Close()
		}
		d.Stop(t)
		// dockerd makes its data root a mount of its own and leaves it.
		_ = syscall.Unmount(filepath.Join(dir, "data"), syscall.MNT_DETACH)
		if err := os.RemoveAll(dir); err != nil {
			t.Errorf("remove the test engine's data: %v", err)
		}
	})
	return d
}

// Start starts the engine and waits until it answers.
func (d *Dockerd) Start(t testing.TB) {
	t.Helper()
	args := []string{"--host", d.Host,
		"--data-root", filepath.Join(d.dir, "data"), "--exec-root", filepath.Join(d.dir, "exec"),
		"--pidfile", filepath.Join(d.dir, "docker.pid"),
		"--bridge", d.bridge, "--iptables=false", "--ip6tables=false",
		"--cgroup-parent", "codex-connector-test"}
	if d.liveRestore {
		args = append(args, "--live-restore")
	}
	args = append(args, d.args...)
	log, err := os.OpenFile(filepath.Join(d.dir, "dockerd.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer log.Close()
	cmd := exec.Command("dockerd", args...)
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		t.Fatalf("start dockerd: %v", err)
	}
	d.cmd, d.exited = cmd, make(chan struct{})
	go func() { cmd.Wait(); close(d.exited) }()
	cli := d.client(t)
	defer cli.Close()
	for i := 0; ; i++ {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_, err := cli.Ping(ctx)
		cancel()
		if err == nil {
			return
		}
		select {
		case <-d.exited:
			data, _ := os.ReadFile(filepath.Join(d.dir, "dockerd.log"))
			t.Fatalf("dockerd exited at start:\n%s", data)
		case <-time.After(100 * time.Millisecond):
		}
		if i > 300 {
			t.Fatalf("dockerd did not answer within 30s: %v", err)
		}
	}
}

// Stop stops the engine as `systemctl stop docker` does (SIGTERM) and waits
// until it has exited. Without live-restore it stops the containers first.
func (d *Dockerd) Stop(t testing.TB) {
	t.Helper()
	if d.cmd == nil {
		return
	}
	_ = d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.exited:
	case <-time.After(60 * time.Second):
		_ = d.cmd.Process.Kill()
		<-d.exited
		t.Error("dockerd did not stop within 60s of SIGTERM")
	}
	d.cmd = nil
}

// DataRoot is the engine's data root: containers/<id>/<id>-json.log in it
// is the engine's own copy of a container's output.
func (d *Dockerd) DataRoot() string { return filepath.Join(d.dir, "data") }

// LogFile is the engine's own log.
func (d *Dockerd) LogFile() string { return filepath.Join(d.dir, "dockerd.log") }

// Client is a client of this engine, closed when the test ends.
func (d *Dockerd) Client(t testing.TB) *client.Client {
	t.Helper()
	cli := d.client(t)
	t.Cleanup(func() { cli.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cli.NegotiateAPIVersion(ctx)
	return cli
}

func (d *Dockerd) client(t testing.TB) *client.Client {
	t.Helper()
	cli, err := client.NewClientWithOpts(client.WithHost(d.Host), client.WithAPIVersionNegotiation())
	if err != nil {
		t.Fatal(err)
	}
	return cli
}

// FakeCodex builds the fake Codex image in this engine and returns its
// reference.
func (d *Dockerd) FakeCodex(t testing.TB) string {
	t.Helper()
	ref, err := buildFake(d.Client(t))
	if err != nil {
		t.Fatalf("build fake Codex image in the test's engine: %v", err)
	}
	return ref
}

// makeBridge makes a bridge interface for one test engine, on a subnet of
// its own, and deletes it when the test ends. Without iptables the engine
// gives its containers addresses on it and no way further out.
func makeBridge(t testing.TB) string {
	t.Helper()
	var b [2]byte
	_, _ = rand.Read(b[:])
	name := fmt.Sprintf("ccbr%x", b)
	subnet := fmt.Sprintf("10.231.%d.1/24", b[0])
	for _, args := range [][]string{
		{"link", "add", name, "type", "bridge"},
		{"addr", "add", subnet, "dev", name},
		{"link", "set", name, "up"},
	} {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %v: %v\n%s (the tests need iproute2)", args, err, out)
		}
	}
	t.Cleanup(func() { _ = exec.Command("ip", "link", "delete", name).Run() })
	return name
}
