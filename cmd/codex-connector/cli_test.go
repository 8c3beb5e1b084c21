package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/codex-connector/codex-connector/images/imagestest"
	"github.com/codex-connector/codex-connector/runner"
	"github.com/codex-connector/codex-connector/store"
	"github.com/creack/pty"
)

var update = flag.Bool("update", false, "write the golden files anew from what the command line prints")

// The command line, run as a person would: the built binary, in a
// repository, on the engine, with the fake Codex.

type cliResult struct {
	stdout, stderr string
	code           int
}

// cliHome is a data directory for the command line, cleaned up with what
// its tasks leave: containers, the egress proxy, the detached follower.
func cliHome(t *testing.T) string {
	t.Helper()
	home := t.TempDir()
	t.Cleanup(func() {
		killHomeProcesses(home)
		removeHomeContainers(home)
		exec.Command("docker", "rm", "-f", runner.ProxyName(home)).Run()
	})
	return home
}

// cliEnv is the environment of the command line on home: the fake Codex,
// and the variables given, which replace those of this process.
func cliEnv(t *testing.T, home string, env ...string) []string {
	base := []string{"CODEX_CONNECTOR_HOME=" + home, "CODEX_CONNECTOR_IMAGE=" + imagestest.FakeCodex(t),
		"CODEX_CONNECTOR_STOP_GRACE=1s", "CODEX_CONNECTOR_ALLOWED_ROOTS=" + os.TempDir()}
	return withEnv(os.Environ(), append(base, env...)...)
}

// withEnv sets variables in env, replacing earlier values.
func withEnv(env []string, set ...string) []string {
	out := slices.Clone(env)
	for _, kv := range set {
		name, _, _ := strings.Cut(kv, "=")
		out = slices.DeleteFunc(out, func(e string) bool { return strings.HasPrefix(e, name+"=") })
		out = append(out, kv)
	}
	return out
}

// cli runs the command line in dir with env, its output piped.
func cli(t *testing.T, env []string, dir string, args ...string) cliResult {
	t.Helper()
	cmd := exec.Command(binary(t), args...)
	cmd.Env, cmd.Dir = env, dir
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	res := cliResult{stdout: stdout.String(), stderr: stderr.String()}
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		res.code = exit.ExitCode()
	case err != nil:
		t.Fatalf("run codex-connector %v: %v", args, err)
	}
	return res
}

func (r cliResult) String() string {
	return fmt.Sprintf("exit %d\n--- stdout\n%s--- stderr\n%s", r.code, r.stdout, r.stderr)
}

// terminal is the command line running in a pseudo-terminal.
type terminal struct {
	t    *testing.T
	cmd  *exec.Cmd
	tty  *os.File
	mu   sync.Mutex
	out  bytes.Buffer
	done chan struct{}
}

func inTerminal(t *testing.T, env []string, dir string, args ...string) *terminal {
	t.Helper()
	cmd := exec.Command(binary(t), args...)
	cmd.Env, cmd.Dir = env, dir
	tty, err := pty.StartWithSize(cmd, &pty.Winsize{Rows: 40, Cols: 200})
	if err != nil {
		t.Fatal(err)
	}
	term := &terminal{t: t, cmd: cmd, tty: tty, done: make(chan struct{})}
	go func() {
		defer close(term.done)
		buf := make([]byte, 4096)
		for {
			n, err := tty.Read(buf)
			term.mu.Lock()
			term.out.Write(buf[:n])
			term.mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	t.Cleanup(func() {
		cmd.Process.Kill()
		tty.Close()
	})
	return term
}

func (term *terminal) output() string {
	term.mu.Lock()
	defer term.mu.Unlock()
	return term.out.String()
}

// waitFor waits until the terminal shows s.
func (term *terminal) waitFor(s string) {
	term.t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for !strings.Contains(term.output(), s) {
		if time.Now().After(deadline) {
			term.t.Fatalf("the terminal never showed %q:\n%s", s, term.output())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (term *terminal) typeIn(s string) {
	if _, err := term.tty.Write([]byte(s)); err != nil {
		term.t.Fatal(err)
	}
}

// wait waits for the command to exit and returns its exit code.
func (term *terminal) wait() int {
	term.t.Helper()
	err := term.cmd.Wait()
	select {
	case <-term.done:
	case <-time.After(10 * time.Second):
	}
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		return exit.ExitCode()
	}
	if err != nil {
		term.t.Fatal(err)
	}
	return 0
}

var summaryLine = regexp.MustCompile(`(?m)^(\d{8}-\d{6}-[0-9a-f]{6}) (\w+) after [0-9.]+m?s · `)

// taskIDIn finds the id of the task in the one-line summary.
func taskIDIn(t *testing.T, out string) string {
	t.Helper()
	m := summaryLine.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no one-line summary in:\n%s", out)
	}
	return m[1]
}

func TestRunPipedToTheEnd(t *testing.T) {
	home, repo := cliHome(t), imagestest.Repo(t)
	env := cliEnv(t, home)
	res := cli(t, env, repo, "run", "cmd 0 go test ./...; cmd 2 make lint; write notes.txt hi; say Done here.")
	if res.code != 0 {
		t.Fatalf("run: %s", res)
	}
	for _, want := range []string{
		"$ go test ./...  → exit 0", "$ make lint  → exit 2", "codex: created notes.txt",
		"Files changed: notes.txt", "Result:\nDone here.\n",
	} {
		if !strings.Contains(res.stdout, want) {
			t.Errorf("run's output lacks %q:\n%s", want, res)
		}
	}
	if !regexp.MustCompile(`completed after [0-9.]+s · 3 commands \(1 failed\) · 1 file changed · 100 tokens in, 20 out`).MatchString(res.stdout) {
		t.Errorf("no one-line summary of the end:\n%s", res)
	}
	if strings.Contains(res.stdout, "\x1b[") {
		t.Errorf("piped output has terminal escapes:\n%q", res.stdout)
	}
	if data, err := os.ReadFile(filepath.Join(repo, "notes.txt")); err != nil || string(data) != "hi\n" {
		t.Errorf("the task's file in the repository: %q, %v", data, err)
	}
	id := taskIDIn(t, res.stdout)

	t.Run("tasks lists it in the table", func(t *testing.T) {
		res := cli(t, env, "/", "tasks")
		if res.code != 0 || !regexp.MustCompile(`(?m)^`+id+`\s+completed\s+\d+s\s+\d+s\s+`+regexp.QuoteMeta(repo)+`\s+cmd 0 go test`).MatchString(res.stdout) {
			t.Errorf("tasks:\n%s", res)
		}
	})
	t.Run("status --json is the structure codex_status returns", func(t *testing.T) {
		res := cli(t, env, "/", "status", "--json", id)
		var v map[string]any
		if err := json.Unmarshal([]byte(res.stdout), &v); err != nil || v["status"] != "completed" || v["result"] != "Done here." || v["taskId"] != id {
			t.Errorf("status --json: %v\n%s", err, res)
		}
	})
	t.Run("after --, the task is the task, however it looks", func(t *testing.T) {
		res := cli(t, env, repo, "run", "--", "say use -d and --model x")
		if res.code != 0 || !strings.Contains(res.stdout, "Result:\nuse -d and --model x\n") {
			t.Errorf("run --: %s", res)
		}
	})
	t.Run("--detach without the follower is refused", func(t *testing.T) {
		res := cli(t, withEnv(env, "CODEX_CONNECTOR_FOLLOW_AFTER_EXIT=false"), repo, "run", "-d", "say hi")
		if res.code != 1 || !strings.Contains(res.stderr, "--detach needs the detached follower") {
			t.Errorf("run -d with followAfterExit false: %s", res)
		}
	})
	t.Run("a task that fails fails the command", func(t *testing.T) {
		res := cli(t, env, repo, "run", "cmd 0 true; fail the model gave up")
		if res.code != 1 || !regexp.MustCompile(`failed after .* · 1 command · .*the model gave up`).MatchString(res.stdout) {
			t.Errorf("a failed task: %s", res)
		}
	})
}

func TestRunInATerminal(t *testing.T) {
	home, repo := cliHome(t), imagestest.Repo(t)
	env := cliEnv(t, home)

	t.Run("it shows progress on a status line, then the result", func(t *testing.T) {
		term := inTerminal(t, env, repo, "run", "cmd 0 ls; lines 5 400ms; say Done in a terminal.")
		if code := term.wait(); code != 0 {
			t.Fatalf("exit %d:\n%s", code, term.output())
		}
		out := term.output()
		for _, want := range []string{"\r\x1b[2Kran: ls (exit 0) (1 command, ", "$ ls  → exit 0", "line 000005", "Result:\r\nDone in a terminal."} {
			if !strings.Contains(out, want) {
				t.Errorf("the terminal lacks %q:\n%q", want, out)
			}
		}
	})

	t.Run("a task cannot drive the terminal: its escapes are shown, not sent", func(t *testing.T) {
		// (The fake Codex splits its script at ";", so these escapes have
		// none: clear the screen, colour, reset the terminal, and a line
		// that moves the cursor up to erase the line above it.)
		term := inTerminal(t, env, repo, "run", "rawout \x1b[2J\x1b[31mRED\x1bc\x07; say done \x1b[1A\x1b[2K here")
		if code := term.wait(); code != 0 {
			t.Fatalf("exit %d:\n%s", code, term.output())
		}
		out := term.output()
		// First, that the hostile output reached the log and the terminal.
		for _, want := range []string{"^[[2J^[[31mRED^[c^G", "codex: done ^[[1A^[[2K here"} {
			if !strings.Contains(out, want) {
				t.Errorf("the terminal does not show %q:\n%q", want, out)
			}
		}
		for _, bad := range []string{"\x1b[2J", "\x1b[31m", "\x1bc", "\x1b[1A", "\a"} {
			if strings.Contains(out, bad) {
				t.Errorf("the task's escape %q reached the terminal:\n%q", bad, out)
			}
		}
		id := taskIDIn(t, strings.ReplaceAll(out, "\r\n", "\n"))
		logs := inTerminal(t, env, "/", "logs", "--raw", id)
		logs.wait()
		if strings.Contains(logs.output(), "\x1b[2J") || !strings.Contains(logs.output(), "^[[2J^[[31mRED") {
			t.Errorf("logs --raw on a terminal sent the task's escapes:\n%q", logs.output())
		}
		status := inTerminal(t, env, "/", "status", id)
		status.wait()
		if strings.Contains(status.output(), "\x1b") {
			t.Errorf("status on a terminal sent an escape:\n%q", status.output())
		}
		// Piped, what a person reads later (a file, a pager) is filtered
		// too; --raw and --json, which programs read, are exact.
		piped := cli(t, env, "/", "logs", id)
		if strings.Contains(piped.stdout, "\x1b") || !strings.Contains(piped.stdout, "^[[2J") {
			t.Errorf("logs piped sent the task's escapes:\n%q", piped.stdout)
		}
		if raw := cli(t, env, "/", "logs", "--raw", id); !strings.Contains(raw.stdout, "\x1b[2J") {
			t.Errorf("logs --raw piped is not the log as written:\n%q", raw.stdout)
		}
	})

	t.Run("Ctrl-C then y cancels the task", func(t *testing.T) {
		term := inTerminal(t, env, repo, "run", "cmd 0 ls; sleep 5m; say never")
		term.waitFor("ran: ls (exit 0)")
		term.typeIn("\x03")
		term.waitFor("Cancel task")
		term.typeIn("y\r")
		if code := term.wait(); code != 1 {
			t.Errorf("exit %d after cancelling:\n%s", code, term.output())
		}
		id := taskIDIn(t, strings.ReplaceAll(term.output(), "\r\n", "\n"))
		if res := cli(t, env, "/", "status", id); !strings.Contains(res.stdout, "Task "+id+": cancelled") {
			t.Errorf("status after the cancel: %s", res)
		}
	})

	t.Run("Ctrl-C then Enter leaves the task running, and it ends with nobody watching", func(t *testing.T) {
		term := inTerminal(t, env, repo, "run", "cmd 0 ls; sleep 4s; say finished with nobody watching")
		term.waitFor("ran: ls (exit 0)")
		term.typeIn("\x03")
		term.waitFor("Cancel task")
		term.typeIn("\r")
		if code := term.wait(); code != 130 {
			t.Errorf("exit %d after leaving it running, want 130 (it did not complete):\n%s", code, term.output())
		}
		m := regexp.MustCompile(`Task (\S+) runs on`).FindStringSubmatch(term.output())
		if m == nil {
			t.Fatalf("no word of the task running on:\n%s", term.output())
		}
		res := cli(t, env, "/", "logs", "-f", m[1])
		if res.code != 0 || !strings.Contains(res.stdout, "codex: finished with nobody watching") || !strings.Contains(res.stderr, m[1]+" completed after") {
			t.Errorf("logs -f of the task left running: %s", res)
		}
	})
}

func TestLogsFollowsARunningTaskToItsEnd(t *testing.T) {
	home, repo := cliHome(t), imagestest.Repo(t)
	env := cliEnv(t, home)
	res := cli(t, env, repo, "run", "--detach", "lines 20 150ms; say the end")
	id := strings.TrimSpace(res.stdout)
	if res.code != 0 || !store.ValidID(id) || !strings.Contains(res.stderr, "logs -f "+id) {
		t.Fatalf("run --detach: %s", res)
	}
	res = cli(t, env, "/", "logs", "-f", id)
	if res.code != 0 {
		t.Fatalf("logs -f: %s", res)
	}
	var lines []string
	for _, l := range strings.Split(res.stdout, "\n") {
		if strings.HasPrefix(l, "line ") {
			lines = append(lines, l)
		}
	}
	if len(lines) != 20 || lines[0] != "line 000001" || lines[19] != "line 000020" || !strings.HasSuffix(strings.TrimSpace(res.stdout), "codex: the end\ncodex: turn completed (tokens so far: 100 in, 20 out)") {
		t.Errorf("logs -f did not print the whole log, in order, to its end (%d lines):\n%s", len(lines), res)
	}
	if status := cli(t, env, "/", "status", id); !strings.Contains(status.stdout, "completed") {
		t.Errorf("logs -f returned before the end: %s", status)
	}
	raw := cli(t, env, "/", "logs", "--raw", id)
	data, err := os.ReadFile(filepath.Join(home, "logs", id+".log"))
	if err != nil || raw.stdout != string(data) {
		t.Errorf("logs --raw is not the log as written (%v):\n%s", err, raw)
	}
}

// The log of a real Codex run (runner/testdata), as logs renders it.
func TestLogsRendersTheLogGolden(t *testing.T) {
	home := cliHome(t)
	now := time.Now().UTC()
	task := &store.Task{ID: store.NewID(now), Status: store.Completed, Prompt: "fixture", Sandbox: runner.ReadOnly,
		WorkingDirectory: "/tmp/repo", RepoRoot: "/tmp/repo", CreatedAt: now, StartedAt: now, FinishedAt: now}
	st, err := store.Open(filepath.Join(home, "tasks.db"), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Create(task); err != nil {
		t.Fatal(err)
	}
	fixture, err := os.ReadFile("../../runner/testdata/codex-0.169/success-three-commands.stdout.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(home, "logs"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(home, "logs", task.ID+".log"), fixture, 0o600); err != nil {
		t.Fatal(err)
	}
	res := cli(t, cliEnv(t, home), "/", "logs", task.ID)
	if res.code != 0 {
		t.Fatalf("logs: %s", res)
	}
	golden := filepath.Join("testdata", "logs-success-three-commands.golden")
	if *update {
		os.MkdirAll("testdata", 0o755)
		os.WriteFile(golden, []byte(res.stdout), 0o644)
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (go test -run TestLogsRendersTheLogGolden -update writes it)", err)
	}
	if res.stdout != string(want) {
		t.Errorf("logs renders the log differently now (-update takes it as is):\n--- got\n%s--- want\n%s", res.stdout, want)
	}
}

func TestDoctorSaysWhatFailsAndTheFix(t *testing.T) {
	home := cliHome(t)
	noLogin := filepath.Join(home, "no-login")
	creds := []string{"OPENAI_API_KEY=sk-doctor-secret", "CODEX_API_KEY=", "CODEX_HOME=" + noLogin}
	for _, c := range []struct {
		name  string
		env   []string
		fails []string // lines that must be there
	}{
		{"the engine unreachable", []string{"DOCKER_HOST=unix://" + filepath.Join(home, "no-docker.sock")},
			[]string{"FAIL  docker      the engine at unix://" + filepath.Join(home, "no-docker.sock") + " does not answer", "fix: start Docker", "FAIL  image       not checked: it needs the Docker engine"}},
		{"the image missing", []string{"CODEX_CONNECTOR_IMAGE=codex-connector/no-such-codex:1"},
			[]string{"FAIL  image       Codex image not found: codex-connector/no-such-codex:1", "fix: build it with `make image` in the codex-connector source tree"}},
		{"no credentials", []string{"OPENAI_API_KEY="},
			[]string{"FAIL  credentials none found", "fix: set OPENAI_API_KEY in the server's environment"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			for _, name := range []string{"doctor", "check"} {
				res := cli(t, cliEnv(t, home, append(creds, c.env...)...), "/", name)
				if res.code != 1 || strings.Contains(res.stdout, "ready:") {
					t.Errorf("%s: %s", name, res)
				}
				for _, want := range append(c.fails, "checks failed: fix them, then run codex-connector doctor again") {
					if !strings.Contains(res.stdout, want) {
						t.Errorf("%s lacks %q:\n%s", name, want, res)
					}
				}
			}
		})
	}
	t.Run("all pass", func(t *testing.T) {
		res := cli(t, cliEnv(t, home, creds...), "/", "doctor")
		if res.code != 0 || !strings.Contains(res.stdout, "ready:") || strings.Contains(res.stdout, "FAIL") {
			t.Fatalf("doctor: %s", res)
		}
		for _, want := range []string{"pass  docker      Docker ", "pass  limits      memory, cpu and pids limits are enforced on tasks", "pass  image       ", "pass  credentials model provider openai", "pass  data        " + home,
			"pass  database    ", "pass  egress      " + runner.ProxyName(home) + " is not running; the first read-only or workspace-write task starts it",
			"pass  sandbox     tasks may run under " + os.TempDir()} {
			if !strings.Contains(res.stdout, want) {
				t.Errorf("doctor lacks %q:\n%s", want, res)
			}
		}
		if strings.Contains(res.stdout, "sk-doctor-secret") {
			t.Errorf("doctor printed the key:\n%s", res)
		}
		// It changed nothing: no records, no logs, no proxy.
		for _, made := range []string{"tasks.db", "logs", "egress"} {
			if _, err := os.Stat(filepath.Join(home, made)); err == nil {
				t.Errorf("doctor made %s in the data directory", made)
			}
		}
		if err := exec.Command("docker", "inspect", runner.ProxyName(home)).Run(); err == nil {
			t.Errorf("doctor started the egress proxy")
		}
		// With the proxy started by a task that runs, it says that it runs.
		started := cli(t, cliEnv(t, home, creds...), imagestest.Repo(t), "run", "--detach", "--sandbox", "read-only", "say started; sleep 5m")
		id := strings.TrimSpace(started.stdout)
		if started.code != 0 {
			t.Fatalf("run: %s", started)
		}
		defer cli(t, cliEnv(t, home, creds...), "/", "cancel", id)
		for deadline := time.Now().Add(time.Minute); !strings.Contains(cli(t, cliEnv(t, home, creds...), "/", "logs", id).stdout, "codex: started"); {
			if time.Now().After(deadline) {
				t.Fatalf("the task never started: %s", cli(t, cliEnv(t, home, creds...), "/", "status", id))
			}
			time.Sleep(200 * time.Millisecond)
		}
		res = cli(t, cliEnv(t, home, creds...), "/", "doctor")
		if res.code != 0 || !regexp.MustCompile(`pass  egress      `+runner.ProxyName(home)+` runs \(since [-0-9: ]+\)\n`).MatchString(res.stdout) {
			t.Errorf("doctor with the proxy running: %s", res)
		}
	})
	t.Run("a data directory others can write fails", func(t *testing.T) {
		if err := os.Chmod(home, 0o777); err != nil {
			t.Fatal(err)
		}
		defer os.Chmod(home, 0o700)
		res := cli(t, cliEnv(t, home, creds...), "/", "doctor")
		if res.code != 1 || !strings.Contains(res.stdout, "FAIL  data        "+home+" is writable by others") || !strings.Contains(res.stdout, "fix: chmod 700 "+home) {
			t.Errorf("doctor: %s", res)
		}
	})
}

func TestCommandLineBadInputSaysWhatToDo(t *testing.T) {
	home, repo := cliHome(t), imagestest.Repo(t)
	env := cliEnv(t, home)
	notRepo := t.TempDir()
	for _, c := range []struct {
		name string
		dir  string
		args []string
		want string
	}{
		{"no home yet", "/", []string{"status", "20261204-120000-abcdef"}, "no tasks here yet: " + home + " has no tasks.db"},
		{"an unknown command", "/", []string{"stauts"}, `unknown command "stauts"`},
		{"a run without a task", repo, []string{"run"}, "say what the task is"},
		{"a run outside a repository", notRepo, []string{"run", "say hi"}, "git init"},
		{"a run in a directory that is not there", "/", []string{"run", "-C", "/no/such/dir", "say hi"}, "/no/such/dir"},
		{"a bad filter", "/", []string{"tasks", "--status", "done"}, `--status "done" is not a filter`},
		{"a bad flag", "/", []string{"logs", "--tail", "3", "x"}, "flag provided but not defined: -tail (a \"--\" ends the flags, if what follows it is not one)\nusage: codex-connector logs [-f] [--raw] ID"},
		{"two ids", "/", []string{"cancel", "a", "b"}, "one task id, got 2 arguments"},
	} {
		t.Run(c.name, func(t *testing.T) {
			res := cli(t, env, c.dir, c.args...)
			if res.code == 0 || !strings.Contains(res.stderr, c.want) {
				t.Errorf("want exit 1 and %q: %s", c.want, res)
			}
		})
	}
	// With a home: an unknown id says how to find one.
	if res := cli(t, env, repo, "run", "say hi"); res.code != 0 {
		t.Fatalf("run: %s", res)
	}
	res := cli(t, env, "/", "status", "20261204-120000-abcdef")
	if res.code != 1 || !strings.Contains(res.stderr, "list tasks to see the ids there are") {
		t.Errorf("an unknown id: %s", res)
	}
	res = cli(t, env, "/", "logs", "not-an-id")
	if res.code != 1 || !strings.Contains(res.stderr, "task ids look like") {
		t.Errorf("a malformed id: %s", res)
	}
	help := cli(t, env, "/", "help")
	for _, name := range []string{"run", "tasks", "status", "logs", "cancel", "diff", "apply", "discard", "prune", "caches", "doctor", "follow", "version"} {
		if !regexp.MustCompile(`(?m)^  ` + name + ` +\S`).MatchString(help.stdout) {
			t.Errorf("help lacks %s:\n%s", name, help)
		}
		if res := cli(t, env, "/", name, "--help"); res.code != 0 || !strings.HasPrefix(res.stdout, "usage: codex-connector "+name) {
			t.Errorf("%s --help: %s", name, res)
		}
	}
}

// A run in a terminal follows its own task alone: suspended (Ctrl-Z), it
// holds up no other task of the home, and its own goes on elsewhere once
// its lease lapses.
func TestASuspendedRunStallsNoOtherTask(t *testing.T) {
	home, repo := cliHome(t), imagestest.Repo(t)
	env := cliEnv(t, home, "CODEX_CONNECTOR_LEASE=3s")
	other := cli(t, env, repo, "run", "-d", "sleep 4s; say the other task is done")
	otherID := strings.TrimSpace(other.stdout)
	if other.code != 0 {
		t.Fatalf("run -d: %s", other)
	}
	cmd := exec.Command(binary(t), "run", "say mine started; sleep 6s; say mine is done too")
	cmd.Env, cmd.Dir = env, repo
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	time.Sleep(time.Second)
	if err := cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Signal(syscall.SIGCONT)
	res := cli(t, env, "/", "status", "--wait", "90s", otherID)
	if !strings.Contains(res.stdout, "Task "+otherID+": completed") {
		t.Errorf("the other task, with a run suspended: %s", res)
	}
	// The suspended run's own task: taken over once its lease lapsed.
	list := cli(t, env, "/", "tasks", "--json")
	var v struct {
		Tasks []struct{ TaskID, Status string }
	}
	if err := json.Unmarshal([]byte(list.stdout), &v); err != nil || len(v.Tasks) != 2 {
		t.Fatalf("tasks --json: %v\n%s", err, list)
	}
	mine := v.Tasks[0].TaskID
	res = cli(t, env, "/", "status", "--wait", "90s", mine)
	if !strings.Contains(res.stdout, "Task "+mine+": completed") || !strings.Contains(res.stdout, "mine is done too") {
		t.Errorf("the suspended run's own task was not taken over: %s", res)
	}
}
