package runner

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/codex-connector/codex-connector/backend/docker"
	"github.com/codex-connector/codex-connector/images/imagestest"
	"github.com/codex-connector/codex-connector/runner/egress"
	"github.com/codex-connector/codex-connector/store"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/pkg/stdcopy"
)

// Attacks on the egress path, from inside a task on the real engine. Each
// test first shows that the hostile step really ran, then that its effect
// did not happen. Every server they reach is on the host side of the
// docker bridge: no traffic leaves the machine.

// waitCommands waits until the task has reported n commands.
func (h *harness) waitCommands(t *testing.T, id string, n int) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		if p, _ := h.Progress(id); p.Commands >= n {
			return
		}
		if task, _ := h.Get(id); task != nil && task.Status.Final() {
			t.Fatalf("task %s ended (%s: %s) before its %d commands:\n%s", id, task.Status, task.Error, n, readLog(h.LogPath(id)))
		}
		if time.Now().After(deadline) {
			t.Fatalf("task %s never reached %d commands:\n%s", id, n, readLog(h.LogPath(id)))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (h *harness) inspect(t *testing.T, id string) container.InspectResponse {
	t.Helper()
	task, err := h.Get(id)
	if err != nil {
		t.Fatal(err)
	}
	info, err := h.engine.ContainerInspect(context.Background(), task.ContainerID)
	if err != nil {
		t.Fatal(err)
	}
	return info
}

func (h *harness) cancelAndWait(t *testing.T, id string) *store.Task {
	t.Helper()
	if _, err := h.Cancel(context.Background(), id); err != nil {
		t.Fatal(err)
	}
	return h.waitFinal(t, id)
}

// assertEgressGone checks that a task that ended left no egress behind.
// The follower records the end first, under its lease, and removes the
// egress after: a server that lost the task must not remove the egress of
// the run that replaced it. So a caller that saw the end may be a moment
// early, and the check waits for the removal.
func (h *harness) assertEgressGone(t *testing.T, id string) {
	t.Helper()
	paths := []string{h.policyPath(id), h.socketDir(id), h.legacyEgressDir(id)}
	left := func() []string {
		var out []string
		for _, p := range paths {
			if _, err := os.Lstat(p); !os.IsNotExist(err) {
				out = append(out, fmt.Sprintf("%s (%v)", p, err))
			}
		}
		return out
	}
	deadline := time.Now().Add(30 * time.Second)
	for len(left()) > 0 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	for _, p := range left() {
		t.Errorf("left after the task's end: %s", p)
	}
}

// assertProxyHealthy checks that the egress proxy runs and never restarted.
func (h *harness) assertProxyHealthy(t *testing.T) {
	t.Helper()
	info, err := h.engine.ContainerInspect(context.Background(), h.proxyName())
	if err != nil {
		t.Fatal(err)
	}
	if !info.State.Running || info.State.OOMKilled || info.RestartCount != 0 {
		t.Errorf("the egress proxy: running %v, OOM-killed %v, restarted %d times", info.State.Running, info.State.OOMKilled, info.RestartCount)
	}
}

// serverOwnedRepo makes a repository owned by the server's own user, so
// that its tasks run as that user: the common case (a user's server, the
// user's repository), and the one in which a task could write what the
// server made for it before the egress policy moved out of its reach.
func serverOwnedRepo(t *testing.T) string {
	repo := newRepo(t)
	err := filepath.Walk(repo, func(p string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, os.Geteuid(), os.Getegid())
	})
	if err != nil {
		t.Fatal(err)
	}
	return repo
}

// A read-only task tries to widen its own allowlist, as a prompt injection
// would: write a policy into its egress mount, plant a symlink there, move
// or remove the socket. Then it asks for a host server that is on no list.
// Before the fix, the first write alone got it through (Hits() was 1).
func TestTaskCannotRewriteItsEgressPolicy(t *testing.T) {
	target := imagestest.StartHostServer(t, imagestest.Engine(t), "reached")
	h := newHarness(t, nil)
	forged := fmt.Sprintf(`{"taskId":"any","allow":["%s"]}`, target.Addr)
	script := strings.Join([]string{
		"read " + egressMount + "/policy.json",
		"write " + egressMount + "/policy.json " + forged,
		"symlink /codex-connector/forged.json " + egressMount + "/policy.json",
		"rename " + egressMount + "/sock " + egressMount + "/moved",
		"remove " + egressMount + "/sock",
		"write " + egressMount + "/../egress/policies/forged.json " + forged,
		// Where the task may write, the write works: the steps ran.
		"write /codex-connector/forged.json " + forged,
		"get http://" + target.Addr + "/",
		"tunnel " + target.Addr,
		"sleep 1h",
	}, "; ")
	task, err := h.Start(context.Background(), Spec{Prompt: script, WorkingDirectory: serverOwnedRepo(t), Sandbox: ReadOnly})
	if err != nil {
		t.Fatal(err)
	}
	h.waitCommands(t, task.ID, 8)
	if user := h.inspect(t, task.ID).Config.User; user != fmt.Sprintf("%d:%d", os.Geteuid(), os.Getegid()) {
		t.Fatalf("the task runs as %s, not as the server's user", user)
	}

	t.Run("the task mounts its socket directory alone, read-only, holding the socket alone", func(t *testing.T) {
		var egressMounts []string
		for _, m := range h.inspect(t, task.ID).Mounts {
			if strings.HasPrefix(m.Source, h.egressRoot()) {
				egressMounts = append(egressMounts, m.Source)
				if m.Destination != egressMount || m.Source != h.socketDir(task.ID) || m.RW {
					t.Errorf("egress mount %s → %s (rw %v)", m.Source, m.Destination, m.RW)
				}
			}
		}
		if len(egressMounts) != 1 {
			t.Errorf("egress mounts %v, want the task's socket directory alone", egressMounts)
		}
		entries, err := os.ReadDir(h.socketDir(task.ID))
		if err != nil || len(entries) != 1 || entries[0].Name() != egress.SocketName {
			t.Errorf("the socket directory holds %v (%v)", entries, err)
		}
		fi, err := os.Stat(h.socketDir(task.ID))
		if err != nil || fi.Mode().Perm() != 0o711 {
			t.Errorf("socket directory mode %v (%v)", fi.Mode(), err)
		}
	})
	t.Run("the policy on the host is the server's", func(t *testing.T) {
		var pol egress.Policy
		data, err := os.ReadFile(h.policyPath(task.ID))
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(data, &pol); err != nil {
			t.Fatal(err)
		}
		if pol.TaskID != task.ID || len(pol.Allow) != 0 || len(pol.Routes) != 0 {
			t.Errorf("policy %+v", pol)
		}
		fi, _ := os.Stat(filepath.Dir(h.policyPath(task.ID)))
		if fi.Mode().Perm() != 0o700 {
			t.Errorf("policies directory mode %v", fi.Mode())
		}
	})

	final := h.cancelAndWait(t, task.ID)
	log := readFile(t, h.LogPath(final.ID))
	t.Run("every write into the egress mount failed, the write elsewhere worked", func(t *testing.T) {
		got := exitCodes(t, final)
		for cmd, want := range map[string]int{
			"write " + egressMount + "/policy.json":                    1,
			"symlink " + egressMount + "/policy.json":                  1,
			"rename " + egressMount + "/sock":                          1,
			"remove " + egressMount + "/sock":                          1,
			"write " + egressMount + "/../egress/policies/forged.json": 1,
			"write /codex-connector/forged.json":                       0,
		} {
			if code, ok := got[cmd]; !ok || code != want {
				t.Errorf("%s: ran %v, exit %d, want %d", cmd, ok, code, want)
			}
		}
		for _, want := range []string{
			"read " + egressMount + "/policy.json: open " + egressMount + "/policy.json: no such file or directory",
			"read-only file system",
		} {
			if !strings.Contains(log, want) {
				t.Errorf("the log lacks %q:\n%s", want, log)
			}
		}
	})
	t.Run("the host server was not reached, and the log says why", func(t *testing.T) {
		got := exitCodes(t, final)
		if got["get http://"+target.Addr+"/"] != 1 || got["tunnel "+target.Addr] != 1 {
			t.Errorf("exit codes %v", got)
		}
		if n := target.Hits(); n != 0 {
			t.Errorf("the host server got %d requests", n)
		}
		for _, want := range []string{
			"codex-connector egress: GET http://" + target.Addr + "/ HTTP/1.1 → denied",
			"codex-connector egress: CONNECT " + target.Addr + " HTTP/1.1 → denied",
			target.Addr + " is not an allowed host for this task",
		} {
			if !strings.Contains(log, want) {
				t.Errorf("the log lacks %q:\n%s", want, log)
			}
		}
	})
	h.assertEgressGone(t, final.ID)
}

// Names on the allowed list that resolve to addresses inside (the proxy's
// loopback, a multicast group, the proxy's own address on the docker
// bridge) are refused after resolution; an IP literal entry for the bridge
// gateway still works. The names resolve from the proxy container's
// /etc/hosts, which Docker writes: no DNS query leaves the machine.
func TestAllowedNamesThatResolveInsideAreRefused(t *testing.T) {
	eng := imagestest.Engine(t)
	srv := imagestest.StartHostServer(t, eng, "reached")
	_, port, _ := net.SplitHostPort(srv.Addr)
	h := newHarness(t, nil)
	if err := h.ensureProxy(context.Background()); err != nil {
		t.Fatal(err)
	}
	proxy, err := h.engine.ContainerInspect(context.Background(), h.proxyName())
	if err != nil {
		t.Fatal(err)
	}
	self := strings.ToLower(proxy.Config.Hostname) // in its /etc/hosts, with its bridge address
	names := map[string]string{
		"localhost":    "127.0.0.1 is a loopback address",
		"ip6-allnodes": "ff02::1 is a multicast address",
		self:           "is in a Docker network (",
	}
	// The runner reads its allowed hosts when a task launches, after this.
	h.cfg.Egress.AllowedHosts = []string{srv.Addr}
	// Through CONNECT: an HTTP client never sends a request for localhost
	// to its proxy, whatever the proxy variables say.
	var steps []string
	for name := range names {
		h.cfg.Egress.AllowedHosts = append(h.cfg.Egress.AllowedHosts, net.JoinHostPort(name, port))
		steps = append(steps, "tunnel "+net.JoinHostPort(name, port))
	}
	steps = append(steps, "get http://"+srv.Addr+"/")
	task := h.startAndWait(t, Spec{Prompt: strings.Join(steps, "; "), WorkingDirectory: newRepo(t), Sandbox: WorkspaceWrite})
	log := readFile(t, h.LogPath(task.ID))
	got := exitCodes(t, task)
	proxyLog := h.proxyLog(t)
	for name, why := range names {
		hp := net.JoinHostPort(name, port)
		if got["tunnel "+hp] != 1 {
			t.Errorf("tunnel %s: exit %d", hp, got["tunnel "+hp])
		}
		for _, want := range []string{"CONNECT " + hp + " HTTP/1.1 → denied (HTTP/1.1 403 Forbidden): " + name + " resolves to addresses the proxy refuses", why} {
			if !strings.Contains(log, want) {
				t.Errorf("the task's log lacks %q:\n%s", want, log)
			}
		}
		if !strings.Contains(proxyLog, "CONNECT "+hp+" denied: ") {
			t.Errorf("the proxy's log lacks the denial of %s:\n%s", hp, proxyLog)
		}
	}
	if got["get http://"+srv.Addr+"/"] != 0 || srv.Hits() != 1 {
		t.Errorf("the literal entry of the bridge gateway: exit %d, %d requests\n%s", got["get http://"+srv.Addr+"/"], srv.Hits(), log)
	}
	if strings.Count(proxyLog, "allowed (dialed ") != 1 {
		t.Errorf("the proxy dialed more than the literal entry:\n%s", proxyLog)
	}
}

// proxyLog returns what the egress proxy has logged.
func (h *harness) proxyLog(t *testing.T) string {
	t.Helper()
	rc, err := h.engine.ContainerLogs(context.Background(), h.proxyName(), container.LogsOptions{ShowStdout: true, ShowStderr: true})
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	var b strings.Builder
	if _, err := stdcopy.StdCopy(&b, &b, rc); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// holdServer accepts connections on the bridge gateway and keeps them open,
// counting how many are open at once.
type holdServer struct {
	Addr     string
	mu       sync.Mutex
	open     int
	most     int
	accepted int
}

func startHoldServer(t *testing.T) *holdServer {
	ln, err := net.Listen("tcp", net.JoinHostPort(imagestest.BridgeGateway(t, imagestest.Engine(t)), "0"))
	if err != nil {
		t.Fatal(err)
	}
	s := &holdServer{Addr: ln.Addr().String()}
	var conns []net.Conn
	t.Cleanup(func() {
		ln.Close()
		s.mu.Lock()
		defer s.mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.mu.Lock()
			conns = append(conns, c)
			s.open++
			s.accepted++
			s.most = max(s.most, s.open)
			s.mu.Unlock()
			go func() {
				buf := make([]byte, 512)
				for {
					if _, err := c.Read(buf); err != nil {
						break
					}
				}
				c.Close()
				s.mu.Lock()
				s.open--
				s.mu.Unlock()
			}()
		}
	}()
	return s
}

func (s *holdServer) counts() (open, most int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.open, s.most
}

// Task A opens 300 tunnels and holds them; task B, started while A holds
// its cap, reaches its allowed host; the proxy stays up.
func TestOneTasksFloodDoesNotStopAnothersEgress(t *testing.T) {
	hold := startHoldServer(t)
	srv := imagestest.StartHostServer(t, imagestest.Engine(t), "reached")
	const capConns = 32
	h := newHarness(t, func(c *Config) {
		c.Egress.AllowedHosts = []string{hold.Addr, srv.Addr}
		c.Egress.MaxConns = capConns
	})
	flood, err := h.Start(context.Background(), Spec{Prompt: "conns " + hold.Addr + " 300 1h", WorkingDirectory: newRepo(t), Sandbox: WorkspaceWrite})
	if err != nil {
		t.Fatal(err)
	}
	// The flood is on once the proxy holds A's cap of tunnels and has
	// refused more.
	deadline := time.Now().Add(2 * time.Minute)
	for {
		open, _ := hold.counts()
		if open == capConns && strings.Contains(readLog(h.LogPath(flood.ID)), "429 Too Many Requests") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the flood never reached the cap: %d tunnels open\n%s", open, readLog(h.LogPath(flood.ID)))
		}
		time.Sleep(50 * time.Millisecond)
	}

	other := h.startAndWait(t, Spec{Prompt: "get http://" + srv.Addr + "/; say reached", WorkingDirectory: newRepo(t), Sandbox: WorkspaceWrite})
	if code := exitCodes(t, other)["get http://"+srv.Addr+"/"]; code != 0 || srv.Hits() != 1 || other.Status != store.Completed {
		t.Errorf("task B during the flood: exit %d, %d requests, %s\n%s", code, srv.Hits(), other.Status, readFile(t, h.LogPath(other.ID)))
	}
	open, most := hold.counts()
	if open != capConns || most != capConns {
		t.Errorf("tunnels of task A: %d open after task B (want the flood still on, %d), at most %d", open, capConns, most)
	}
	h.assertProxyHealthy(t)
	if log := h.proxyLog(t); !strings.Contains(log, fmt.Sprintf("task %s: ", flood.ID)) || !strings.Contains(log, fmt.Sprintf("through the proxy, its cap")) {
		t.Errorf("the proxy's log does not show the refusals:\n%s", log)
	}
	h.cancelAndWait(t, flood.ID)
	h.assertEgressGone(t, flood.ID)
	h.assertEgressGone(t, other.ID)
}

// A running task's egress survives a restart of the proxy's container: the
// new process serves the task's policy file again, on the same socket path.
func TestEgressSurvivesAProxyRestart(t *testing.T) {
	srv := imagestest.StartHostServer(t, imagestest.Engine(t), "reached")
	h := newHarness(t, func(c *Config) { c.Egress.AllowedHosts = []string{srv.Addr} })
	repo := newRepo(t)
	task, err := h.Start(context.Background(), Spec{Prompt: fmt.Sprintf("get http://%[1]s/; await restarted; get http://%[1]s/; say done", srv.Addr),
		WorkingDirectory: repo, Sandbox: WorkspaceWrite})
	if err != nil {
		t.Fatal(err)
	}
	h.waitCommands(t, task.ID, 1)
	sock := filepath.Join(h.socketDir(task.ID), egress.SocketName)
	before, err := os.Lstat(sock)
	if err != nil {
		t.Fatal(err)
	}
	timeout := 5
	if err := imagestest.Engine(t).ContainerRestart(context.Background(), h.proxyName(), container.StopOptions{Timeout: &timeout}); err != nil {
		t.Fatal(err)
	}
	// The task goes on once the new proxy serves: it has made the socket
	// anew (its predecessor's stays until then, with nobody behind it).
	for i := 0; ; i++ {
		if fi, err := os.Lstat(sock); err == nil && !os.SameFile(fi, before) {
			break
		}
		if i > 2000 {
			t.Fatalf("the restarted proxy never served the task again:\n%s", h.proxyLog(t))
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := os.WriteFile(filepath.Join(repo, "restarted"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	final := h.waitFinal(t, task.ID)
	log := readFile(t, h.LogPath(final.ID))
	if final.Status != store.Completed || srv.Hits() != 2 || strings.Count(log, "GET http://"+srv.Addr+"/ HTTP/1.1 → allowed") != 2 {
		t.Fatalf("after the restart: %s, %d requests\n%s", final.Status, srv.Hits(), log)
	}
}

// Every piece of a task's egress goes when it ends, and housekeeping
// removes what a crash left of tasks that ended or that no record knows,
// but nothing of a running task.
func TestHousekeepingRemovesStaleEgress(t *testing.T) {
	h := newHarness(t, nil)
	running, err := h.Start(context.Background(), Spec{Prompt: "sleep 1h", WorkingDirectory: newRepo(t), Sandbox: ReadOnly})
	if err != nil {
		t.Fatal(err)
	}
	h.waitStatus(t, running.ID, store.Running)
	ended := h.startAndWait(t, Spec{Prompt: "say done", WorkingDirectory: newRepo(t), Sandbox: ReadOnly})
	h.assertEgressGone(t, ended.ID)
	// What a crash (or an earlier version) leaves: for the ended task and
	// for one with no record.
	unknown := store.NewID(time.Now().Add(-time.Hour))
	for _, id := range []string{ended.ID, unknown} {
		os.MkdirAll(h.socketDir(id), 0o711)
		os.WriteFile(h.policyPath(id), []byte(`{"taskId":"`+id+`","allow":["*.com:443"]}`), 0o600)
		os.MkdirAll(h.legacyEgressDir(id), 0o755)
		os.WriteFile(filepath.Join(h.legacyEgressDir(id), "policy.json"), []byte("{}"), 0o644)
	}
	h.housekeeping(context.Background())
	h.assertEgressGone(t, ended.ID)
	h.assertEgressGone(t, unknown)
	for _, p := range []string{h.policyPath(running.ID), filepath.Join(h.socketDir(running.ID), egress.SocketName)} {
		if _, err := os.Lstat(p); err != nil {
			t.Errorf("housekeeping removed the running task's %s: %v", p, err)
		}
	}
	h.cancelAndWait(t, running.ID)
	h.assertEgressGone(t, running.ID)
}

// commandOutputs returns the output of every command Codex reported as
// completed in a task's log.
func commandOutputs(log string) []string {
	var out []string
	for _, line := range strings.Split(log, "\n") {
		var ev struct {
			Type string `json:"type"`
			Item struct {
				Type   string `json:"type"`
				Output string `json:"aggregated_output"`
			} `json:"item"`
		}
		if json.Unmarshal([]byte(line), &ev) == nil && ev.Type == "item.completed" && ev.Item.Type == "command_execution" {
			out = append(out, ev.Item.Output)
		}
	}
	return out
}

// The real Codex, at read-only, runs what a prompt injection would have it
// run: look at its egress mount, forge a policy there, replace the socket,
// then ask for a host server through the bridge and, bypassing the bridge,
// straight through the socket.
func TestRealCodexCannotWidenItsEgress(t *testing.T) {
	eng := imagestest.Engine(t)
	target := imagestest.StartHostServer(t, eng, "reached")
	request := `GET http://` + target.Addr + `/ HTTP/1.1\r\nHost: ` + target.Addr + `\r\nConnection: close\r\n\r\n`
	attack := strings.Join([]string{
		"ls -la " + egressMount + " " + egressMount + "/sock",
		`echo '{"taskId":"x","allow":["` + target.Addr + `"]}' > ` + egressMount + "/policy.json",
		"ln -sf /tmp/forged.json " + egressMount + "/policy.json",
		"mv " + egressMount + "/sock " + egressMount + "/moved",
		"exec 3<>/dev/tcp/127.0.0.1/3128; printf '" + request + "' >&3; timeout 10 cat <&3",
		`timeout 10 node -e 'const s=require("net").connect("` + egressMount + `/sock",()=>s.write("` + request + `"));s.pipe(process.stdout)'`,
		"echo attack-ran",
	}, "; ")
	model := imagestest.StartModelServer(t, eng,
		imagestest.Turn{Command: attack},
		imagestest.Turn{Message: "Done."},
	)
	h := newCodexHarness(t, model)
	// As the server's user: the case in which this attack worked before.
	task := h.startAndWait(t, Spec{Prompt: "look around", WorkingDirectory: serverOwnedRepo(t), Sandbox: ReadOnly, Model: "gpt-5-codex", Timeout: 2 * time.Minute})
	log := readFile(t, h.LogPath(task.ID))
	if task.Status != store.Completed || len(model.Requests()) != 2 {
		t.Fatalf("status %s (%s), %d model requests, log:\n%s", task.Status, task.Error, len(model.Requests()), log)
	}
	outputs := commandOutputs(log)
	if len(outputs) != 1 || !strings.Contains(outputs[0], "attack-ran") {
		t.Fatalf("the hostile command did not run to its end: %q\n%s", outputs, log)
	}
	out := outputs[0]
	t.Logf("what the hostile command saw:\n%s", out)
	t.Run("the egress mount holds the socket alone and takes no write", func(t *testing.T) {
		// The whole output: the shell's errors (stderr) may come before
		// ls's listing (stdout), and no other line looks like a listing.
		listing := regexp.MustCompile(`(?m)^[-dlspcb][-rwxsStT]{9}\s.* (\S+)$`).FindAllStringSubmatch(out, -1)
		var names []string
		for _, m := range listing {
			names = append(names, m[1])
		}
		if !slices.Equal(names, []string{egressMount + "/sock", ".", "..", "sock"}) {
			t.Errorf("ls shows %q", names)
		}
		for _, want := range []string{
			"srw-rw-rw- ",
			egressMount + "/policy.json: Read-only file system",
			"ln: failed to create symbolic link '" + egressMount + "/policy.json': Read-only file system",
			"mv: cannot move '" + egressMount + "/sock' to '" + egressMount + "/moved': Read-only file system",
		} {
			if !strings.Contains(out, want) {
				t.Errorf("the output lacks %q", want)
			}
		}
	})
	t.Run("the host server was not reached, through the bridge or past it", func(t *testing.T) {
		if n := target.Hits(); n != 0 {
			t.Errorf("the host server got %d requests", n)
		}
		if strings.Count(out, target.Addr+" is not an allowed host for this task") != 2 {
			t.Errorf("want two refusals in the output:\n%s", out)
		}
		if !strings.Contains(log, "codex-connector egress: GET http://"+target.Addr+"/ HTTP/1.1 → denied") {
			t.Errorf("the bridge did not log the refusal:\n%s", log)
		}
	})
	h.assertEgressGone(t, task.ID)
}

// The proxy's container is bounded and reads the policies read-only.
func TestEgressProxyContainerIsBounded(t *testing.T) {
	h := newHarness(t, nil)
	if err := h.ensureProxy(context.Background()); err != nil {
		t.Fatal(err)
	}
	info, err := h.engine.ContainerInspect(context.Background(), h.proxyName())
	if err != nil {
		t.Fatal(err)
	}
	hc := info.HostConfig
	if hc.Memory != docker.ProxyMemory || hc.MemorySwap != docker.ProxyMemory || hc.PidsLimit == nil || *hc.PidsLimit != docker.ProxyPids ||
		!hc.ReadonlyRootfs || !slices.Equal(hc.CapDrop, []string{"ALL"}) || hc.RestartPolicy.Name != container.RestartPolicyUnlessStopped {
		t.Errorf("host config %+v", hc)
	}
	if !slices.Contains(info.Config.Env, "GOMEMLIMIT=384MiB") {
		t.Errorf("environment %v", info.Config.Env)
	}
	mounts := map[string]bool{}
	for _, m := range info.Mounts {
		mounts[m.Source+" → "+m.Destination] = m.RW
	}
	want := map[string]bool{
		filepath.Join(h.egressRoot(), egress.PoliciesDir) + " → /egress/policies": false,
		filepath.Join(h.egressRoot(), egress.SocketsDir) + " → /egress/sockets":   true,
	}
	if !maps.Equal(mounts, want) {
		t.Errorf("mounts (→ writable) %v, want %v", mounts, want)
	}
	for _, dir := range []string{h.egressRoot(), filepath.Join(h.egressRoot(), egress.PoliciesDir), filepath.Join(h.egressRoot(), egress.SocketsDir)} {
		if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != 0o700 {
			t.Errorf("%s: %v %v", dir, fi.Mode(), err)
		}
	}
}
