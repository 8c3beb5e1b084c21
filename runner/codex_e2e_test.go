package runner

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/codex-connector/codex-connector/images/imagestest"
	"github.com/codex-connector/codex-connector/runner/egress"
	"github.com/codex-connector/codex-connector/store"
)

// TestRealCodexTaskEndToEnd runs the real Codex CLI in the real image
// against a scripted model server: Codex really runs a command in the
// container, really writes into the mounted repo, and really prints its
// event stream. Only the model is scripted.
func TestRealCodexTaskEndToEnd(t *testing.T) {
	model := imagestest.StartModelServer(t, imagestest.Engine(t),
		imagestest.Turn{Command: "echo made by codex > proof.txt && cat proof.txt"},
		imagestest.Turn{Message: "Created proof.txt with one line."},
	)
	h := newCodexHarness(t, model)
	repo := newRepo(t)
	// A hang ends as timed_out, with the log shown below.
	task := h.startAndWait(t, Spec{Prompt: "create proof.txt", WorkingDirectory: repo, Sandbox: WorkspaceWrite, Model: "gpt-5-codex", Timeout: time.Minute})
	log := readFile(t, h.LogPath(task.ID))
	if task.Status != store.Completed {
		t.Fatalf("status %s (%s), log:\n%s", task.Status, task.Error, log)
	}
	if n := len(model.Requests()); n != 2 {
		t.Fatalf("Codex made %d model requests, want 2 (command, then its output)", n)
	}
	t.Run("the model server got the real key, which the task never held", func(t *testing.T) {
		for i, h := range model.Headers() {
			if got := h.Get("Authorization"); got != "Bearer "+model.Key {
				t.Errorf("request %d: Authorization %q", i+1, got)
			}
		}
		if strings.Contains(log, model.Key) || strings.Contains(fmt.Sprint(task), model.Key) {
			t.Error("the key is in the task's log or record")
		}
	})
	t.Run("the file is in the repo, owned by the repo owner", func(t *testing.T) {
		path := filepath.Join(repo, "proof.txt")
		if got := readFile(t, path); got != "made by codex\n" {
			t.Fatalf("proof.txt = %q", got)
		}
		fi, _ := os.Stat(path)
		if st := fi.Sys().(*syscall.Stat_t); st.Uid != testUID {
			t.Fatalf("owned by %d", st.Uid)
		}
	})
	t.Run("the result is the scripted final message", func(t *testing.T) {
		if got := readFile(t, h.ResultPath(task.ID)); got != "Created proof.txt with one line." {
			t.Fatalf("result %q", got)
		}
	})
	t.Run("the log holds the real event stream and every egress decision", func(t *testing.T) {
		for _, want := range []string{`"type":"thread.started"`, `"type":"command_execution"`, `"type":"turn.completed"`,
			"codex-connector egress: POST " + egress.RoutePrefix + "mock/responses HTTP/1.1 → allowed"} {
			if !strings.Contains(log, want) {
				t.Errorf("log lacks %s", want)
			}
		}
	})
	t.Run("the summary has the command, its exit code, the file changed and the usage", func(t *testing.T) {
		s := task.Summary
		if s == nil || len(s.Commands) != 1 || !strings.Contains(s.Commands[0].Command, "echo made by codex > proof.txt") ||
			s.Commands[0].ExitCode == nil || *s.Commands[0].ExitCode != 0 || s.Usage.InputTokens != 200 ||
			len(s.FilesChanged) != 1 || s.FilesChanged[0] != "proof.txt" {
			t.Fatalf("summary %+v", s)
		}
	})
}

// The real Codex, steered by a hostile model (a prompt injection would do
// the same), replaces its out directory with a symlink to a directory only
// root can read on the host. Codex then writes its last message through the
// symlink inside the container, where that path does not exist; the server
// must not read the host's file in its place.
func TestRealCodexCannotLeakAHostFileIntoTheResult(t *testing.T) {
	secretDir, _ := hostSecret(t)
	model := imagestest.StartModelServer(t, imagestest.Engine(t),
		imagestest.Turn{Command: "mv /codex-connector/out /codex-connector/out.old && ln -s " + secretDir + " /codex-connector/out && echo planted-by-the-model"},
		imagestest.Turn{Message: "Nothing to see here."},
	)
	h := newCodexHarness(t, model)
	task := h.startAndWait(t, Spec{Prompt: "tidy up", WorkingDirectory: newRepo(t), Sandbox: WorkspaceWrite, Model: "gpt-5-codex", Timeout: time.Minute})
	log := readFile(t, h.LogPath(task.ID))
	// The hostile command ran: Codex sent its output back to the model, and
	// the symlink is on the host.
	reqs := model.Requests()
	if len(reqs) < 2 {
		t.Fatalf("Codex made %d model requests; the command never ran:\n%s", len(reqs), log)
	}
	if body, _ := json.Marshal(reqs[1]); !strings.Contains(string(body), "planted-by-the-model") {
		t.Fatalf("the command's output never reached the model:\n%s", body)
	}
	if m := lstatMode(t, filepath.Join(h.stateDir(task.ID), "out")); m&os.ModeSymlink == 0 {
		t.Fatalf("out on the host is %v, not the symlink the command made", m)
	}
	notLeaked(t, h, task)
	if !strings.Contains(task.Error, "/codex-connector/out is a symbolic link where a directory belongs") {
		t.Fatalf("the record does not say why there is no result: %s %q\n%s", task.Status, task.Error, log)
	}
	t.Logf("record: %s: %s", task.Status, task.Error)
}
