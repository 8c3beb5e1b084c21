package runner

import (
	"context"
	"encoding/json"
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
	"time"

	"github.com/codex-connector/codex-connector/images/imagestest"
	"github.com/codex-connector/codex-connector/internal/hostfs"
	"github.com/codex-connector/codex-connector/internal/hostfs/hostfstest"
	"github.com/codex-connector/codex-connector/store"
)

// requestText is what one request to the model server carried as its
// conversation, as text.
func requestText(t *testing.T, req map[string]any) string {
	t.Helper()
	b, err := json.Marshal(req["input"])
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestAReplyContinuesTheConversationAfterARestart: a task with the real
// Codex, then a reply to it from a server started afresh on the same data
// directory. The model server receives the earlier conversation in the
// reply's request, and the reply says what ran.
func TestAReplyContinuesTheConversationAfterARestart(t *testing.T) {
	t.Parallel()
	model := imagestest.StartModelServer(t, imagestest.Engine(t), imagestest.Turn{Message: "Noted: the magic word is PLUM."})
	first := newHarness(t, codexConfig(t, model))
	repo := newRepo(t)
	parent, _ := first.completed(t, Spec{Prompt: "remember the magic word PLUM", WorkingDirectory: repo, Sandbox: WorkspaceWrite, Model: "gpt-5-codex", Timeout: time.Minute})
	first.stop()

	// A server that starts now: nothing of the first is in memory.
	model.SetTurns(imagestest.Turn{Message: "The magic word was PLUM."})
	second := newHarness(t, func(c *Config) {
		codexConfig(t, model)(c)
		c.Home = first.home
	})
	reply, log := second.completed(t, Spec{Parent: parent.ID, Prompt: "which magic word did I give you?", Effort: "high", Timeout: time.Minute})
	reqs := model.Requests()
	last := requestText(t, reqs[len(reqs)-1])
	for _, want := range []string{"remember the magic word PLUM", "Noted: the magic word is PLUM.", "which magic word did I give you?"} {
		if !strings.Contains(last, want) {
			t.Errorf("the reply's request lacks %q:\n%s", want, last)
		}
	}
	if reply.Parent != parent.ID || reply.WorkingDirectory != parent.WorkingDirectory || reply.Sandbox != parent.Sandbox ||
		reply.ResumeThread != parent.Summary.ThreadID || reply.Model != "gpt-5-codex" {
		t.Errorf("reply record: parent %q, dir %q, sandbox %q, thread %q, model %q", reply.Parent, reply.WorkingDirectory, reply.Sandbox, reply.ResumeThread, reply.Model)
	}
	if got := readFile(t, second.ResultPath(reply.ID)); got != "The magic word was PLUM." {
		t.Errorf("result %q, log:\n%s", got, log)
	}
	t.Run("the record says what ran: the effort asked for, the defaults otherwise", func(t *testing.T) {
		if r := reply.Ran; r == nil || r.CodexVersion != "0.169.0" || r.Model != "gpt-5-codex" || r.Effort != "high" || r.Provider != "mock" {
			t.Errorf("reply ran %+v", reply.Ran)
		}
		// No effort asked: what applied is what Codex sent the model, here
		// none (the scripted model is not one Codex knows a default for).
		sent, _ := reqs[0]["reasoning"].(map[string]any)
		if r := parent.Ran; r == nil || r.Model != "gpt-5-codex" || r.Effort != fmtEffort(sent["effort"]) {
			t.Errorf("parent ran %+v; the model was asked with reasoning %v", parent.Ran, reqs[0]["reasoning"])
		}
		if eff, _ := reqs[len(reqs)-1]["reasoning"].(map[string]any); eff["effort"] != "high" {
			t.Errorf("the model was asked with reasoning %v", reqs[len(reqs)-1]["reasoning"])
		}
	})
}

// TestTwoRepliesToOneTaskEachContinueFromTheSamePoint: each reply gets its
// own copy of the task's Codex state, so neither sees the other.
func TestTwoRepliesToOneTaskEachContinueFromTheSamePoint(t *testing.T) {
	t.Parallel()
	model := imagestest.StartModelServer(t, imagestest.Engine(t), imagestest.Turn{Message: "first answer"})
	h := newHarness(t, codexConfig(t, model))
	parent, _ := h.completed(t, Spec{Prompt: "the first message", WorkingDirectory: newRepo(t), Sandbox: ReadOnly, Model: "gpt-5-codex", Timeout: time.Minute})
	ask := func(prompt string) string {
		model.SetTurns(imagestest.Turn{Message: "answer to " + prompt})
		n := len(model.Requests())
		h.completed(t, Spec{Parent: parent.ID, Prompt: prompt, Timeout: time.Minute})
		reqs := model.Requests()
		if len(reqs) != n+1 {
			t.Fatalf("%d requests for one reply", len(reqs)-n)
		}
		return requestText(t, reqs[n])
	}
	alpha := ask("alpha follow-up")
	beta := ask("beta follow-up")
	if !strings.Contains(alpha, "the first message") || !strings.Contains(beta, "the first message") {
		t.Fatalf("a reply lacks the earlier conversation:\nalpha: %s\nbeta: %s", alpha, beta)
	}
	if strings.Contains(beta, "alpha follow-up") || strings.Contains(beta, "answer to alpha") {
		t.Fatalf("the second reply saw the first:\n%s", beta)
	}
}

// TestARunningOrGoneTaskIsNotRepliedTo: a reply to a task that has not
// ended, to one whose state was removed, or whose record was pruned, is
// refused with what to do; a task whose reply waits keeps its state.
func TestARunningOrGoneTaskIsNotRepliedTo(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.MaxRunning = 1 })
	repo := newRepo(t)
	ended := h.startAndWait(t, Spec{Prompt: "say done", WorkingDirectory: repo})
	sessions := imagestest.FakeSession(t, h.stateDir(ended.ID), ended.Summary.ThreadID)
	// It holds the one slot, so that a reply stays queued.
	running, err := h.Start(context.Background(), Spec{Prompt: "sleep 60s", WorkingDirectory: repo})
	if err != nil {
		t.Fatal(err)
	}
	h.waitStatus(t, running.ID, store.Running)
	// Codex began its session: the cancel below ends a task that has one.
	for deadline := time.Now().Add(time.Minute); !strings.Contains(readLog(h.LogPath(running.ID)), "thread.started"); {
		if time.Now().After(deadline) {
			t.Fatal("the task never started its session")
		}
		time.Sleep(50 * time.Millisecond)
	}
	_, err = h.Start(context.Background(), Spec{Parent: running.ID, Prompt: "and then?"})
	if !errors.Is(err, ErrInvalidTask) || !strings.Contains(err.Error(), "is still running") || !strings.Contains(err.Error(), "waitSeconds") {
		t.Fatalf("reply to a running task: %v", err)
	}
	t.Run("retention keeps the state of a task whose reply waits", func(t *testing.T) {
		reply, err := h.Start(context.Background(), Spec{Parent: ended.ID, Prompt: "say again"})
		if err != nil || reply.Status != store.Queued {
			t.Fatalf("reply: %v, %v", reply, err)
		}
		if n, err := h.Prune(time.Now().Add(time.Hour)); err != nil || n != 0 {
			t.Fatalf("pruned %d, %v", n, err)
		}
		if _, err := os.Stat(sessions); err != nil {
			t.Fatalf("the state of a task with a waiting reply was pruned: %v", err)
		}
		// The reply holds its own copy of the session from its acceptance.
		if f, err := h.findSession(context.Background(), reply.ID, ended.Summary.ThreadID); err != nil || reply.ResumeFrom != int64(len(imagestest.FakeSessionText)) {
			t.Fatalf("the reply's copy: %q, %v, from %d", f, err, reply.ResumeFrom)
		}
		for _, id := range []string{reply.ID, running.ID} {
			if _, err := h.Cancel(context.Background(), id); err != nil {
				t.Fatal(err)
			}
		}
	})
	t.Run("a cancelled task can be replied to", func(t *testing.T) {
		cancelled, err := h.Get(running.ID)
		if err != nil || cancelled.Status != store.Cancelled || cancelled.Summary == nil {
			t.Fatalf("%+v, %v", cancelled, err)
		}
		imagestest.FakeSession(t, h.stateDir(cancelled.ID), cancelled.Summary.ThreadID)
		reply := h.startAndWait(t, Spec{Parent: cancelled.ID, Prompt: "say resumed"})
		if reply.Status != store.Completed || reply.Result != "resumed" || reply.Parent != cancelled.ID {
			t.Fatalf("reply %s %q %q", reply.Status, reply.Result, reply.Error)
		}
	})
	t.Run("whose state is gone", func(t *testing.T) {
		if err := os.RemoveAll(sessions); err != nil {
			t.Fatal(err)
		}
		_, err := h.Start(context.Background(), Spec{Parent: ended.ID, Prompt: "and then?"})
		if !errors.Is(err, ErrInvalidTask) || !strings.Contains(err.Error(), "session of task "+ended.ID+" is gone") || !strings.Contains(err.Error(), "codex_agent") {
			t.Fatalf("reply to a task without state: %v", err)
		}
	})
	t.Run("whose record was pruned", func(t *testing.T) {
		if _, err := h.Prune(time.Now().Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
		_, err := h.Start(context.Background(), Spec{Parent: ended.ID, Prompt: "and then?"})
		if !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("reply to a pruned task: %v", err)
		}
	})
	t.Run("an effort Codex does not take", func(t *testing.T) {
		_, err := h.Start(context.Background(), Spec{Prompt: "say hi", WorkingDirectory: repo, Effort: "maximal"})
		if !errors.Is(err, ErrInvalidTask) || !strings.Contains(err.Error(), "none, minimal, low, medium, high, xhigh") {
			t.Fatalf("effort: %v", err)
		}
	})
}

func fmtEffort(v any) string {
	if s, ok := v.(string); ok {
		return s
	}
	return ""
}

// TestAReplyDoesNotObeyWhatTheEarlierTaskPlanted: the earlier task (its
// code is the attacker's) writes a config.toml with an MCP server that
// runs a command, a .env, a named pipe and a symlink into its Codex home.
// Codex would run that command at its start (the control shows it); the
// reply does not, and carries none of it.
func TestAReplyDoesNotObeyWhatTheEarlierTaskPlanted(t *testing.T) {
	t.Parallel()
	repo := newRepo(t)
	marker := filepath.Join(repo, "planted-mcp-ran")
	plant := "printf '[mcp_servers.planted]\\ncommand = \"sh\"\\nargs = [\"-c\", \"echo planted > " + marker + "\"]\\n' > \"$CODEX_HOME/config.toml\"; " +
		"printf 'PLANTED_ENV=planted-env-value\\n' > \"$CODEX_HOME/.env\"; " +
		"mkfifo \"$CODEX_HOME/sessions/fifo\"; ln -s /etc/shadow \"$CODEX_HOME/sessions/link\"; echo planted-all"
	model := imagestest.StartModelServer(t, imagestest.Engine(t), imagestest.Turn{Command: plant}, imagestest.Turn{Message: "planted"})
	h := newHarness(t, codexConfig(t, model))
	parent, _ := h.completed(t, Spec{Prompt: "plant", WorkingDirectory: repo, Sandbox: WorkspaceWrite, Model: "gpt-5-codex", Timeout: time.Minute})
	if out := modelSaw(model); !strings.Contains(out, "planted-all") {
		t.Fatalf("the planting never ran:\n%s", out)
	}
	home := filepath.Join(h.stateDir(parent.ID), "codex-home")
	t.Run("control: Codex started on that home runs the planted command", func(t *testing.T) {
		out, _ := exec.Command("docker", "run", "--rm", "--network", "none", "--user", fmt.Sprintf("%d:%d", testUID, testGID),
			"-e", "CODEX_HOME=/h", "-e", "HOME=/tmp", "-v", home+":/h", "-v", repo+":"+repo, imagestest.Codex(t),
			"timeout", "20", "codex", "exec", "--skip-git-repo-check", "--dangerously-bypass-approvals-and-sandbox", "-C", repo, "hi").CombinedOutput()
		if _, err := os.Stat(marker); err != nil {
			t.Fatalf("the planted MCP server did not run in the control: %v\n%s", err, out)
		}
		if err := os.Remove(marker); err != nil {
			t.Fatal(err)
		}
	})
	model.SetTurns(imagestest.Turn{Command: `echo "env=[$PLANTED_ENV]"`}, imagestest.Turn{Message: "done"})
	reply, log := h.completed(t, Spec{Parent: parent.ID, Prompt: "go on", Timeout: time.Minute})
	if _, err := os.Stat(marker); err == nil {
		t.Fatalf("the reply ran the planted MCP server; log:\n%s", log)
	}
	if out := modelSaw(model); !strings.Contains(out, "env=[]") {
		t.Fatalf("the planted .env reached the reply's commands (or the command never ran):\n%s", out)
	}
	for _, name := range []string{"config.toml", ".env", "sessions/fifo", "sessions/link"} {
		if _, err := os.Lstat(filepath.Join(h.stateDir(reply.ID), "codex-home", name)); err == nil {
			t.Errorf("the reply's state has the earlier task's %s", name)
		}
	}
}

// TestAPlantedSessionFileIsNeverFollowed: the earlier task, from inside its
// container, puts a symlink to a host file, or a named pipe, where its
// session file belongs. The server neither follows the one nor hangs on
// the other: the task ends, and a reply is refused with what to do.
func TestAPlantedSessionFileIsNeverFollowed(t *testing.T) {
	h := newHarness(t, nil)
	secret := filepath.Join(t.TempDir(), "host-secret")
	needle := "host-secret-" + strings.Repeat("5", 12)
	hostfstest.Must(t, os.WriteFile(secret, []byte(needle+"\n"), 0o644))
	thread := "00000000-0000-4000-8000-000000000001" // the fake Codex's
	day := codexHome + "/sessions/2026/12/04"
	rollout := day + "/rollout-2026-12-04T10-00-00-" + thread + ".jsonl"
	for name, plant := range map[string]string{"a symlink to a host file": "symlink " + secret + " " + rollout, "a named pipe": "mkfifo " + rollout} {
		t.Run(name, func(t *testing.T) {
			var steps []string
			for _, d := range []string{codexHome + "/sessions", codexHome + "/sessions/2026", codexHome + "/sessions/2026/12", day} {
				steps = append(steps, "mkdir "+d+" 700")
			}
			steps = append(steps, plant, "say planted")
			parent := h.startAndWait(t, Spec{Prompt: strings.Join(steps, "; "), WorkingDirectory: newRepo(t), Sandbox: WorkspaceWrite})
			if parent.Status != store.Completed || parent.Summary == nil {
				t.Fatalf("the planting task: %s %q", parent.Status, parent.Error)
			}
			// The hostile step ran: the fake reports it with exit 0.
			planted := false
			for _, c := range parent.Summary.Commands {
				planted = planted || strings.HasPrefix(plant, strings.Fields(c.Command)[0]) && c.ExitCode != nil && *c.ExitCode == 0
			}
			if !planted {
				t.Fatalf("the plant did not run: %+v", parent.Summary.Commands)
			}
			_, err := h.Start(context.Background(), Spec{Parent: parent.ID, Prompt: "go on"})
			if !errors.Is(err, ErrInvalidTask) || !strings.Contains(err.Error(), "is gone") {
				t.Fatalf("reply: %v", err)
			}
			if parent.Ran != nil && parent.Ran.Provider != "" || strings.Contains(fmt.Sprint(parent), needle) {
				t.Fatalf("the parent's record read the planted file: %+v", parent.Ran)
			}
			tasks, _, err := h.List(store.Filter{})
			hostfstest.Must(t, err)
			for _, tk := range tasks {
				if tk.Parent == parent.ID {
					t.Fatalf("a reply was recorded: %s", tk.ID)
				}
			}
		})
	}
}

// allocated is what a file takes on disk.
func allocated(t *testing.T, path string) int64 {
	t.Helper()
	var st syscall.Stat_t
	hostfstest.Must(t, syscall.Stat(path, &st))
	return st.Blocks * 512
}

// A session copied for a reply keeps its holes: the copy takes on disk
// what the file holds, not what it claims, byte for byte the same, and the
// data it may hold is capped.
func TestASparseFileIsCopiedSparse(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	f, err := os.Create(src)
	hostfstest.Must(t, err)
	const size = 64 << 20
	head, tail := []byte(`{"type":"session_meta"}`+"\n"), []byte(`{"type":"turn"}`+"\n")
	_, err = f.WriteAt(head, 0)
	hostfstest.Must(t, err)
	_, err = f.WriteAt(make([]byte, 1<<20), 8<<20) // zeros written out: data to the file system
	hostfstest.Must(t, err)
	_, err = f.WriteAt(tail, size-int64(len(tail)))
	hostfstest.Must(t, err)
	hostfstest.Must(t, f.Close())
	copyOf := func(limit int64) (string, int64, error) {
		in, err := os.Open(src)
		hostfstest.Must(t, err)
		defer in.Close()
		dst := filepath.Join(t.TempDir(), "dst")
		out, err := os.Create(dst)
		hostfstest.Must(t, err)
		defer out.Close()
		n, err := hostfs.CopySparse(out, in, size, limit)
		return dst, n, err
	}
	dst, n, err := copyOf(1 << 20)
	if err != nil {
		t.Fatal(err)
	}
	a, b := readFile(t, src), readFile(t, dst)
	if a != b {
		t.Fatalf("the copy differs: %d bytes, want %d", len(b), len(a))
	}
	if got := allocated(t, dst); got > 1<<20 || n > 1<<20 {
		t.Fatalf("the copy of %d MiB with %d bytes of data takes %d bytes on disk (%d written)", size>>20, len(head)+len(tail), got, n)
	}
	t.Run("past its limit of data it stops", func(t *testing.T) {
		if _, _, err := copyOf(int64(len(head))); !errors.Is(err, hostfs.ErrTooMuchData) {
			t.Fatalf("got %v", err)
		}
	})
}

// The earlier task (its code is the attacker's) makes its session file a
// 300 MiB sparse file from inside its container. A reply to it is accepted
// with a copy that takes on disk what the file holds, not 300 MiB.
func TestASparseSessionIsCopiedSparseForAReply(t *testing.T) {
	h := newHarness(t, nil)
	thread := "00000000-0000-4000-8000-000000000001" // the fake Codex's
	day := codexHome + "/sessions/2026/12/04"
	rollout := day + "/rollout-2026-12-04T10-00-00-" + thread + ".jsonl"
	var steps []string
	for _, d := range []string{codexHome + "/sessions", codexHome + "/sessions/2026", codexHome + "/sessions/2026/12", day} {
		steps = append(steps, "mkdir "+d+" 700")
	}
	const size = 300 << 20
	steps = append(steps, fmt.Sprintf("sparse %s %d", rollout, size), "append "+rollout+` {"type":"turn"}`, "say planted")
	parent := h.startAndWait(t, Spec{Prompt: strings.Join(steps, "; "), WorkingDirectory: newRepo(t), Sandbox: WorkspaceWrite})
	ran(t, parent, "sparse "+rollout)
	planted := filepath.Join(h.stateDir(parent.ID), strings.TrimPrefix(rollout, stateMount+"/"))
	if fi, err := os.Stat(planted); err != nil || fi.Size() <= size {
		t.Fatalf("the sparse session on the host: %v, %v", fi, err)
	}
	reply, err := h.Start(context.Background(), Spec{Parent: parent.ID, Prompt: "say resumed"})
	if err != nil {
		t.Fatalf("reply: %v", err)
	}
	file, err := h.findSession(context.Background(), reply.ID, thread)
	hostfstest.Must(t, err)
	copied := filepath.Join(h.stateDir(reply.ID), file)
	fi, err := os.Stat(copied)
	hostfstest.Must(t, err)
	if fi.Size() != reply.ResumeFrom || fi.Size() <= size {
		t.Errorf("the copy is %d bytes, resumed from %d", fi.Size(), reply.ResumeFrom)
	}
	if got := allocated(t, copied); got > 1<<20 {
		t.Errorf("the reply's copy of a %d MiB sparse session takes %d bytes on disk", size>>20, got)
	}
	if ended := h.waitFinal(t, reply.ID); ended.Status != store.Completed {
		t.Errorf("the reply: %s %q", ended.Status, ended.Error)
	}
}

// BenchmarkCopySession copies a 300 MiB sparse session holding 1 MiB of
// data, as a reply does, beside the full copy it replaced (io.CopyN, which
// writes the holes out as zeros).
func BenchmarkCopySession(b *testing.B) {
	src := filepath.Join(b.TempDir(), "session")
	f, err := os.Create(src)
	if err != nil {
		b.Fatal(err)
	}
	const size = 300 << 20
	line := []byte(strings.Repeat("x", 1023) + "\n")
	for off := int64(0); off < 1<<20; off += int64(len(line)) {
		if _, err := f.WriteAt(line, off); err != nil {
			b.Fatal(err)
		}
	}
	if err := f.Truncate(size); err != nil {
		b.Fatal(err)
	}
	f.Close()
	for _, c := range []struct {
		name string
		copy func(out, in *os.File) error
	}{
		{"sparse", func(out, in *os.File) error { _, err := hostfs.CopySparse(out, in, size, 1<<30); return err }},
		{"full copy (before)", func(out, in *os.File) error { _, err := io.CopyN(out, in, size); return err }},
	} {
		b.Run(c.name, func(b *testing.B) {
			dir := b.TempDir()
			var disk int64
			for i := 0; b.Loop(); i++ {
				in, err := os.Open(src)
				if err != nil {
					b.Fatal(err)
				}
				dst := filepath.Join(dir, strconv.Itoa(i))
				out, err := os.Create(dst)
				if err != nil {
					b.Fatal(err)
				}
				if err := c.copy(out, in); err != nil {
					b.Fatal(err)
				}
				out.Close()
				in.Close()
				var st syscall.Stat_t
				if err := syscall.Stat(dst, &st); err != nil {
					b.Fatal(err)
				}
				disk = st.Blocks * 512
				os.Remove(dst)
			}
			b.ReportMetric(float64(disk)/(1<<20), "MiB-on-disk")
		})
	}
}
