package imagestest

import (
	"context"
	"crypto/rand"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

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
		if d.cmd != nil {
			removeContainers(d.Host)
		}
		d.Stop(t)
		// dockerd makes its data root a mount of its own and leaves it,
		// and runsc leaves its null network namespace bound in the exec
		// root.
		unmountUnder(dir)
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
	cli := dial(t, d.Host)
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
	return testClient(t, d.Host)
}

// FakeCodex builds the fake Codex image in this engine and returns its
// reference.
func (d *Dockerd) FakeCodex(t testing.TB) string {
	t.Helper()
	return fakeCodexIn(t, d.Host, "the test's engine")
}

// makeBridge makes a bridge interface for one test engine, on a subnet of
// its own, and deletes it when the test ends. Without iptables the engine
// gives its containers addresses on it and no way further out.
//
// The bridge gets an address of its own, as dockerd gives docker0: a
// bridge without one takes the lowest address of its ports, so it changes
// when a container goes, and the containers that cached the old one lose
// the host for the best part of a minute, until their ARP entry expires.
// The subnet is one no route of this machine's uses, so two test engines
// running at once do not share one.
func makeBridge(t testing.TB) string {
	t.Helper()
	var b [6]byte
	_, _ = rand.Read(b[:])
	name := fmt.Sprintf("ccbr%x", b[:2])
	routes, _ := exec.Command("ip", "-4", "route").Output()
	third := int(b[2])
	for i := 0; i < 256 && strings.Contains(string(routes), fmt.Sprintf("10.231.%d.0/24 ", third)); i++ {
		third = (third + 1) % 256
	}
	subnet := fmt.Sprintf("10.231.%d.1/24", third)
	mac := fmt.Sprintf("02:cc:%02x:%02x:%02x:%02x", b[2], b[3], b[4], b[5])
	for _, args := range [][]string{
		{"link", "add", name, "address", mac, "type", "bridge"},
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

// unmountUnder detaches every mount at or below dir, deepest first.
func unmountUnder(dir string) {
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return
	}
	var points []string
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.Fields(line); len(f) > 4 && (f[4] == dir || strings.HasPrefix(f[4], dir+"/")) {
			points = append(points, f[4])
		}
	}
	sort.Slice(points, func(i, j int) bool { return len(points[i]) > len(points[j]) })
	for _, p := range points {
		_ = syscall.Unmount(p, syscall.MNT_DETACH)
	}
}
