package runner

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// feedFixture feeds a recorded real Codex stream (testdata/codex-0.169, from
// shared/fixtures) to a tracker, line by line, as the log copier would.
func feedFixture(t *testing.T, name string) *eventTracker {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", "codex-0.169", name+".stdout.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	tr := &eventTracker{}
	sink := &logSink{tracker: tr}
	sink.feed(data)
	return tr
}

func TestEventsOfARealSuccessfulRun(t *testing.T) {
	tr := feedFixture(t, "success-three-commands")
	s := tr.summary()
	want := []struct {
		cmd  string
		code int
	}{{"echo one > one.txt", 0}, {"echo two >> one.txt", 0}, {"ls -la && exit 3", 3}}
	if len(s.Commands) != len(want) {
		t.Fatalf("commands %+v", s.Commands)
	}
	for i, w := range want {
		if !strings.Contains(s.Commands[i].Command, w.cmd) || s.Commands[i].ExitCode == nil || *s.Commands[i].ExitCode != w.code {
			t.Errorf("command %d = %+v, want %q exit %d", i, s.Commands[i], w.cmd, w.code)
		}
	}
	if s.LastMessage != "Wrote one.txt; the last command failed with exit 3." {
		t.Errorf("last message %q", s.LastMessage)
	}
	if s.ThreadID != "01a21150-5ee8-7631-89b5-72569c9f78e5" {
		t.Errorf("thread %q", s.ThreadID)
	}
	// Usage is cumulative for the thread: the last report is the total (4
	// requests of 100 input tokens), not something to add up.
	if s.Usage.InputTokens != 400 || s.Usage.OutputTokens != 40 {
		t.Errorf("usage %+v", s.Usage)
	}
	if tr.failure() != "" {
		t.Errorf("failure %q in a successful run", tr.failure())
	}
	if p := tr.progress(); p.Commands != 3 || !strings.HasPrefix(p.Line, "finished") {
		t.Errorf("progress %+v", p)
	}
}

func TestEventsOfARealFailedTurn(t *testing.T) {
	for _, name := range []string{"invalid-api-key", "bad-base-url"} {
		t.Run(name, func(t *testing.T) {
			tr := feedFixture(t, name)
			if f := tr.failure(); f == "" || strings.HasPrefix(f, "Reconnecting") {
				t.Fatalf("failure %q", f)
			}
			if name == "invalid-api-key" && !strings.Contains(tr.failure(), "401 Unauthorized") {
				t.Fatalf("failure %q does not say 401", tr.failure())
			}
			if p := tr.progress(); !strings.HasPrefix(p.Line, "failed: ") {
				t.Fatalf("progress %q", p.Line)
			}
		})
	}
}

func TestEventsOfARealReconnectLoop(t *testing.T) {
	tr := feedFixture(t, "model-unreachable-10min")
	if p := tr.progress(); !strings.Contains(p.Line, "Reconnecting... waiting for network") || p.Commands != 0 {
		t.Fatalf("progress %+v", p)
	}
	if tr.failure() != "" {
		t.Fatalf("a reconnect loop is not a failed turn yet: %q", tr.failure())
	}
}

func TestUnknownEventsAreKeptAndDoNotBreakParsing(t *testing.T) {
	tr := &eventTracker{}
	sink := &logSink{tracker: tr}
	sink.feed([]byte(`{"type":"thread.started","thread_id":"t1"}
{"type":"session.configured","model":"gpt-9"}
{"type":"item.completed","item":{"id":"i1","type":"hologram","payload":[1,2,3]}}
not json at all
{"type":"item.completed","item":{"id":"i2","type":"command_execution","command":"make","exit_code":2}}
{"broken json
{"type":"turn.completed","usage":{"input_tokens":5,"output_tokens":1}}
`))
	s := tr.summary()
	if s.ThreadID != "t1" || len(s.Commands) != 1 || s.Usage.InputTokens != 5 {
		t.Fatalf("summary %+v", s)
	}
	for line, want := range map[string]string{
		`{"type":"session.configured","model":"gpt-9"}`:                  "codex event: session.configured",
		`{"type":"item.completed","item":{"id":"i1","type":"hologram"}}`: "codex: hologram",
		"not json at all": "not json at all",
		`{"type":"item.started","item":{"type":"command_execution","command":"make"}}`:                                                        "",
		`{"type":"item.completed","item":{"type":"command_execution","command":"make","exit_code":2,"aggregated_output":"a\nerror: boom\n"}}`: "$ make  → exit 2\n    error: boom",
		`{"type":"item.completed","item":{"type":"file_change","changes":[{"path":"a.go","kind":"update"}]}}`:                                 "codex: edited a.go",
	} {
		if got := RenderLine(line); got != want {
			t.Errorf("RenderLine(%s) = %q, want %q", line, got, want)
		}
	}
}

func TestLogSinkSkipsWhatTheFileHolds(t *testing.T) {
	f, err := os.Create(filepath.Join(t.TempDir(), "log"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sink := &logSink{f: f, skip: 7, tracker: &eventTracker{}}
	for _, chunk := range []string{"abc", "defg", "hij\n", "klm\n"} {
		if _, err := sink.Write([]byte(chunk)); err != nil {
			t.Fatal(err)
		}
	}
	got, _ := os.ReadFile(f.Name())
	if string(got) != "hij\nklm\n" || sink.written != 8 {
		t.Fatalf("file %q, written %d", got, sink.written)
	}
}

// The session a reply resumes is the one Codex started, printed before any
// of the task ran; a thread.started after it was printed by the task.
func TestTheFirstThreadStartedNamesTheSession(t *testing.T) {
	for _, c := range []struct{ name, stream, want string }{
		{"a later one is ignored", `{"type":"thread.started","thread_id":"codex-own"}
{"type":"turn.started"}
{"type":"thread.started","thread_id":"forged"}
`, "codex-own"},
		{"a later one does not fill a first without an id", `{"type":"thread.started","thread_id":""}
{"type":"thread.started","thread_id":"forged"}
`, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			tr := &eventTracker{}
			(&logSink{tracker: tr}).feed([]byte(c.stream))
			if got := tr.summary().ThreadID; got != c.want {
				t.Errorf("thread %q, want %q", got, c.want)
			}
		})
	}
}
