package view

import (
	"flag"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/codex-connector/codex-connector/store"
)

var update = flag.Bool("update", false, "write the golden files anew from what the code prints")

// golden compares got with testdata/name, or writes it with -update.
func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./view -update to write it)", err)
	}
	if got != string(want) {
		t.Errorf("%s differs from what is printed now (go test ./view -update takes it as is):\n--- got\n%s\n--- want\n%s", name, got, want)
	}
}

// tasksAt are tasks of every kind as a list at now shows them.
func tasksAt(now time.Time) []*store.Task {
	at := func(ago time.Duration) time.Time { return now.Add(-ago) }
	running := &store.Task{ID: "20261204-114500-aaaaaa", Status: store.Running, Prompt: "make the tests pass", WorkingDirectory: "/home/me/src/shop",
		Sandbox: "workspace-write", CreatedAt: at(15 * time.Minute), StartedAt: at(14*time.Minute + 30*time.Second)}
	queued := &store.Task{ID: "20261204-115900-bbbbbb", Status: store.Queued, Prompt: "write the changelog\nfor 2.0", WorkingDirectory: "/home/me/src/shop",
		Sandbox: "read-only", CreatedAt: at(time.Minute)}
	completed := &store.Task{ID: "20261203-090000-cccccc", Status: store.Completed, Prompt: "refactor the payment module so that every provider goes through one interface and the tests cover each",
		WorkingDirectory: "/home/me/src/payments", Sandbox: "danger-full-access", CreatedAt: at(27 * time.Hour), StartedAt: at(27 * time.Hour), FinishedAt: at(26*time.Hour + 12*time.Minute)}
	failed := &store.Task{ID: "20261120-100000-dddddd", Status: store.Failed, Prompt: "upgrade the Go version", WorkingDirectory: "/home/me/src/tool",
		Sandbox: "workspace-write", CreatedAt: at(14 * 24 * time.Hour), StartedAt: at(14 * 24 * time.Hour), FinishedAt: at(14*24*time.Hour - 42*time.Second),
		Error: "usage limit reached: try again at 4:00 PM\n(more)"}
	return []*store.Task{queued, running, completed, failed}
}

func TestListTable(t *testing.T) {
	now := time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)
	t.Run("the table of every kind of task, as tasks and codex_tasks print it", func(t *testing.T) {
		v := ListOf(tasksAt(now), nil, "all", 20, now, CLI)
		golden(t, "tasks.golden", v.Summary+"\n")
	})
	t.Run("a cut list says how to see more, in the words of each surface", func(t *testing.T) {
		cli := ListOf(tasksAt(now), []string{"20261101-000000-eeeeee"}, "all", 2, now, CLI)
		golden(t, "tasks-cut-cli.golden", cli.Summary+"\n")
		mcp := ListOf(tasksAt(now), nil, "all", 2, now, MCP)
		if !cli.Truncated || len(cli.Tasks) != 2 || mcp.Summary == cli.Summary {
			t.Errorf("cut list: truncated %v, %d tasks; MCP and CLI texts the same: %v", cli.Truncated, len(cli.Tasks), mcp.Summary == cli.Summary)
		}
	})
	t.Run("no tasks", func(t *testing.T) {
		if got := ListOf(nil, nil, "running", 20, now, CLI).Summary; got != "No tasks (filter: running)." {
			t.Errorf("got %q", got)
		}
	})
}

func TestAge(t *testing.T) {
	for _, c := range []struct {
		d    time.Duration
		want string
	}{
		{-time.Second, "0s"}, {0, "0s"}, {800 * time.Millisecond, "<1s"}, {59 * time.Second, "59s"}, {61 * time.Second, "1m01s"},
		{2*time.Hour + 5*time.Minute, "2h05m"}, {47 * time.Hour, "47h00m"}, {49 * time.Hour, "2d"},
	} {
		if got := Age(c.d); got != c.want {
			t.Errorf("Age(%v) = %q, want %q", c.d, got, c.want)
		}
	}
}
