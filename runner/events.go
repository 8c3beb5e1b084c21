package runner

import (
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/codex-connector/codex-connector/store"
)

// Bounds that keep a summary small however long a task runs.
const (
	maxCommands = 50
	maxFiles    = 200
	maxErrors   = 20
	maxText     = 300
)

// event is one line of `codex exec --json`. Fields are optional because the
// schema changes between Codex versions; what is not understood is still in
// the log.
type event struct {
	Type     string      `json:"type"`
	ThreadID string      `json:"thread_id"`
	Message  string      `json:"message"`
	Item     *eventItem  `json:"item"`
	Usage    *eventUsage `json:"usage"`
	Error    *struct {
		Message string `json:"message"`
	} `json:"error"`
}

type eventItem struct {
	ID               string `json:"id"`
	Type             string `json:"type"`
	Text             string `json:"text"`
	Message          string `json:"message"`
	Command          string `json:"command"`
	AggregatedOutput string `json:"aggregated_output"`
	ExitCode         *int   `json:"exit_code"`
	Status           string `json:"status"`
	Changes          []struct {
		Path string `json:"path"`
		Kind string `json:"kind"`
	} `json:"changes"`
	Server string `json:"server"`
	Tool   string `json:"tool"`
	Query  string `json:"query"`
}

type eventUsage struct {
	InputTokens           int64 `json:"input_tokens"`
	CachedInputTokens     int64 `json:"cached_input_tokens"`
	OutputTokens          int64 `json:"output_tokens"`
	ReasoningOutputTokens int64 `json:"reasoning_output_tokens"`
}

func parseEvent(line []byte) (event, bool) {
	var ev event
	if len(line) == 0 || line[0] != '{' || json.Unmarshal(line, &ev) != nil || ev.Type == "" {
		return event{}, false
	}
	return ev, true
}

// eventTracker folds Codex's event stream into a task summary and a line
// saying what Codex is doing now. It is fed from the log copier and read by
// status and progress callers, so it locks.
type eventTracker struct {
	mu      sync.Mutex
	sum     store.Summary
	now     string // what Codex is doing, for progress
	events  int    // events seen, so progress can tell that something moved
	turnErr string
	// usage of the thread so far: Codex reports it cumulatively per thread,
	// so the latest report is the task's total, not a term to add up.
	usage store.Usage
	// lastProgress is when Codex last did something other than report an
	// error; inFlight counts commands started and not yet completed, during
	// which silence is normal (a long build prints no events).
	lastProgress time.Time
	inFlight     map[string]bool
	// resumed is set while lastProgress is the previous follower's.
	resumed bool
	// threadSeen is set by the first thread.started, even one without an
	// id: the session is Codex's first word, and only its first.
	threadSeen bool
}

// stalledFor says how long Codex has made no progress, at now; zero while a
// command runs.
func (t *eventTracker) stalledFor(now time.Time) time.Duration {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.inFlight) > 0 || t.lastProgress.IsZero() {
		return 0
	}
	return now.Sub(t.lastProgress)
}

// resumeClock sets the stall clock of an adopted run to the last progress
// its previous follower saw, so that a handover does not restart it: tasks
// change hands whenever a Claude Code window opens or closes, and a stalled
// task must still end. The next startOrResumeClock keeps it.
func (t *eventTracker) resumeClock(last time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.lastProgress, t.resumed = last, true
}

// startOrResumeClock starts the stall clock at now, for a run that begins
// (or is followed again after the engine came back), unless resumeClock set
// it for an adopted run.
func (t *eventTracker) startOrResumeClock(now time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.resumed || t.lastProgress.IsZero() {
		t.lastProgress = now
	}
	t.resumed = false
}

// progressAt is when Codex last made progress, as this process saw it.
func (t *eventTracker) progressAt() time.Time {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.lastProgress
}

// note says what the task waits for when it is not Codex.
func (t *eventTracker) note(s string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.now = s
}

// lastWord is the most recent thing Codex said, to explain a stall.
func (t *eventTracker) lastWord() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.now
}

func (t *eventTracker) feed(line []byte) {
	ev, ok := parseEvent(line)
	if !ok {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.events++
	if ev.Type != "error" {
		t.lastProgress = time.Now()
	}
	if ev.Item != nil && ev.Item.Type == "command_execution" && ev.Item.ID != "" {
		if t.inFlight == nil {
			t.inFlight = map[string]bool{}
		}
		if ev.Type == "item.started" {
			t.inFlight[ev.Item.ID] = true
		} else if ev.Type == "item.completed" {
			delete(t.inFlight, ev.Item.ID)
		}
	}
	s := &t.sum
	switch ev.Type {
	case "thread.started":
		// The first is Codex's own, printed before anything of the task
		// runs; a later one is output the task forged on the container's
		// stdout, and would point a reply at a session of its choosing.
		if !t.threadSeen {
			t.threadSeen = true
			s.ThreadID = clip(ev.ThreadID)
		}
		t.now = "starting"
	case "turn.started":
		t.now = "thinking"
	case "turn.completed":
		if ev.Usage != nil {
			t.usage = store.Usage(*ev.Usage)
			s.Usage = t.usage
			clipSummary(s) // counts a task may fake: never negative
		}
		t.now = "finished the turn"
	case "turn.failed":
		if ev.Error != nil {
			t.turnErr = ev.Error.Message
			s.Errors = appendBounded(s.Errors, clip(ev.Error.Message), maxErrors)
		}
		t.now = "failed: " + clip(t.turnErr)
	case "error":
		// Codex repeats its retry errors; keep the newest as "now" only.
		t.now = clip(ev.Message)
	case "item.started":
		if ev.Item != nil {
			t.now = describeItem(ev.Item, true)
		}
	case "item.completed":
		if ev.Item == nil {
			return
		}
		it := ev.Item
		switch it.Type {
		case "command_execution":
			s.Commands = appendBounded(s.Commands, store.Command{Command: clip(it.Command), ExitCode: it.ExitCode}, maxCommands)
		case "file_change":
			for _, c := range it.Changes {
				if p := clipN(c.Path, maxPath); !contains(s.FilesChanged, p) {
					s.FilesChanged = appendBounded(s.FilesChanged, p, maxFiles)
				}
			}
		case "agent_message":
			s.LastMessage = clipN(it.Text, maxResultInRecord)
		case "error":
			s.Errors = appendBounded(s.Errors, clip(it.Message), maxErrors)
		}
		t.now = describeItem(it, false)
	}
}

// summary returns a copy of what the stream said so far.
func (t *eventTracker) summary() store.Summary {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := t.sum
	s.Commands = append([]store.Command(nil), s.Commands...)
	s.FilesChanged = append([]string(nil), s.FilesChanged...)
	s.Errors = append([]string(nil), s.Errors...)
	return s
}

// Progress says in a short line what Codex is doing and how far it got.
type Progress struct {
	Line     string
	Events   int
	Commands int
	Files    int
}

func (t *eventTracker) progress() Progress {
	t.mu.Lock()
	defer t.mu.Unlock()
	return Progress{Line: t.now, Events: t.events, Commands: len(t.sum.Commands), Files: len(t.sum.FilesChanged)}
}

func (t *eventTracker) failure() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.turnErr
}

func describeItem(it *eventItem, started bool) string {
	switch it.Type {
	case "command_execution":
		if started {
			return "running: " + clip(it.Command)
		}
		if it.ExitCode != nil {
			return fmt.Sprintf("ran: %s (exit %d)", clip(it.Command), *it.ExitCode)
		}
		return "ran: " + clip(it.Command)
	case "file_change":
		if len(it.Changes) == 1 {
			return fmt.Sprintf("%s %s", changeVerb(it.Changes[0].Kind), clip(it.Changes[0].Path))
		}
		return fmt.Sprintf("editing %d files", len(it.Changes))
	case "agent_message":
		return "message: " + clip(firstLine(it.Text))
	case "reasoning":
		return "thinking"
	case "mcp_tool_call":
		return fmt.Sprintf("calling tool %s/%s", clip(it.Server), clip(it.Tool))
	case "web_search":
		return "searching the web: " + clip(it.Query)
	case "todo_list":
		return "planning"
	case "error":
		return "error: " + clip(it.Message)
	}
	return clip(it.Type)
}

func changeVerb(kind string) string {
	switch kind {
	case "add":
		return "created"
	case "delete":
		return "deleted"
	}
	return "edited"
}

// RenderLine turns one log line into what a reader wants to see: Codex's
// events as short sentences, other output as it is. Events that say nothing
// to a reader (a command starting, then the same command ending) return "".
func RenderLine(line string) string {
	ev, ok := parseEvent([]byte(line))
	if !ok {
		return clipN(line, 2*maxText)
	}
	switch ev.Type {
	case "thread.started":
		return "codex: session " + clip(ev.ThreadID) + " started"
	case "turn.started", "item.started", "item.updated":
		return ""
	case "turn.completed":
		if ev.Usage != nil {
			return fmt.Sprintf("codex: turn completed (tokens so far: %d in, %d out)", ev.Usage.InputTokens, ev.Usage.OutputTokens)
		}
		return "codex: turn completed"
	case "turn.failed":
		if ev.Error != nil {
			return "codex: turn failed: " + clip(ev.Error.Message)
		}
		return "codex: turn failed"
	case "error":
		return "codex error: " + clip(ev.Message)
	case "item.completed":
		if ev.Item == nil {
			return ""
		}
		it := ev.Item
		switch it.Type {
		case "command_execution":
			line := "$ " + clip(it.Command)
			if it.ExitCode != nil {
				line += fmt.Sprintf("  → exit %d", *it.ExitCode)
			}
			if out := strings.TrimSpace(it.AggregatedOutput); out != "" && it.ExitCode != nil && *it.ExitCode != 0 {
				line += "\n    " + clip(lastLine(out))
			}
			return line
		case "agent_message":
			return "codex: " + clipN(it.Text, 2*maxText)
		case "reasoning":
			return "codex (thinking): " + clip(firstLine(it.Text))
		}
		return "codex: " + describeItem(it, false)
	}
	return "codex event: " + clip(ev.Type)
}

func appendBounded[T any](s []T, v T, max int) []T {
	if len(s) >= max {
		return s
	}
	return append(s, v)
}

func contains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

func clip(s string) string { return clipN(s, maxText) }

func clipN(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := n
	for cut > 0 && !isRuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}

func isRuneStart(b byte) bool { return b&0xC0 != 0x80 }

func firstLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}

func lastLine(s string) string {
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		return s[i+1:]
	}
	return s
}

// turnFailure is the reason of a task whose turn failed, in one line: the
// model API refusing the key says so first, and what to do.
func turnFailure(code int, msg string) string {
	switch {
	case strings.Contains(msg, "401 Unauthorized"):
		return fmt.Sprintf("the model API refused the key (401): check the key codex-connector is given (`codex-connector check` says which) — codex exited with code %d: %s", code, clip(msg))
	case strings.Contains(msg, "hit your usage limit"):
		when := "later"
		if m := usageReset.FindStringSubmatch(msg); m != nil {
			when = m[1] + " (the container's clock is UTC)"
		}
		return fmt.Sprintf("%s: the usage limit of the account is reached; try again %s — codex_reply with this task's id continues it then (codex: %s)", UsageLimitReached, when, clip(msg))
	case strings.Contains(msg, "Quota exceeded"):
		return fmt.Sprintf("%s: the API key's quota is exceeded; check the plan and billing of the account, then codex_reply with this task's id continues it (codex: %s)", UsageLimitReached, clip(msg))
	case strings.Contains(msg, "does not exist or you do not have access to it"):
		return fmt.Sprintf("model not found: %s — choose another model (the model parameter, or model in codexConfig)", clip(msg))
	}
	return fmt.Sprintf("codex exited with code %d: %s", code, msg)
}

// UsageLimitReached starts the reason of a task that ended on the model
// provider's usage limit or quota: one that a codex_reply can continue.
const UsageLimitReached = "usage limit reached"

// usageReset is when Codex says a usage limit resets: "try again at 4:00
// PM" or "try again in 3 hours".
var usageReset = regexp.MustCompile(`try again ((?:at|in) [^.\n]{1,40})`)
