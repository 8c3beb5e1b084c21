package runner

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/codex-connector/codex-connector/store"
)

// hugeRecord is a record as large as a damaged database or a task's fake
// events could make it.
func hugeRecord() *store.Task {
	big := strings.Repeat("é", 1<<19) // 1 MiB of two-byte runes: clips must not split them
	code := 1
	s := &store.Summary{ThreadID: big, LastMessage: big, Errors: []string{big, big}, Usage: store.Usage{InputTokens: -5}}
	for i := 0; i < 10000; i++ {
		s.FilesChanged = append(s.FilesChanged, fmt.Sprintf("%d/%s", i, big[:4096]))
		s.Commands = append(s.Commands, store.Command{Command: big[:8192], ExitCode: &code})
	}
	return &store.Task{ID: store.NewID(time.Now()), Prompt: big, WorkingDirectory: big, Error: big, StopReason: big, Result: big, Follower: big, Summary: s}
}

func TestRecordsAreHeldWithinTheirCap(t *testing.T) {
	for _, limit := range []int64{16 << 10, 64 << 10, DefaultLimits.RecordBytes} {
		t.Run(fmt.Sprint(limit), func(t *testing.T) {
			task := hugeRecord()
			fitRecord(task, limit)
			if n := encodedSize(task); n > limit {
				t.Fatalf("the record encodes to %d bytes, more than %d", n, limit)
			}
			// At the default cap clipping each field is enough; below it,
			// lists are cut too, and the record says so.
			if cut := strings.HasSuffix(task.Error, recordCut); cut != (limit < DefaultLimits.RecordBytes) {
				t.Errorf("cap %d: the error says the summary was cut: %v", limit, cut)
			}
			if task.Summary.Usage.InputTokens < 0 {
				t.Error("a negative count was kept")
			}
			data, _ := json.Marshal(task)
			if strings.ContainsRune(string(data), '\uFFFD') {
				t.Error("a clip split a rune")
			}
		})
	}
	t.Run("an ordinary record is left as it is", func(t *testing.T) {
		code := 0
		task := &store.Task{ID: store.NewID(time.Now()), Prompt: "fix the test", Result: "done",
			Summary: &store.Summary{ThreadID: "thread", Commands: []store.Command{{Command: "go test ./...", ExitCode: &code}}, FilesChanged: []string{"a.go"}}}
		before, _ := json.Marshal(task)
		fitRecord(task, DefaultLimits.RecordBytes)
		if after, _ := json.Marshal(task); string(after) != string(before) {
			t.Fatalf("changed:\n%s\n%s", before, after)
		}
	})
}

// Fake events on the container's stdout (a task writes to /proc/1/fd/1)
// are parsed like Codex's own, but never grow the summary without bound.
func TestFakeEventsAreClipped(t *testing.T) {
	tr := &eventTracker{}
	big := strings.Repeat("z", 1<<20)
	for _, ev := range []map[string]any{
		{"type": "thread.started", "thread_id": big},
		{"type": "item.completed", "item": map[string]any{"type": "file_change", "changes": []map[string]string{{"path": big, "kind": "add"}}}},
		{"type": "item.completed", "item": map[string]any{"type": "agent_message", "text": big}},
		{"type": "item.completed", "item": map[string]any{"type": "command_execution", "command": big, "exit_code": 0}},
		{"type": "item.completed", "item": map[string]any{"type": big}},
		{"type": "turn.completed", "usage": map[string]any{"input_tokens": -1 << 40, "output_tokens": 1 << 62}},
	} {
		line, _ := json.Marshal(ev)
		tr.feed(line)
	}
	s := tr.summary()
	if len(s.ThreadID) > maxText+3 || len(s.FilesChanged[0]) > maxPath+3 || len(s.LastMessage) > maxResultInRecord+3 ||
		len(s.Commands[0].Command) > maxText+3 || len(tr.progress().Line) > maxText+3 || s.Usage.InputTokens < 0 {
		t.Fatalf("a field passed its bound: thread %d, path %d, message %d, command %d, now %d, tokens %d",
			len(s.ThreadID), len(s.FilesChanged[0]), len(s.LastMessage), len(s.Commands[0].Command), len(tr.progress().Line), s.Usage.InputTokens)
	}
}

func TestATaskTextTheRecordCannotHoldIsRefused(t *testing.T) {
	r := &Runner{cfg: Config{Limits: Limits{RecordBytes: 64 << 10}.withDefaults()}}
	if err := r.checkPrompt(strings.Repeat("p", 16<<10)); err != nil {
		t.Fatalf("a quarter of the record: %v", err)
	}
	err := r.checkPrompt(strings.Repeat("p", 16<<10+1))
	if !errors.Is(err, ErrInvalidTask) || !strings.Contains(err.Error(), "limits.recordKB") {
		t.Fatalf("got %v", err)
	}
	r.cfg.Limits.RecordBytes = 4 << 20
	if err := r.checkPrompt(strings.Repeat("p", maxArg+1)); err == nil {
		t.Fatal("a task text longer than one command-line argument holds was taken")
	}
}
