package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/codex-connector/codex-connector/images/imagestest"
	"github.com/codex-connector/codex-connector/runner"
	sdk "github.com/modelcontextprotocol/go-sdk/mcp"
)

// These tests build the real binary and drive it over stdio with the
// official MCP Go SDK: an independent client, as Claude Code is.

// binary is codex-connector built as `make build` builds it: static,
// because the same binary runs the egress proxy and the bridge.
func binary(t *testing.T) string { return imagestest.StaticBinary(t) }

type mcpServer struct {
	session  *sdk.ClientSession
	cmd      *exec.Cmd
	killed   bool
	home     string
	mu       sync.Mutex
	progress []*sdk.ProgressNotificationParams
	// stderr is what the server logged so far.
	stderr     strings.Builder
	stderrMore chan struct{} // closed and replaced on each write
}

// waitLogged waits until the server has logged a line that holds every one
// of parts, and returns it.
func (s *mcpServer) waitLogged(t *testing.T, parts ...string) string {
	t.Helper()
	timeout := time.After(time.Minute)
	for {
		s.mu.Lock()
		logged, more := s.stderr.String(), s.stderrMore
		s.mu.Unlock()
	lines:
		for _, line := range strings.Split(logged, "\n") {
			for _, p := range parts {
				if !strings.Contains(line, p) {
					continue lines
				}
			}
			return line
		}
		select {
		case <-more:
		case <-timeout:
			t.Fatalf("the server never logged a line with %q", parts)
		}
	}
}

// serverLog feeds what the server writes to stderr to the test's log and
// to waitLogged.
type serverLog struct {
	t *testing.T
	s *mcpServer
}

func (w serverLog) Write(p []byte) (int, error) {
	w.s.mu.Lock()
	w.s.stderr.Write(p)
	close(w.s.stderrMore)
	w.s.stderrMore = make(chan struct{})
	w.s.mu.Unlock()
	return testWriter{w.t}.Write(p)
}

// startServer runs codex-connector with a fresh data directory and the fake
// Codex image; env adds or overrides variables.
func startServer(t *testing.T, env ...string) *mcpServer {
	return startServerAt(t, t.TempDir(), env...)
}

// startServerAt runs codex-connector on the data directory home, with the
// fake Codex image of the shared engine.
func startServerAt(t *testing.T, home string, env ...string) *mcpServer {
	t.Helper()
	return startServerImage(t, home, imagestest.FakeCodex(t), env...)
}

// startServerImage runs codex-connector on the data directory home, with
// ref as the Codex image. It asks nothing of the shared engine: a server
// on a test's own engine starts while the shared one is busy or away.
func startServerImage(t *testing.T, home, ref string, env ...string) *mcpServer {
	t.Helper()
	s := &mcpServer{home: home, stderrMore: make(chan struct{})}
	cmd := exec.Command(binary(t))
	cmd.Env = append(os.Environ(), "CODEX_CONNECTOR_HOME="+s.home, "CODEX_CONNECTOR_IMAGE="+ref, "CODEX_CONNECTOR_STOP_GRACE=1s",
		"CODEX_CONNECTOR_ALLOWED_ROOTS="+os.TempDir())
	cmd.Env = append(cmd.Env, env...)
	cmd.Stderr = serverLog{t, s}
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s.cmd = cmd
	client := sdk.NewClient(&sdk.Implementation{Name: "test", Version: "1"}, &sdk.ClientOptions{
		ProgressNotificationHandler: func(_ context.Context, req *sdk.ProgressNotificationClientRequest) {
			s.mu.Lock()
			defer s.mu.Unlock()
			s.progress = append(s.progress, req.Params)
		},
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	session, err := client.Connect(ctx, &sdk.IOTransport{Reader: stdout, Writer: stdin}, nil)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	s.session = session
	t.Cleanup(func() {
		// The proxy outlives servers by design; a test's home goes away.
		defer exec.Command("docker", "rm", "-f", runner.ProxyName(s.home)).Run()
		// So do task containers of a killed server that no other server
		// finished (a failed test's).
		defer removeHomeContainers(s.home)
		// And the detached follower of the home, which would otherwise
		// follow what the test left to its end, in a home about to go.
		defer killHomeProcesses(s.home)
		if s.killed {
			return
		}
		// Stop what the test left running, then the server.
		res, err := session.CallTool(context.Background(), &sdk.CallToolParams{Name: "codex_tasks", Arguments: map[string]any{"status": "running", "limit": 200}})
		if err == nil {
			for _, task := range structured(t, res)["tasks"].([]any) {
				s.call(t, "codex_cancel", map[string]any{"taskId": task.(map[string]any)["taskId"]})
			}
		}
		session.Close()
		cmd.Wait()
	})
	return s
}

// kill ends the server with SIGKILL, as a crash would.
func (s *mcpServer) kill(t *testing.T) {
	t.Helper()
	s.killed = true
	s.cmd.Process.Kill()
	s.cmd.Wait()
	s.session.Close()
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Logf("server: %s", strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// call calls a tool and returns its result; a JSON-RPC error fails the test,
// because every problem a caller can fix must come back as a tool result.
func (s *mcpServer) call(t *testing.T, tool string, args map[string]any) *sdk.CallToolResult {
	t.Helper()
	return s.callMeta(t, tool, args, nil)
}

func (s *mcpServer) callMeta(t *testing.T, tool string, args map[string]any, meta sdk.Meta) *sdk.CallToolResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	res, err := s.session.CallTool(ctx, &sdk.CallToolParams{Name: tool, Arguments: args, Meta: meta})
	if err != nil {
		t.Fatalf("%s(%v): protocol error %v", tool, args, err)
	}
	return res
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

func structured(t *testing.T, res *sdk.CallToolResult) map[string]any {
	t.Helper()
	data, err := json.Marshal(res.StructuredContent)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(data, &m); err != nil || m == nil {
		t.Fatalf("no structured content: %s (text: %s)", data, text(res))
	}
	return m
}

// waitFor polls codex_status until the task reaches a final status.
func (s *mcpServer) waitFor(t *testing.T, id string) map[string]any {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for time.Now().Before(deadline) {
		res := s.call(t, "codex_status", map[string]any{"taskId": id})
		st := structured(t, res)
		switch st["status"] {
		case "completed", "failed", "cancelled", "timed_out":
			return st
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("task %s never finished", id)
	return nil
}

func TestToolsMatchTheBrief(t *testing.T) {
	s := startServer(t)
	res, err := s.session.ListTools(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	tools := map[string]*sdk.Tool{}
	for _, tool := range res.Tools {
		tools[tool.Name] = tool
	}
	type param struct {
		typ      string
		required bool
		enum     []string // must contain these
		def      any
	}
	want := map[string]map[string]param{
		"codex_agent": {
			"task":             {typ: "string", required: true},
			"workingDirectory": {typ: "string", required: true},
			"sandbox":          {typ: "string", enum: []string{"read-only", "workspace-write", "danger-full-access"}, def: "danger-full-access"},
			"model":            {typ: "string"},
			"async":            {typ: "boolean"},
			"timeoutMs":        {typ: "number", def: 0.0},
			"reasoningEffort":  {typ: "string", enum: []string{"minimal", "low", "medium", "high", "xhigh"}},
			"workspace":        {typ: "string", enum: []string{"shared", "branch"}},
			"base":             {typ: "string"},
		},
		"codex_status": {"taskId": {typ: "string", required: true}, "tailLines": {typ: "number", def: 50.0}, "waitSeconds": {typ: "number", def: 0.0}},
		"codex_review": {
			"workingDirectory": {typ: "string", required: true},
			"base":             {typ: "string"},
			"focus":            {typ: "string"},
			"model":            {typ: "string"},
			"reasoningEffort":  {typ: "string", enum: []string{"high"}},
			"async":            {typ: "boolean"},
			"taskId":           {typ: "string"},
		},
		"codex_reply": {
			"taskId":          {typ: "string", required: true},
			"task":            {typ: "string", required: true},
			"model":           {typ: "string"},
			"reasoningEffort": {typ: "string", enum: []string{"low", "high"}},
			"async":           {typ: "boolean"},
			"timeoutMs":       {typ: "number", def: 0.0},
		},
		"codex_tasks":   {"status": {typ: "string", enum: []string{"all", "running", "completed", "failed"}}, "limit": {typ: "number", def: 20.0}},
		"codex_cancel":  {"taskId": {typ: "string", required: true}},
		"codex_diff":    {"taskId": {typ: "string", required: true}, "paths": {typ: "array"}, "stat": {typ: "boolean"}},
		"codex_apply":   {"taskId": {typ: "string", required: true}},
		"codex_discard": {"taskId": {typ: "string", required: true}},
	}
	annotations := map[string][3]bool{ // readOnly, destructive, idempotent
		"codex_agent":   {false, true, false},
		"codex_status":  {true, false, true},
		"codex_tasks":   {true, false, true},
		"codex_cancel":  {false, true, true},
		"codex_reply":   {false, true, false},
		"codex_review":  {true, false, false}, // read-only in effect: it changes nothing
		"codex_diff":    {true, false, true},
		"codex_apply":   {false, false, true},
		"codex_discard": {false, true, true},
	}
	for name, params := range want {
		t.Run(name, func(t *testing.T) {
			tool := tools[name]
			if tool == nil {
				t.Fatalf("tool %s missing", name)
			}
			var schema struct {
				Properties map[string]struct {
					Type    string `json:"type"`
					Enum    []string
					Default any `json:"default"`
				} `json:"properties"`
				Required []string `json:"required"`
			}
			data, _ := json.Marshal(tool.InputSchema)
			if err := json.Unmarshal(data, &schema); err != nil {
				t.Fatal(err)
			}
			for pname, p := range params {
				got, ok := schema.Properties[pname]
				if !ok {
					t.Errorf("parameter %s missing", pname)
					continue
				}
				if got.Type != p.typ {
					t.Errorf("%s type %s, want %s", pname, got.Type, p.typ)
				}
				isReq := false
				for _, r := range schema.Required {
					isReq = isReq || r == pname
				}
				if isReq != p.required {
					t.Errorf("%s required=%v, want %v", pname, isReq, p.required)
				}
				for _, e := range p.enum {
					if !strings.Contains(strings.Join(got.Enum, ","), e) {
						t.Errorf("%s enum %v lacks %s", pname, got.Enum, e)
					}
				}
				if p.def != nil && got.Default != p.def {
					t.Errorf("%s default %v, want %v", pname, got.Default, p.def)
				}
			}
			a := tool.Annotations
			want := annotations[name]
			if a == nil || a.ReadOnlyHint != want[0] || a.DestructiveHint == nil || *a.DestructiveHint != want[1] || a.IdempotentHint != want[2] {
				t.Errorf("annotations %+v, want readOnly=%v destructive=%v idempotent=%v", a, want[0], want[1], want[2])
			}
			if tool.OutputSchema == nil {
				t.Error("no output schema")
			}
		})
	}
}

func TestAsyncTaskFromStartToCompleted(t *testing.T) {
	s := startServer(t)
	repo := imagestest.Repo(t)
	res := s.call(t, "codex_agent", map[string]any{"task": "write hello.txt hi there; cmd 0 go test ./...; say wrote hello.txt", "workingDirectory": repo, "sandbox": "workspace-write", "async": true})
	if res.IsError {
		t.Fatalf("start: %s", text(res))
	}
	started := structured(t, res)
	id, _ := started["taskId"].(string)
	if id == "" || !strings.Contains(started["summary"].(string), id) || started["next"] == nil {
		t.Fatalf("async start result: %v", started)
	}
	final := s.waitFor(t, id)
	if final["status"] != "completed" || final["result"] != "wrote hello.txt" {
		t.Fatalf("final: %v", final)
	}
	if got, _ := os.ReadFile(filepath.Join(repo, "hello.txt")); string(got) != "hi there\n" {
		t.Fatalf("hello.txt = %q", got)
	}
	summary := final["summary"].(string)
	for _, want := range []string{"completed", "$ write hello.txt → exit 0", "$ go test ./... → exit 0", "Files changed: hello.txt", "wrote hello.txt"} {
		if !strings.Contains(summary, want) {
			t.Errorf("summary lacks %q:\n%s", want, summary)
		}
	}
	t.Run("the log tail is rendered, not raw JSON", func(t *testing.T) {
		tail := fmt.Sprint(final["logTail"])
		if !strings.Contains(tail, "$ write hello.txt  → exit 0") || strings.Contains(tail, `"type"`) {
			t.Fatalf("tail: %s", tail)
		}
		res := s.call(t, "codex_status", map[string]any{"taskId": id, "tailLines": 2})
		if n := len(structured(t, res)["logTail"].([]any)); n != 2 {
			t.Fatalf("tailLines 2 gave %d lines", n)
		}
	})
	t.Run("the log and result are resources", func(t *testing.T) {
		log, err := s.session.ReadResource(context.Background(), &sdk.ReadResourceParams{URI: "codex://tasks/" + id + "/log"})
		if err != nil || !strings.Contains(log.Contents[0].Text, `"type":"thread.started"`) {
			t.Fatalf("log resource: %v %v", log, err)
		}
		result, err := s.session.ReadResource(context.Background(), &sdk.ReadResourceParams{URI: "codex://tasks/" + id + "/result"})
		if err != nil || result.Contents[0].Text != "wrote hello.txt" {
			t.Fatalf("result resource: %v %v", result, err)
		}
	})
}

func TestSyncTaskReportsProgressAndReturnsTheResult(t *testing.T) {
	s := startServer(t)
	repo := imagestest.Repo(t)
	res := s.callMeta(t, "codex_agent", map[string]any{"task": "cmd 0 npm test; sleep 2s; cmd 1 make lint; sleep 2s; say all checks ran", "workingDirectory": repo},
		sdk.Meta{"progressToken": "tok-1"})
	if res.IsError {
		t.Fatalf("sync call: %s", text(res))
	}
	st := structured(t, res)
	if st["status"] != "completed" || st["result"] != "all checks ran" {
		t.Fatalf("result %v", st)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.progress) < 2 {
		t.Fatalf("%d progress notifications, want at least 2", len(s.progress))
	}
	var msgs []string
	for i, p := range s.progress {
		if p.ProgressToken != "tok-1" {
			t.Errorf("progress token %v", p.ProgressToken)
		}
		if i > 0 && p.Progress <= s.progress[i-1].Progress {
			t.Errorf("progress did not increase: %v then %v", s.progress[i-1].Progress, p.Progress)
		}
		msgs = append(msgs, p.Message)
	}
	if all := strings.Join(msgs, "\n"); !strings.Contains(all, "npm test") || !strings.Contains(all, "command") {
		t.Fatalf("progress messages do not say what Codex does:\n%s", all)
	}
}

func TestFailedTaskIsAnErrorResultWithTheReason(t *testing.T) {
	s := startServer(t)
	res := s.call(t, "codex_agent", map[string]any{"task": "fail the model refused", "workingDirectory": imagestest.Repo(t)})
	if !res.IsError || !strings.Contains(text(res), "the model refused") || structured(t, res)["status"] != "failed" {
		t.Fatalf("result: isError=%v %s", res.IsError, text(res))
	}
}

func TestListFiltersAndLimits(t *testing.T) {
	s := startServer(t)
	repo := imagestest.Repo(t)
	ids := map[string]string{}
	for _, step := range []struct{ name, task string }{{"ok1", "say one"}, {"bad", "exit 3"}, {"ok2", "say two"}} {
		res := s.call(t, "codex_agent", map[string]any{"task": step.task, "workingDirectory": repo})
		ids[step.name] = structured(t, res)["taskId"].(string)
	}
	res := s.call(t, "codex_agent", map[string]any{"task": "sleep 1h", "workingDirectory": repo, "async": true})
	ids["slow"] = structured(t, res)["taskId"].(string)
	s.call(t, "codex_cancel", map[string]any{"taskId": ids["slow"]})

	list := func(args map[string]any) []string {
		res := s.call(t, "codex_tasks", args)
		if res.IsError {
			t.Fatalf("codex_tasks(%v): %s", args, text(res))
		}
		var got []string
		for _, task := range structured(t, res)["tasks"].([]any) {
			got = append(got, task.(map[string]any)["taskId"].(string))
		}
		return got
	}
	for _, tc := range []struct {
		name string
		args map[string]any
		want []string
	}{
		{"all, newest first", map[string]any{}, []string{ids["slow"], ids["ok2"], ids["bad"], ids["ok1"]}},
		{"completed", map[string]any{"status": "completed"}, []string{ids["ok2"], ids["ok1"]}},
		{"failed includes cancelled", map[string]any{"status": "failed"}, []string{ids["slow"], ids["bad"]}},
		{"cancelled exactly", map[string]any{"status": "cancelled"}, []string{ids["slow"]}},
		{"running is empty", map[string]any{"status": "running"}, nil},
		{"limit keeps the newest", map[string]any{"limit": 2}, []string{ids["slow"], ids["ok2"]}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := list(tc.args); strings.Join(got, ",") != strings.Join(tc.want, ",") {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
		})
	}
	t.Run("a cut list says so", func(t *testing.T) {
		res := s.call(t, "codex_tasks", map[string]any{"limit": 1})
		if structured(t, res)["truncated"] != true || !strings.Contains(text(res), "more tasks match") {
			t.Fatalf("%s", text(res))
		}
	})
}

func TestCancelThroughMCP(t *testing.T) {
	s := startServer(t)
	res := s.call(t, "codex_agent", map[string]any{"task": "stderr working; sleep 1h", "workingDirectory": imagestest.Repo(t), "async": true})
	id := structured(t, res)["taskId"].(string)
	waitRunning(t, s, id)
	res = s.call(t, "codex_cancel", map[string]any{"taskId": id})
	if res.IsError || structured(t, res)["status"] != "cancelled" {
		t.Fatalf("cancel: %s", text(res))
	}
	res = s.call(t, "codex_cancel", map[string]any{"taskId": id})
	if res.IsError || !strings.Contains(text(res), "already finished") {
		t.Fatalf("second cancel: isError=%v %s", res.IsError, text(res))
	}
}

func waitRunning(t *testing.T, s *mcpServer, id string) {
	t.Helper()
	for i := 0; i < 600; i++ {
		st := structured(t, s.call(t, "codex_status", map[string]any{"taskId": id, "tailLines": 0}))
		if st["status"] == "running" && st["startedAt"] != nil {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("task %s never ran", id)
}

func TestBadInputsAreToolErrorsThatSayWhatToDo(t *testing.T) {
	s := startServer(t)
	repo := imagestest.Repo(t)
	plain := t.TempDir()
	for _, tc := range []struct {
		name string
		tool string
		args map[string]any
		want string
	}{
		{"unknown task id", "codex_status", map[string]any{"taskId": "20200101-000000-abcdef"}, "list tasks"},
		{"malformed task id", "codex_cancel", map[string]any{"taskId": "../../etc"}, "task ids look like"},
		{"not a git repo", "codex_agent", map[string]any{"task": "x", "workingDirectory": plain}, "git init"},
		{"relative path", "codex_agent", map[string]any{"task": "x", "workingDirectory": "src"}, "absolute path"},
		{"bad sandbox value", "codex_agent", map[string]any{"task": "x", "workingDirectory": repo, "sandbox": "root"}, "read-only, workspace-write, danger-full-access"},
		{"negative timeout", "codex_agent", map[string]any{"task": "x", "workingDirectory": repo, "timeoutMs": -5}, "must not be negative"},
		{"empty task", "codex_agent", map[string]any{"task": "", "workingDirectory": repo}, "task is empty"},
		{"missing task", "codex_agent", map[string]any{"workingDirectory": repo}, "task is required"},
		{"wrong type", "codex_agent", map[string]any{"task": "x", "workingDirectory": repo, "async": "yes"}, "async must be true or false"},
		{"bad filter", "codex_tasks", map[string]any{"status": "done"}, "not a filter"},
		{"zero limit", "codex_tasks", map[string]any{"limit": 0}, "at least 1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := s.call(t, tc.tool, tc.args)
			if !res.IsError || !strings.Contains(text(res), tc.want) {
				t.Fatalf("isError=%v text=%q, want error with %q", res.IsError, text(res), tc.want)
			}
		})
	}
	t.Run("a level above the user's ceiling", func(t *testing.T) {
		s := startServer(t, "CODEX_CONNECTOR_MAX_SANDBOX=workspace-write")
		res := s.call(t, "codex_agent", map[string]any{"task": "x", "workingDirectory": repo, "sandbox": "danger-full-access"})
		if !res.IsError || !strings.Contains(text(res), "maxSandbox workspace-write") || !strings.Contains(text(res), "only the user can raise") {
			t.Fatalf("isError=%v %s", res.IsError, text(res))
		}
		res = s.call(t, "codex_agent", map[string]any{"task": "say ok", "workingDirectory": repo, "async": true})
		if res.IsError || structured(t, res)["sandbox"] != "workspace-write" {
			t.Fatalf("with no sandbox asked for, the default is not lowered to the ceiling: %s", text(res))
		}
		s.waitFor(t, structured(t, res)["taskId"].(string))
	})
	t.Run("missing image", func(t *testing.T) {
		s := startServer(t, "CODEX_CONNECTOR_IMAGE=codex-connector/absent:1")
		res := s.call(t, "codex_agent", map[string]any{"task": "x", "workingDirectory": repo})
		if !res.IsError || !strings.Contains(text(res), "make image") {
			t.Fatalf("isError=%v %s", res.IsError, text(res))
		}
	})
}

func TestServerExitsWhenStdinClosesAndTasksKeepRunning(t *testing.T) {
	ref := imagestest.FakeCodex(t)
	engine := imagestest.Engine(t)
	home := t.TempDir()
	cmd := exec.Command(binary(t))
	cmd.Env = append(os.Environ(), "CODEX_CONNECTOR_HOME="+home, "CODEX_CONNECTOR_IMAGE="+ref, "CODEX_CONNECTOR_ALLOWED_ROOTS="+os.TempDir())
	cmd.Stderr = testWriter{t}
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	client := sdk.NewClient(&sdk.Implementation{Name: "test", Version: "1"}, nil)
	session, err := client.Connect(context.Background(), &sdk.IOTransport{Reader: stdout, Writer: stdin}, nil)
	if err != nil {
		t.Fatal(err)
	}
	res, err := session.CallTool(context.Background(), &sdk.CallToolParams{Name: "codex_agent",
		Arguments: map[string]any{"task": "sleep 1h", "workingDirectory": imagestest.Repo(t), "async": true}})
	if err != nil || res.IsError {
		t.Fatalf("start: %v %v", err, res)
	}
	id := structured(t, res)["taskId"].(string)
	name := "codex-connector-" + id
	t.Cleanup(func() {
		killHomeProcesses(home)
		exec.Command("docker", "rm", "-f", name, runner.ProxyName(home)).Run()
	})
	for i := 0; ; i++ {
		res, err := session.CallTool(context.Background(), &sdk.CallToolParams{Name: "codex_status", Arguments: map[string]any{"taskId": id}})
		if err != nil {
			t.Fatal(err)
		}
		if st := structured(t, res); st["status"] == "running" && strings.Contains(text(res), "Now:") {
			break
		}
		if i > 600 {
			t.Fatal("task never ran")
		}
		time.Sleep(50 * time.Millisecond)
	}

	stdin.Close()
	exited := make(chan error, 1)
	start := time.Now()
	go func() { exited <- cmd.Wait() }()
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("server exit: %v", err)
		}
		t.Logf("server exited %s after stdin closed", time.Since(start))
	case <-time.After(time.Minute):
		cmd.Process.Kill()
		t.Fatal("server still running a minute after stdin closed")
	}
	for i := 0; ; i++ {
		info, err := engine.ContainerInspect(context.Background(), name)
		if err == nil && info.State.Running {
			break
		}
		if i > 100 {
			t.Fatalf("task container not running after the server exited: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// removeHomeContainers removes the task containers of a data directory.
func removeHomeContainers(home string) {
	// Task containers carry the home's label; helpers (the cache-init of a
	// process killed while it ran) its path.
	for _, label := range []string{runner.LabelHome + "=" + runner.HomeLabel(home), runner.LabelHomePath + "=" + home} {
		out, err := exec.Command("docker", "ps", "-aq", "--filter", "label="+label).Output()
		if err != nil {
			continue
		}
		if ids := strings.Fields(string(out)); len(ids) > 0 {
			exec.Command("docker", append([]string{"rm", "-f"}, ids...)...).Run()
		}
	}
}

// TestStatusWaitsForTheEnd: codex_status with waitSeconds answers as soon
// as the task ends, and when it does not end, after waitSeconds, with
// progress while it waits.
func TestStatusWaitsForTheEnd(t *testing.T) {
	s := startServer(t)
	repo := imagestest.Repo(t)
	start := func(prompt string) string {
		res := s.call(t, "codex_agent", map[string]any{"task": prompt, "workingDirectory": repo, "async": true})
		if res.IsError {
			t.Fatalf("start: %s", text(res))
		}
		return structured(t, res)["taskId"].(string)
	}
	t.Run("it answers when the task ends", func(t *testing.T) {
		id := start("sleep 2s; say done")
		began := time.Now()
		res := s.call(t, "codex_status", map[string]any{"taskId": id, "waitSeconds": 100})
		st := structured(t, res)
		if st["status"] != "completed" || time.Since(began) >= 100*time.Second {
			t.Fatalf("after %s: %v", time.Since(began), st)
		}
		if !strings.Contains(st["next"].(string), "codex_reply") {
			t.Errorf("next %q", st["next"])
		}
	})
	t.Run("it answers after waitSeconds, with progress meanwhile", func(t *testing.T) {
		id := start("sleep 60s; say done")
		s.mu.Lock()
		before := len(s.progress)
		s.mu.Unlock()
		began := time.Now()
		res := s.callMeta(t, "codex_status", map[string]any{"taskId": id, "waitSeconds": 3}, sdk.Meta{"progressToken": "wait-1"})
		st := structured(t, res)
		if st["status"] != "running" || time.Since(began) < 3*time.Second {
			t.Fatalf("after %s: %v", time.Since(began), st)
		}
		if !strings.Contains(st["next"].(string), "waitSeconds") {
			t.Errorf("next %q", st["next"])
		}
		s.mu.Lock()
		got := s.progress[before:]
		s.mu.Unlock()
		if len(got) == 0 || got[0].ProgressToken != "wait-1" {
			t.Fatalf("progress while waiting: %+v", got)
		}
		s.call(t, "codex_cancel", map[string]any{"taskId": id})
	})
	t.Run("a wait past the bound is refused", func(t *testing.T) {
		res := s.call(t, "codex_status", map[string]any{"taskId": "20261204-000000-000000", "waitSeconds": 111})
		if !res.IsError || !strings.Contains(text(res), "waitSeconds must be at most 110") {
			t.Fatalf("%s", text(res))
		}
	})
}

// TestReplyThroughMCP: a reply to an ended task names its parent and the
// chain; a reply to an unknown task is a clear tool error.
func TestReplyThroughMCP(t *testing.T) {
	s := startServer(t)
	repo := imagestest.Repo(t)
	res := s.call(t, "codex_agent", map[string]any{"task": "say first", "workingDirectory": repo, "sandbox": "read-only", "reasoningEffort": "low"})
	first := structured(t, res)
	if first["status"] != "completed" || first["reasoningEffort"] != "low" {
		t.Fatalf("first: %v", first)
	}
	// The fake Codex keeps no session; the real one keeps it here.
	imagestest.FakeSession(t, filepath.Join(s.home, "runs", first["taskId"].(string)), first["ran"].(map[string]any)["threadId"].(string))
	res = s.call(t, "codex_reply", map[string]any{"taskId": first["taskId"], "task": "say second"})
	reply := structured(t, res)
	if res.IsError || reply["status"] != "completed" || reply["parent"] != first["taskId"] || reply["sandbox"] != "read-only" ||
		reply["reasoningEffort"] != "low" || reply["result"] != "second" {
		t.Fatalf("reply: %v", reply)
	}
	if !strings.Contains(reply["summary"].(string), "Reply to: "+first["taskId"].(string)) {
		t.Errorf("summary:\n%s", reply["summary"])
	}
	res = s.call(t, "codex_reply", map[string]any{"taskId": "20261204-000000-000000", "task": "hi"})
	if !res.IsError || !strings.Contains(text(res), "no such task") {
		t.Fatalf("reply to an unknown task: %s", text(res))
	}
}
