package runner

import (
	"bufio"
	"context"
	"errors"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/codex-connector/codex-connector/images"
	"github.com/codex-connector/codex-connector/images/imagestest"
	"github.com/codex-connector/codex-connector/store"
	cerrdefs "github.com/containerd/errdefs"
)

func TestTaskWritesIntoRepoAsTheRepoOwner(t *testing.T) {
	h := newHarness(t, nil)
	repo := newRepo(t)
	task := h.startAndWait(t, Spec{Prompt: "write out.txt made by codex; say all done", WorkingDirectory: repo, Sandbox: WorkspaceWrite, Model: "gpt-test"})

	if task.Status != store.Completed || *task.ExitCode != 0 {
		t.Fatalf("status %s exit %v error %q", task.Status, task.ExitCode, task.Error)
	}
	path := filepath.Join(repo, "out.txt")
	if got := readFile(t, path); got != "made by codex\n" {
		t.Fatalf("out.txt = %q", got)
	}
	fi, _ := os.Stat(path)
	if st := fi.Sys().(*syscall.Stat_t); st.Uid != testUID || st.Gid != testGID {
		t.Fatalf("out.txt owned by %d:%d, want %d:%d", st.Uid, st.Gid, testUID, testGID)
	}
	t.Run("the result file holds the last message", func(t *testing.T) {
		if got := readFile(t, h.ResultPath(task.ID)); got != "all done" {
			t.Fatalf("result = %q", got)
		}
		if task.Result != "all done" {
			t.Fatalf("record result = %q", task.Result)
		}
	})
	t.Run("the log holds Codex's events and its stderr", func(t *testing.T) {
		log := readFile(t, h.LogPath(task.ID))
		// The prompt comes through stdin ("-"), never the command line.
		for _, want := range []string{`"type":"thread.started"`, `"type":"turn.completed"`, `"--model" "gpt-test"`, `"--" "-"]`} {
			if !strings.Contains(log, want) {
				t.Errorf("log lacks %s:\n%s", want, log)
			}
		}
	})
	t.Run("the summary has the command and the file", func(t *testing.T) {
		s := task.Summary
		if s == nil || len(s.Commands) != 1 || s.Commands[0].Command != "write out.txt" || *s.Commands[0].ExitCode != 0 ||
			len(s.FilesChanged) != 1 || s.FilesChanged[0] != "out.txt" || s.LastMessage != "all done" || s.Usage.InputTokens != 100 {
			t.Fatalf("summary %+v", s)
		}
	})
	t.Run("the record says where and how it ran", func(t *testing.T) {
		if task.RepoRoot != repo || task.WorkingDirectory != repo || task.User != "1000:1000" || task.ContainerID == "" || task.StartedAt.IsZero() || task.FinishedAt.Before(task.StartedAt) {
			t.Fatalf("record %+v", task)
		}
	})
	t.Run("the container is removed", func(t *testing.T) {
		// The end is recorded before the container goes: wait for it.
		deadline := time.Now().Add(30 * time.Second)
		_, err := h.engine.ContainerInspect(context.Background(), task.ContainerID)
		for !cerrdefs.IsNotFound(err) && time.Now().Before(deadline) {
			time.Sleep(50 * time.Millisecond)
			_, err = h.engine.ContainerInspect(context.Background(), task.ContainerID)
		}
		if !cerrdefs.IsNotFound(err) {
			t.Fatalf("container still there: %v", err)
		}
	})
}

func TestReadOnlyTaskCannotWriteTheRepo(t *testing.T) {
	h := newHarness(t, nil)
	repo := newRepo(t)
	before := snapshot(t, repo)
	task := h.startAndWait(t, Spec{Prompt: "write README changed; write new.txt x; write .git/hooks/pre-commit boom", WorkingDirectory: repo, Sandbox: ReadOnly})
	if task.Status != store.Completed {
		t.Fatalf("status %s: %s", task.Status, task.Error)
	}
	if after := snapshot(t, repo); after != before {
		t.Fatalf("repo changed:\nbefore %s\nafter  %s", before, after)
	}
	for _, c := range task.Summary.Commands {
		if *c.ExitCode == 0 {
			t.Errorf("%s succeeded in a read-only repo", c.Command)
		}
	}
	if log := readFile(t, h.LogPath(task.ID)); !strings.Contains(log, "read-only file system") {
		t.Fatalf("log does not show the refused write:\n%s", log)
	}
}

func TestSubdirectoryRunsWithItsRepoMounted(t *testing.T) {
	h := newHarness(t, nil)
	repo := newRepo(t)
	sub := filepath.Join(repo, "pkg", "inner")
	if err := os.MkdirAll(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	imagestest.Chown(t, repo)
	task := h.startAndWait(t, Spec{Prompt: "write ../../top.txt from the subdir; write here.txt here", WorkingDirectory: sub, Sandbox: WorkspaceWrite})
	if task.Status != store.Completed || task.RepoRoot != repo || task.WorkingDirectory != sub {
		t.Fatalf("task %+v", task)
	}
	if readFile(t, filepath.Join(repo, "top.txt")) != "from the subdir\n" || readFile(t, filepath.Join(sub, "here.txt")) != "here\n" {
		t.Fatal("files not written where the working directory says")
	}
}

func TestFailedTaskRecordsCodeAndReason(t *testing.T) {
	h := newHarness(t, nil)
	for _, tc := range []struct {
		name, prompt string
		code         int
		reason       string
	}{
		{"a failed turn gives Codex's message", "fail model said no", 1, "model said no"},
		{"a bare exit code is reported", "exit 7", 7, "code 7"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			task := h.startAndWait(t, Spec{Prompt: tc.prompt, WorkingDirectory: newRepo(t)})
			if task.Status != store.Failed || *task.ExitCode != tc.code || !strings.Contains(task.Error, tc.reason) {
				t.Fatalf("status %s code %v error %q", task.Status, *task.ExitCode, task.Error)
			}
		})
	}
}

func TestPromptStartingWithDashIsNotAFlag(t *testing.T) {
	h := newHarness(t, nil)
	task := h.startAndWait(t, Spec{Prompt: "--version please", WorkingDirectory: newRepo(t)})
	if task.Status != store.Completed || task.Result != "fake codex: --version please" {
		t.Fatalf("status %s result %q", task.Status, task.Result)
	}
}

func TestTimeoutEndsTaskAsTimedOutAndKeepsLog(t *testing.T) {
	h := newHarness(t, nil)
	task := h.startAndWait(t, Spec{Prompt: "stderr before the wait; ignore-term; sleep 1h", WorkingDirectory: newRepo(t), Timeout: 1500 * time.Millisecond})
	if task.Status != store.TimedOut || !strings.Contains(task.Error, "timed out after 1.5s") {
		t.Fatalf("status %s error %q", task.Status, task.Error)
	}
	if task.Deadline.IsZero() || task.FinishedAt.Before(task.Deadline) {
		t.Fatalf("finished %v before deadline %v", task.FinishedAt, task.Deadline)
	}
	if log := readFile(t, h.LogPath(task.ID)); !strings.Contains(log, "before the wait") {
		t.Fatalf("log lost: %q", log)
	}
}

// The task gets a copy of the login, not the user's file: what it writes
// there stays in its own state directory.
func TestCodexLoginIsATasksOwnCopy(t *testing.T) {
	const login = `{"tokens":{"access_token":"at"}}`
	auth := filepath.Join(t.TempDir(), "auth.json")
	if err := os.WriteFile(auth, []byte(login), 0o644); err != nil {
		t.Fatal(err)
	}
	h := newHarness(t, func(c *Config) { c.AuthFile = auth; c.Env = []string{"EXTRA=yes"} })
	task := h.startAndWait(t, Spec{Prompt: "read /codex-connector/codex-home/auth.json; write /codex-connector/codex-home/auth.json stolen; env EXTRA", WorkingDirectory: newRepo(t)})
	log := readFile(t, h.LogPath(task.ID))
	if !strings.Contains(log, `read /codex-connector/codex-home/auth.json: {"OPENAI_API_KEY":null,"tokens":{"access_token":"at"}}`) || !strings.Contains(log, "EXTRA=yes") {
		t.Fatalf("login or env not seen in the container:\n%s", log)
	}
	if readFile(t, auth) != login {
		t.Fatal("the user's login changed")
	}
}

func TestStallWatchdog(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.StallTimeout = 2 * time.Second })
	t.Run("a reconnect loop ends as failed with the reason", func(t *testing.T) {
		task := h.startAndWait(t, Spec{Prompt: "cmd 0 ls; reconnect 0 300ms", WorkingDirectory: newRepo(t)})
		if task.Status != store.Failed || !strings.Contains(task.Error, "stalled") || !strings.Contains(task.Error, "Reconnecting... waiting for network") {
			t.Fatalf("status %s error %q", task.Status, task.Error)
		}
	})
	t.Run("a long silent command is not a stall", func(t *testing.T) {
		task := h.startAndWait(t, Spec{Prompt: "longcmd 5s; say built", WorkingDirectory: newRepo(t)})
		if task.Status != store.Completed || task.Result != "built" {
			t.Fatalf("status %s error %q", task.Status, task.Error)
		}
	})
}

func TestCancel(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.MaxRunning = 1 })
	repo := newRepo(t)
	ctx := context.Background()
	running, err := h.Start(ctx, Spec{Prompt: "stderr started; sleep 1h", WorkingDirectory: repo})
	if err != nil {
		t.Fatal(err)
	}
	queued, err := h.Start(ctx, Spec{Prompt: "write never.txt x", WorkingDirectory: repo})
	if err != nil {
		t.Fatal(err)
	}
	h.waitStatus(t, running.ID, store.Running)
	// The record names the container before it starts: wait until the task
	// has printed, so there is a log for the cancel to keep.
	for i := 0; !strings.Contains(readLog(h.LogPath(running.ID)), "started"); i++ {
		if i > 1000 {
			t.Fatal("the running task never printed")
		}
		time.Sleep(20 * time.Millisecond)
	}

	t.Run("a queued task ends cancelled and never runs", func(t *testing.T) {
		got, err := h.Cancel(ctx, queued.ID)
		if err != nil || got.Status != store.Cancelled || got.ContainerID != "" {
			t.Fatalf("cancel queued: %+v, %v", got, err)
		}
	})
	t.Run("a running task is stopped and ends cancelled with its log", func(t *testing.T) {
		got, err := h.Cancel(ctx, running.ID)
		if err != nil || got.Status != store.Cancelled || got.ExitCode == nil {
			t.Fatalf("cancel running: %+v, %v", got, err)
		}
		if !strings.Contains(readFile(t, h.LogPath(running.ID)), "started") {
			t.Fatal("log lost")
		}
	})
	t.Run("cancelling a finished task changes nothing", func(t *testing.T) {
		before, _ := h.Get(running.ID)
		got, err := h.Cancel(ctx, running.ID)
		if err != nil || got.Status != store.Cancelled || !got.FinishedAt.Equal(before.FinishedAt) {
			t.Fatalf("%+v, %v", got, err)
		}
	})
	// The freed slot goes to the queue in order: a task queued after the
	// cancelled one runs after it would have, so once that task ended, the
	// cancelled one had its chance to run, and must not have.
	after := h.startAndWait(t, Spec{Prompt: "say after", WorkingDirectory: repo})
	if after.Status != store.Completed {
		t.Fatalf("the task queued after: %s %s", after.Status, after.Error)
	}
	if _, err := os.Stat(filepath.Join(repo, "never.txt")); err == nil {
		t.Fatal("the cancelled queued task ran")
	}
}

func TestBadRequestsAreRefusedWithAReason(t *testing.T) {
	h := newHarness(t, nil)
	repo := newRepo(t)
	plain := t.TempDir()
	file := filepath.Join(repo, "README")
	for _, tc := range []struct {
		name string
		spec Spec
		want string
	}{
		{"a directory that is not a repository", Spec{Prompt: "x", WorkingDirectory: plain}, "not a git repository: " + plain},
		{"a relative path", Spec{Prompt: "x", WorkingDirectory: "repo"}, "must be an absolute path"},
		{"a directory that does not exist", Spec{Prompt: "x", WorkingDirectory: "/no/such/dir"}, "/no/such/dir does not exist"},
		{"a file, not a directory", Spec{Prompt: "x", WorkingDirectory: file}, "is not a directory"},
		{"an empty task", Spec{Prompt: "  ", WorkingDirectory: repo}, "task is empty"},
		{"an unknown sandbox level", Spec{Prompt: "x", WorkingDirectory: repo, Sandbox: "yolo"}, `sandbox "yolo" is not a level`},
		{"a negative timeout", Spec{Prompt: "x", WorkingDirectory: repo, Timeout: -time.Second}, "must not be negative"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := h.Start(context.Background(), tc.spec)
			if !errors.Is(err, ErrInvalidTask) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want ErrInvalidTask with %q", err, tc.want)
			}
		})
	}
	if tasks, _, _ := h.List(store.Filter{}); len(tasks) != 0 {
		t.Fatalf("refused requests left %d records", len(tasks))
	}
}

func TestMissingImageSaysHowToBuildIt(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.Image = images.Codex{Ref: "codex-connector/no-such-image:1"} })
	_, err := h.Start(context.Background(), Spec{Prompt: "x", WorkingDirectory: newRepo(t)})
	if !errors.Is(err, images.ErrMissing) || !strings.Contains(err.Error(), "make image") {
		t.Fatalf("got %v", err)
	}
}

func TestWrongCodexVersionSaysHowToRebuild(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.Image.Version = "9.9.9" })
	_, err := h.Start(context.Background(), Spec{Prompt: "x", WorkingDirectory: newRepo(t)})
	if !errors.Is(err, images.ErrWrongVersion) || !strings.Contains(err.Error(), "CODEX_VERSION=9.9.9") {
		t.Fatalf("got %v", err)
	}
}

func TestLargeLogIsCopiedComplete(t *testing.T) {
	h := newHarness(t, nil)
	const size = 100 << 20 // 1,048,576 lines of 99 x's and a newline
	task := h.startAndWait(t, Spec{Prompt: "flood 104857600", WorkingDirectory: newRepo(t)})
	if task.Status != store.Completed {
		t.Fatalf("status %s: %s", task.Status, task.Error)
	}
	f, err := os.Open(h.LogPath(task.ID))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	flood := strings.Repeat("x", 99)
	var floodLines, other, total int64
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		total += int64(len(sc.Bytes())) + 1
		if sc.Text() == flood {
			floodLines++
		} else {
			other++
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if floodLines != size/100 {
		t.Fatalf("log has %d flood lines, want %d", floodLines, size/100)
	}
	// The rest is the fake's stderr line and its three events.
	if other != 4 {
		t.Fatalf("log has %d other lines, want 4", other)
	}
	if fi, _ := f.Stat(); fi.Size() != total || task.LogBytes != total {
		t.Fatalf("file %d bytes, lines add up to %d, record says %d", fi.Size(), total, task.LogBytes)
	}
}

func TestConcurrencyLimitRunsAllTasksInOrder(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.MaxRunning = 4 })
	repo := newRepo(t)
	var ids []string
	for i := 0; i < 20; i++ {
		task, err := h.Start(context.Background(), Spec{Prompt: "sleep 300ms; say done", WorkingDirectory: repo})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, task.ID)
	}
	var wg sync.WaitGroup
	tasks := make([]*store.Task, len(ids))
	for i, id := range ids {
		wg.Add(1)
		go func() { defer wg.Done(); tasks[i] = h.waitFinal(t, id) }()
	}
	wg.Wait()
	type edge struct {
		at    time.Time
		delta int
	}
	var edges []edge
	for i, task := range tasks {
		if task.Status != store.Completed || task.Result != "done" {
			t.Fatalf("task %d: %s %q", i, task.Status, task.Error)
		}
		edges = append(edges, edge{task.StartedAt, +1}, edge{task.FinishedAt, -1})
		if i > 0 && task.StartedAt.Before(tasks[i-1].StartedAt) {
			t.Errorf("task %d started before task %d, which was queued first", i, i-1)
		}
	}
	sort.Slice(edges, func(i, j int) bool {
		if edges[i].at.Equal(edges[j].at) {
			return edges[i].delta < edges[j].delta
		}
		return edges[i].at.Before(edges[j].at)
	})
	cur, peak := 0, 0
	for _, e := range edges {
		cur += e.delta
		peak = max(peak, cur)
	}
	if peak > 4 {
		t.Fatalf("%d tasks ran at once, limit is 4", peak)
	}
	if peak < 2 {
		t.Fatalf("tasks never overlapped (peak %d): the limit is not being used", peak)
	}
	all, _, _ := h.List(store.Filter{})
	if len(all) != 20 {
		t.Fatalf("%d records, want 20", len(all))
	}
}

// snapshot describes every file under dir: path, mode, size and content.
func snapshot(t *testing.T, dir string) string {
	t.Helper()
	var b strings.Builder
	err := filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		b.WriteString(p + " " + fi.Mode().String() + " ")
		if fi.Mode().IsRegular() {
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			b.Write(data)
		}
		b.WriteString("\n")
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return b.String()
}
