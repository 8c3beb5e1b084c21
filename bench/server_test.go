package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/codex-connector/codex-connector/bench/benchtab"
	"github.com/codex-connector/codex-connector/images/imagestest"
	"github.com/codex-connector/codex-connector/runner"
	sdk "github.com/modelcontextprotocol/go-sdk/mcp"
)

// server is a codex-connector (or another MCP server) process driven over
// stdio by the official MCP Go SDK, as Claude Code drives it.
type server struct {
	cmd     *exec.Cmd
	session *sdk.ClientSession
	home    string
	// started is how long it took from the process's start to the answer
	// to initialize.
	started time.Duration
	log     *tailBuffer
	closed  bool
}

// serverEnv is the environment of a benchmark's server: this process's,
// without anything that would give tasks a model provider or a login that
// the benchmark did not ask for, since those change what a launch sets up.
func serverEnv(home, image string, extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		switch name {
		case "OPENAI_API_KEY", "CODEX_API_KEY", "CODEX_HOME", "OPENAI_BASE_URL":
			continue
		}
		if strings.HasPrefix(name, "CODEX_CONNECTOR_") {
			continue
		}
		env = append(env, kv)
	}
	env = append(env,
		"CODEX_CONNECTOR_HOME="+home,
		"CODEX_CONNECTOR_IMAGE="+image,
		"CODEX_CONNECTOR_STOP_GRACE=1s",
		// Benchmark repositories live in temporary directories.
		"CODEX_CONNECTOR_ALLOWED_ROOTS="+os.TempDir(),
		// No ChatGPT login of this machine's user: an empty one.
		"CODEX_HOME="+filepath.Join(home, "no-codex-login"),
	)
	return append(env, extra...)
}

// startServer starts codex-connector on home with image as its Codex
// image, and connects to it; the server and every process and container of
// its home are gone when the benchmark ends.
func startServer(b *testing.B, home, image string, env ...string) *server {
	b.Helper()
	s := startProcess(b, binary(b), serverEnv(home, image, env...))
	s.home = home
	b.Cleanup(func() { cleanHome(home) })
	return s
}

// binary is the codex-connector under test: BENCH_BINARY, to compare
// builds (one must be static, as `make build` makes it), or else this
// checkout built as `make build` builds it.
func binary(b *testing.B) string {
	b.Helper()
	if bin := os.Getenv("BENCH_BINARY"); bin != "" {
		return bin
	}
	return imagestest.StaticBinary(b)
}

var warmOnce sync.Once

// warmUp runs one task through the binary under test, once per run, before
// anything is measured: the first task of a new binary builds its egress
// proxy image (the binary FROM scratch), once per machine, and a
// measurement must not count that, nor the memory it took.
func warmUp(b *testing.B, image string) {
	b.Helper()
	warmOnce.Do(func() {
		home := b.TempDir()
		s := startServer(b, home, image)
		completed(b, s.waitEnded(b, s.startAsync(b, "say warm", imagestest.Repo(b))), "warm")
		s.close()
		cleanHome(home)
	})
}

// startProcess runs the MCP server bin with env and connects to it over
// stdio; started says how long that took.
func startProcess(b *testing.B, bin string, env []string) *server {
	b.Helper()
	cmd := exec.Command(bin)
	cmd.Env = env
	return startCommand(b, cmd)
}

// startCommand is startProcess of a command made ready (another user's,
// another directory).
func startCommand(b *testing.B, cmd *exec.Cmd) *server {
	b.Helper()
	bin := cmd.Path
	s := &server{log: &tailBuffer{max: 64 << 10}}
	cmd.Stderr = s.log
	stdin, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	client := sdk.NewClient(&sdk.Implementation{Name: "codex-connector-bench", Version: "1"}, nil)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	began := time.Now()
	if err := cmd.Start(); err != nil {
		b.Fatalf("start %s: %v", bin, err)
	}
	s.cmd = cmd
	session, err := client.Connect(ctx, &sdk.IOTransport{Reader: stdout, Writer: stdin}, nil)
	s.started = time.Since(began)
	if err != nil {
		cmd.Process.Kill()
		cmd.Wait()
		b.Fatalf("connect to %s: %v\n%s", bin, err, s.log)
	}
	s.session = session
	b.Cleanup(func() {
		s.close()
		if b.Failed() {
			b.Logf("%s logged:\n%s", bin, s.log)
		}
	})
	return s
}

// close ends the session, which closes the server's stdin, and waits for
// the server to exit; one that does not within 30 s is killed.
func (s *server) close() {
	if s.closed {
		return
	}
	s.closed = true
	s.session.Close()
	done := make(chan struct{})
	go func() { s.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		s.cmd.Process.Kill()
		<-done
	}
}

func (s *server) pid() int { return s.cmd.Process.Pid }

// call calls a tool; a protocol error or an error result fails the
// benchmark, since every row measures a path that works.
func (s *server) call(b *testing.B, tool string, args map[string]any) map[string]any {
	b.Helper()
	res, err := s.callResult(tool, args)
	if err != nil {
		b.Fatalf("%s(%v): %v\n%s", tool, args, err, s.log)
	}
	return res
}

// callResult calls a tool and returns its structured result.
func (s *server) callResult(tool string, args map[string]any) (map[string]any, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	res, err := s.session.CallTool(ctx, &sdk.CallToolParams{Name: tool, Arguments: args})
	if err != nil {
		return nil, fmt.Errorf("protocol error: %w", err)
	}
	data, err := json.Marshal(res.StructuredContent)
	if err != nil {
		return nil, err
	}
	var m map[string]any
	if err := json.Unmarshal(data, &m); err != nil || m == nil {
		return nil, fmt.Errorf("no structured content: %s", text(res))
	}
	if res.IsError {
		return m, fmt.Errorf("error result: %s", text(res))
	}
	return m, nil
}

func text(res *sdk.CallToolResult) string {
	var b strings.Builder
	for _, c := range res.Content {
		if tc, ok := c.(*sdk.TextContent); ok {
			b.WriteString(tc.Text)
		}
	}
	return b.String()
}

// startAsync starts a task with codex_agent async and returns its id.
func (s *server) startAsync(b *testing.B, prompt, repo string) string {
	b.Helper()
	st := s.call(b, "codex_agent", map[string]any{"task": prompt, "workingDirectory": repo, "async": true})
	id, _ := st["taskId"].(string)
	if id == "" {
		b.Fatalf("codex_agent gave no taskId: %v", st)
	}
	return id
}

// waitEnded waits with codex_status until the task has ended, and returns
// its final status.
func (s *server) waitEnded(b *testing.B, id string) map[string]any {
	b.Helper()
	deadline := time.Now().Add(10 * time.Minute)
	for time.Now().Before(deadline) {
		st := s.call(b, "codex_status", map[string]any{"taskId": id, "waitSeconds": 100, "tailLines": 0})
		switch st["status"] {
		case "completed", "failed", "cancelled", "timed_out":
			return st
		}
	}
	b.Fatalf("task %s never ended", id)
	return nil
}

// completed fails the benchmark unless the task ended completed with the
// result want.
func completed(b *testing.B, st map[string]any, want string) {
	b.Helper()
	if st["status"] != "completed" || st["result"] != want {
		b.Fatalf("task %v: %v, result %q (want completed, %q): %v", st["taskId"], st["status"], st["result"], want, st["error"])
	}
}

// cleanHome removes what a benchmark's home left: its egress proxy, its
// task containers, and its processes (the standby or follower the server
// started). They are this benchmark's own: found by the home's label and
// by the home in their environment.
func cleanHome(home string) {
	exec.Command("docker", "rm", "-f", runner.ProxyName(home)).Run()
	if out, err := exec.Command("docker", "ps", "-aq", "--filter", "label="+runner.LabelHome+"="+runner.HomeLabel(home)).Output(); err == nil {
		if ids := strings.Fields(string(out)); len(ids) > 0 {
			exec.Command("docker", append([]string{"rm", "-f"}, ids...)...).Run()
		}
	}
	for range 100 {
		pids := homeProcesses(home)
		if len(pids) == 0 {
			return
		}
		for _, pid := range pids {
			syscall.Kill(pid, syscall.SIGKILL)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func homeProcesses(home string) []int { return imagestest.HomeProcesses(home) }

// waitHomeQuiet waits until the processes a server left in home (its
// standby) are gone, so that the next measurement does not share the
// machine with them.
func waitHomeQuiet(b *testing.B, home string) {
	b.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for len(homeProcesses(home)) > 0 {
		if time.Now().After(deadline) {
			cleanHome(home)
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	buf []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if len(t.buf) > t.max {
		t.buf = append([]byte(nil), t.buf[len(t.buf)-t.max:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.buf)
}

// mem is a process's memory, from /proc/PID/status, in MiB.
type mem struct{ rss, hwm float64 }

func readMem(pid int) (mem, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return mem{}, fmt.Errorf("read the memory of process %d: %w", pid, err)
	}
	var m mem
	for _, line := range strings.Split(string(data), "\n") {
		name, rest, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		kb, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 64)
		if err != nil {
			continue
		}
		switch name {
		case "VmRSS":
			m.rss = kb / 1024
		case "VmHWM":
			m.hwm = kb / 1024
		}
	}
	return m, nil
}

func (s *server) mem(b *testing.B) mem {
	b.Helper()
	m, err := readMem(s.pid())
	if err != nil {
		b.Fatal(err)
	}
	return m
}

// procStat is what a benchmark reads of /proc/PID/stat.
type procStat struct {
	state string
	// cpu is user and system time, in seconds.
	cpu float64
}

// clockTicks is USER_HZ, the unit of /proc/PID/stat's times: 100 on every
// Linux architecture Go supports (sysconf would need cgo).
const clockTicks = 100

func readStat(pid int) (procStat, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return procStat{}, fmt.Errorf("read the times of process %d: %w", pid, err)
	}
	// The command name may hold spaces and parentheses: fields start after
	// the last ")".
	f := strings.Fields(string(data[bytes.LastIndexByte(data, ')')+1:]))
	if len(f) < 13 {
		return procStat{}, fmt.Errorf("process %d: unexpected /proc stat %q", pid, data)
	}
	utime, _ := strconv.ParseFloat(f[11], 64) // field 14 of stat
	stime, _ := strconv.ParseFloat(f[12], 64) // field 15
	return procStat{state: f[0], cpu: (utime + stime) / clockTicks}, nil
}

// standbyOf finds the standby process codex-connector started beside the
// server s, or 0.
func (s *server) standbyOf() int {
	for _, pid := range homeProcesses(s.home) {
		if pid == s.pid() {
			continue
		}
		if cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid)); err == nil && bytes.Contains(cmdline, []byte("follow")) {
			return pid
		}
	}
	return 0
}

// record adds a row to the table of `make bench`, and logs it.
func record(b *testing.B, row benchtab.Row) {
	b.Helper()
	line, err := benchtab.Record(row)
	if err != nil {
		b.Fatal(err)
	}
	b.Log(line)
}

// ms is d in milliseconds.
func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// docker runs the docker command line and returns its output; a failure,
// or a command still running after 15 minutes (a Codex that cannot reach
// its model server tries forever), fails the benchmark.
func docker(b *testing.B, args ...string) string {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, "docker", args...).Output()
	if err != nil {
		var stderr []byte
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = ee.Stderr
		}
		b.Fatalf("docker %s: %v\n%s", strings.Join(args, " "), err, stderr)
	}
	return strings.TrimSpace(string(out))
}

// benchLabel marks the containers the benchmarks run themselves, for the
// references, so that a leftover is easy to find: docker ps -a --filter
// label=codex-connector-bench.
const benchLabel = "codex-connector-bench"

// removeContainer removes a reference's container, whatever its state.
func removeContainer(id string) {
	exec.Command("docker", "rm", "-f", id).Run()
}

// firstLine reads r until the end of its first line.
func firstLine(r io.Reader) error {
	buf := make([]byte, 4096)
	for {
		n, err := r.Read(buf)
		if bytes.IndexByte(buf[:n], '\n') >= 0 {
			return nil
		}
		if err != nil {
			return fmt.Errorf("no complete line before %w", err)
		}
	}
}
