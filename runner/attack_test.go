package runner

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/codex-connector/codex-connector/internal/hostfs/hostfstest"
	"github.com/codex-connector/codex-connector/store"
)

// Attacks a hostile task makes on the host side of its state directory,
// performed for real from inside the container: each test first proves the
// hostile step ran (its exit code, and what it left on the host), then that
// its effect did not happen.

// hostSecret makes a directory only root can enter, holding a file only
// root can read, as a task's symlinks would aim at: the host's /etc/shadow.
// Its path does not exist inside a container (whose /tmp is its own).
func hostSecret(t *testing.T) (dir, file string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("this test makes a file only root can read and checks the server does not read it for a task; it needs root")
	}
	dir = filepath.Join(t.TempDir(), "root-only")
	hostfstest.Must(t, os.Mkdir(dir, 0o700))
	file = filepath.Join(dir, "last-message.txt")
	hostfstest.Must(t, os.WriteFile(file, []byte("TOP-SECRET-HOST-FILE root:$6$hash\n"), 0o600))
	return dir, file
}

// ran fails t unless the task's step exited 0.
func ran(t *testing.T, task *store.Task, step string) {
	t.Helper()
	if code, ok := exitCodes(t, task)[step]; !ok || code != 0 {
		t.Fatalf("the hostile step %q did not run (exit codes %v)", step, exitCodes(t, task))
	}
}

func lstatMode(t *testing.T, path string) os.FileMode {
	t.Helper()
	fi, err := os.Lstat(path)
	hostfstest.Must(t, err)
	return fi.Mode()
}

// notLeaked fails t if the secret is anywhere the caller of the task sees.
func notLeaked(t *testing.T, h *harness, task *store.Task) {
	t.Helper()
	result, _ := os.ReadFile(h.ResultPath(task.ID))
	record, _ := json.Marshal(task)
	for where, text := range map[string]string{"result file": string(result), "record": string(record)} {
		if strings.Contains(text, "TOP-SECRET") {
			t.Fatalf("the host secret leaked into the %s", where)
		}
	}
}

func TestTaskCannotReadHostFilesThroughItsStateDirectory(t *testing.T) {
	h := newHarness(t, nil)
	secretDir, secret := hostSecret(t)

	t.Run("a symlink as the last message", func(t *testing.T) {
		task := h.startAndWait(t, Spec{Prompt: "say innocent; symlink " + secret + " /codex-connector/out/last-message.txt", WorkingDirectory: newRepo(t)})
		ran(t, task, "symlink /codex-connector/out/last-message.txt")
		if m := lstatMode(t, filepath.Join(h.stateDir(task.ID), "out", "last-message.txt")); m&os.ModeSymlink == 0 {
			t.Fatalf("the plant is not on the host: %v", m)
		}
		notLeaked(t, h, task)
		if !strings.Contains(task.Error, "the result was refused: /codex-connector/out/last-message.txt is a symbolic link") {
			t.Fatalf("the record does not say why there is no result: %s %q", task.Status, task.Error)
		}
	})

	t.Run("the out directory replaced by a symlink", func(t *testing.T) {
		task := h.startAndWait(t, Spec{Prompt: "say innocent; rename /codex-connector/out /codex-connector/out.old; symlink " + secretDir + " /codex-connector/out", WorkingDirectory: newRepo(t)})
		ran(t, task, "rename /codex-connector/out")
		ran(t, task, "symlink /codex-connector/out")
		if m := lstatMode(t, filepath.Join(h.stateDir(task.ID), "out")); m&os.ModeSymlink == 0 {
			t.Fatalf("the plant is not on the host: %v", m)
		}
		notLeaked(t, h, task)
		if !strings.Contains(task.Error, "/codex-connector/out is a symbolic link where a directory belongs") {
			t.Fatalf("the record does not say why there is no result: %s %q", task.Status, task.Error)
		}

		t.Run("and a requeue prepares the directory without following it", func(t *testing.T) {
			// What a requeued task's launch does first, on the directory the
			// task left.
			if _, err := h.prepareStateDir(context.Background(), task); err != nil {
				t.Fatal(err)
			}
			fi, err := os.Stat(secretDir)
			hostfstest.Must(t, err)
			if st := fi.Sys().(*syscall.Stat_t); st.Uid != 0 || fi.Mode().Perm() != 0o700 {
				t.Errorf("the symlink's target was handed to uid %d, mode %v", st.Uid, fi.Mode().Perm())
			}
			if readFile(t, secret) == "" {
				t.Error("the symlink's target lost its file")
			}
			out, err := os.Lstat(filepath.Join(h.stateDir(task.ID), "out"))
			if err != nil || !out.IsDir() || out.Sys().(*syscall.Stat_t).Uid != testUID {
				t.Errorf("out is %v (%v), want a directory of the task's user", out.Mode(), err)
			}
		})
	})

	t.Run("a named pipe as the last message ends the task, not the server", func(t *testing.T) {
		task := h.startAndWait(t, Spec{Prompt: "say innocent; mkfifo /codex-connector/out/last-message.txt; kill", WorkingDirectory: newRepo(t)})
		ran(t, task, "mkfifo /codex-connector/out/last-message.txt")
		if m := lstatMode(t, filepath.Join(h.stateDir(task.ID), "out", "last-message.txt")); m&os.ModeNamedPipe == 0 {
			t.Fatalf("the plant is not on the host: %v", m)
		}
		if !task.Status.Final() || !strings.Contains(task.Error, "last-message.txt is a named pipe") {
			t.Fatalf("%s: %q", task.Status, task.Error)
		}
	})

	t.Run("the server goes on", func(t *testing.T) {
		if task := h.startAndWait(t, Spec{Prompt: "say fine", WorkingDirectory: newRepo(t)}); task.Status != store.Completed || task.Result != "fine" {
			t.Fatalf("%s: %q", task.Status, task.Error)
		}
	})
}

// What a task leaves in its state directory (locked directories, a named
// pipe, symlinks out of it) does not stop the retention: it removes the
// task, and never what a symlink points at. What cannot be removed at all
// (here a mount point) keeps that task's record, with the reason, and the
// other tasks are removed all the same.
func TestPruneCopesWithWhatTasksLeft(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.Retention = 24 * time.Hour })
	outside := hostfstest.Outside(t)
	script := strings.Join([]string{
		"mkdir /codex-connector/locked 755", "write /codex-connector/locked/f x", "mkdir /codex-connector/locked/inner 000",
		"chmod /codex-connector/locked 000", "mkfifo /codex-connector/pipe", "symlink " + outside + " /codex-connector/link",
		"symlink " + outside + "/keep /codex-connector/codex-home/keep", "say done",
	}, "; ")
	hostile := h.startAndWait(t, Spec{Prompt: script, WorkingDirectory: newRepo(t)})
	for _, step := range []string{"mkdir /codex-connector/locked", "mkdir /codex-connector/locked/inner", "chmod /codex-connector/locked", "mkfifo /codex-connector/pipe", "symlink /codex-connector/link"} {
		ran(t, hostile, step)
	}
	stuck := h.startAndWait(t, Spec{Prompt: "say stuck", WorkingDirectory: newRepo(t)})
	plain := h.startAndWait(t, Spec{Prompt: "say plain", WorkingDirectory: newRepo(t)})
	// A mount point in a task's directory: not even root removes it.
	mnt := filepath.Join(h.stateDir(stuck.ID), "codex-home", "mnt")
	hostfstest.Must(t, os.Mkdir(mnt, 0o755))
	hostfstest.Must(t, syscall.Mount(t.TempDir(), mnt, "", syscall.MS_BIND, ""))
	t.Cleanup(func() { _ = syscall.Unmount(mnt, syscall.MNT_DETACH) })
	longAgo := time.Now().Add(-48 * time.Hour)
	for _, task := range []*store.Task{hostile, stuck, plain} {
		h.backdate(t, task.ID, longAgo)
	}

	n, err := h.Prune(time.Now().Add(-24 * time.Hour))
	if n != 2 || err == nil || !strings.Contains(err.Error(), stuck.ID) {
		t.Fatalf("pruned %d, %v; want 2 and an error naming %s", n, err, stuck.ID)
	}
	for _, task := range []*store.Task{hostile, plain} {
		if _, err := h.store.Get(task.ID); err == nil || hostfstest.Exists(h.stateDir(task.ID)) || hostfstest.Exists(h.LogPath(task.ID)) {
			t.Errorf("task %s was not removed: %v", task.ID, err)
		}
	}
	hostfstest.OutsideIntact(t, outside)
	kept, err := h.store.Get(stuck.ID)
	if err != nil || !strings.Contains(kept.Error, "retention could not remove all its files") || !strings.Contains(kept.Error, "device or resource busy") {
		t.Fatalf("the task that could not be removed: %v %q", err, kept.Error)
	}

	t.Run("once it can be removed, the next prune removes it", func(t *testing.T) {
		hostfstest.Must(t, syscall.Unmount(mnt, syscall.MNT_DETACH))
		if n, err := h.Prune(time.Now().Add(-24 * time.Hour)); n != 1 || err != nil {
			t.Fatalf("pruned %d, %v", n, err)
		}
	})
}

// Fake events a task prints on the container's stdout (/proc/1/fd/1) are
// indistinguishable from Codex's own, so they may say what they like; they
// must not crash the server or grow the record past its bounds.
func TestFakeEventsOnStdoutDoNotCrashAnything(t *testing.T) {
	h := newHarness(t, nil)
	big := func(c string) string { return strings.Repeat(c, 6000) }
	events := []string{
		`{"type":"thread.started","thread_id":"` + big("t") + `"}`,
		`{"type":"item.completed","item":{"type":"file_change","changes":[{"path":"` + big("p") + `","kind":"add"}]}}`,
		`{"type":"item.completed","item":{"type":"command_execution","id":"fake","command":"` + big("c") + `","exit_code":-7}}`,
		`{"type":"item.started","item":{"type":"command_execution","id":"never-ends","command":"x"}}`,
		`{"type":"item.completed","item":null}`,
		`{"type":"item.completed","item":{"type":"` + big("y") + `"}}`,
		`{"type":"turn.completed","usage":{"input_tokens":-99999999999,"output_tokens":1e30}}`,
		`{"type":"turn.failed","error":{"message":"` + big("e") + `"}}`,
		`{"type":`, `{}`, `[1,2,3]`, `"just a string"`, `{"type":"item.completed","item":{"type":"agent_message","text":"` + big("m") + `"}}`,
	}
	var script []string
	for _, ev := range events {
		script = append(script, "rawout "+ev)
	}
	script = append(script, "say the real end")
	task := h.startAndWait(t, Spec{Prompt: strings.Join(script, "\n"), WorkingDirectory: newRepo(t)})
	ran(t, task, "rawout")
	log := readFile(t, h.LogPath(task.ID))
	if !strings.Contains(log, `"thread_id":"`+big("t")) {
		t.Fatal("the fake events are not in the log: they never reached stdout")
	}
	if task.Status != store.Completed || task.Result != "the real end" {
		t.Fatalf("%s: %q", task.Status, task.Error)
	}
	s := task.Summary
	if len(s.ThreadID) > maxText+3 || len(s.LastMessage) > maxResultInRecord+3 || s.Usage.InputTokens < 0 {
		t.Fatalf("summary fields passed their bounds: thread %d, message %d, tokens %d", len(s.ThreadID), len(s.LastMessage), s.Usage.InputTokens)
	}
	for _, p := range s.FilesChanged {
		if len(p) > maxPath+3 {
			t.Fatalf("a path of %d bytes", len(p))
		}
	}
	if n := encodedSize(task); n > h.cfg.Limits.RecordBytes {
		t.Fatalf("the record holds %d bytes, more than %d", n, h.cfg.Limits.RecordBytes)
	}
	lines, _, err := h.Tail(task.ID, 50)
	if err != nil || len(lines) == 0 {
		t.Fatalf("tail: %v", err)
	}
	for _, l := range lines {
		// A rendered line quotes at most a clipped text and a clipped last
		// line of output.
		if len(l) > 4*maxText {
			t.Fatalf("the tail gave a line of %d bytes", len(l))
		}
	}
	if again := h.startAndWait(t, Spec{Prompt: "say fine", WorkingDirectory: newRepo(t)}); again.Status != store.Completed {
		t.Fatalf("the next task: %s %q", again.Status, again.Error)
	}
}

// A task that prints a thread.started of its own, after Codex's, would
// choose the session a reply resumes (one it planted, or another task's).
// The session recorded is the one Codex started.
func TestAForgedThreadStartedDoesNotNameTheSession(t *testing.T) {
	h := newHarness(t, nil)
	const codexOwn = "00000000-0000-4000-8000-000000000001" // the fake Codex's
	const forged = "11111111-1111-4111-8111-111111111111"
	task := h.startAndWait(t, Spec{Prompt: `rawout {"type":"thread.started","thread_id":"` + forged + `"}; say forged`, WorkingDirectory: newRepo(t)})
	ran(t, task, "rawout")
	if log := readFile(t, h.LogPath(task.ID)); !strings.Contains(log, `"thread_id":"`+forged+`"`) {
		t.Fatalf("the forged event is not in the log: it never reached stdout\n%s", log)
	}
	if task.Summary == nil || task.Summary.ThreadID != codexOwn {
		t.Fatalf("the recorded session is %+v, want Codex's own %s", task.Summary, codexOwn)
	}
}
