package mcp

import (
	"context"
	"fmt"
	"time"

	"github.com/codex-connector/codex-connector/runner"
	"github.com/codex-connector/codex-connector/store"
	"github.com/codex-connector/codex-connector/view"
	"github.com/codex-connector/codex-connector/workspace"
	mcplib "github.com/mark3labs/mcp-go/mcp"
)

// maxTimeoutMs is a week: anything longer is almost surely a unit mistake.
const maxTimeoutMs = 7 * 24 * 3600 * 1000

func agentTool() mcplib.Tool {
	return mcplib.NewTool("codex_agent",
		mcplib.WithDescription(`Spawn a Codex agent to handle a coding task in a git repository. Codex runs in its own disposable container with the repository mounted at the same path.
Without async it waits for the end and returns Codex's final message, the commands it ran and the files it changed, sending progress while it works. If this call is cancelled, only the waiting stops: the task keeps running (follow it with codex_status, stop it with codex_cancel).
With async=true it returns a taskId at once.`),
		mcplib.WithString("task", mcplib.Required(), mcplib.Description("The task or prompt to send to Codex")),
		mcplib.WithString("workingDirectory", mcplib.Required(), mcplib.Description("Working directory (must be a git repo): an absolute path; a sub-directory runs with its whole repository mounted")),
		mcplib.WithString("sandbox", mcplib.Enum(runner.SandboxLevels...), mcplib.DefaultString(runner.DefaultSandbox),
			mcplib.Description("Permission level: read-only (the repo is mounted read-only; network only to the model API), workspace-write (Codex may change the work tree but not .git, so it cannot commit: review and commit its changes yourself; network only to the model API and allowed hosts; changed files that host tools run, such as a Makefile or package.json, are listed apart for review), or danger-full-access (default: read-write repo and .git, full network). The user's maxSandbox setting caps the level: a request above it is refused, and with no sandbox given the default is lowered to it")),
		mcplib.WithString("workspace", mcplib.Enum(workspace.Kinds...),
			mcplib.Description("Where Codex works: shared (the default unless the user's config.json says otherwise: in the work tree itself, beside the user and any other task) or branch (a checkout of its own under codex-connector's data directory, made from base, with the user's uncommitted changes carried in when base is HEAD; Codex may commit there; when it ends its changes become the branch codex/<taskId> in the repository and the work tree is untouched — review with codex_diff, take them with codex_apply, drop them with codex_discard). Use branch to run several write tasks at once on one repository, or to review a task's work before it reaches the work tree. Not for read-only tasks")),
		mcplib.WithString("base", mcplib.Description("For workspace branch: the branch, tag or commit the task's checkout is made from (default HEAD, with the uncommitted changes)")),
		mcplib.WithString("model", mcplib.Description("Model override, e.g. gpt-5-codex")),
		effortParam(),
		mcplib.WithBoolean("async", mcplib.DefaultBool(false), mcplib.Description("If true, returns immediately with task ID")),
		mcplib.WithNumber("timeoutMs", mcplib.Min(0), mcplib.DefaultNumber(0), mcplib.Description("Timeout in milliseconds (0 = no timeout); counted from when the task starts running")),
		mcplib.WithOutputSchema[view.Task](),
		mcplib.WithTitleAnnotation("Run a Codex agent"),
		mcplib.WithReadOnlyHintAnnotation(false),
		mcplib.WithDestructiveHintAnnotation(true),
		mcplib.WithIdempotentHintAnnotation(false),
		mcplib.WithOpenWorldHintAnnotation(true),
	)
}

// effortParam is the reasoningEffort parameter of the tools that start a
// task.
func effortParam() mcplib.ToolOption {
	return mcplib.WithString("reasoningEffort", mcplib.Enum(runner.ReasoningEfforts...),
		mcplib.Description("How hard the model thinks (Codex's model_reasoning_effort); leave it out for the model's default. The effort that applied is in the task's ran.effort"))
}

func (h *handlers) agent(ctx context.Context, req mcplib.CallToolRequest) (*mcplib.CallToolResult, error) {
	a := argsOf(req)
	return h.start(ctx, req, a, runner.Spec{
		Prompt:           a.str("task", true),
		WorkingDirectory: a.str("workingDirectory", true),
		Sandbox:          a.str("sandbox", false),
		Workspace:        a.str("workspace", false),
		Base:             a.str("base", false),
	})
}

// start reads the parameters every tool that starts a task has (model,
// reasoningEffort, timeoutMs, async) into spec, starts the task and,
// unless async, waits for its end with progress.
func (h *handlers) start(ctx context.Context, req mcplib.CallToolRequest, a *args, spec runner.Spec) (*mcplib.CallToolResult, error) {
	spec.Model = a.str("model", false)
	spec.Effort = a.str("reasoningEffort", false)
	spec.Timeout = time.Duration(a.integer("timeoutMs", 0, maxTimeoutMs)) * time.Millisecond
	async := a.boolean("async")
	if a.err != nil {
		return problem(a.err), nil
	}
	t, err := h.tasks.Start(ctx, spec)
	if err != nil {
		return problem(err), nil
	}
	if async {
		return h.taskResult(view.Of(h.tasks, t, "", view.MCP)), nil
	}
	final, err := h.waitWithProgress(ctx, t.ID, progressToken(req))
	if err != nil && ctx.Err() == nil {
		return problem(fmt.Errorf("task %s is running but could not be followed: %w — call codex_status with this taskId", t.ID, err)), nil
	}
	if final == nil {
		final = t
	}
	v := view.Of(h.tasks, final, view.Result(h.tasks, final.ID), view.MCP)
	if !final.Status.Final() {
		v.Next = fmt.Sprintf("the wait stopped but the task keeps running: call codex_status with taskId %s, or codex_cancel to stop it", t.ID)
	}
	return h.taskResult(v), nil
}

func (h *handlers) taskResult(v view.Task) *mcplib.CallToolResult {
	v.Summary = v.Text()
	res := mcplib.NewToolResultStructured(v, v.Summary)
	res.IsError = v.Status == "failed" || v.Status == "timed_out"
	return res
}

func progressToken(req mcplib.CallToolRequest) mcplib.ProgressToken {
	if req.Params.Meta == nil {
		return nil
	}
	return req.Params.Meta.ProgressToken
}

// progressEvery paces progress: Claude Code shows each one and a fresh one
// resets its idle watchdog, so at most one a second, and one at least every
// progressHeartbeat even when nothing changed.
const (
	progressEvery     = time.Second
	progressHeartbeat = 10 * time.Second
)

// waitWithProgress waits for the task's end and, when the caller asked for
// progress, tells it in a short line what Codex is doing.
func (h *handlers) waitWithProgress(ctx context.Context, id string, token mcplib.ProgressToken) (*store.Task, error) {
	type waited struct {
		t   *store.Task
		err error
	}
	done := make(chan waited, 1)
	go func() {
		t, err := h.tasks.Wait(ctx, id)
		done <- waited{t, err}
	}()
	tick := time.NewTicker(progressEvery)
	defer tick.Stop()
	start := time.Now()
	var sent int
	var last string
	var lastAt time.Time
	for {
		select {
		case w := <-done:
			return w.t, w.err
		case <-tick.C:
			if token == nil {
				continue
			}
			msg := h.progressLine(id, time.Since(start))
			if msg == last && time.Since(lastAt) < progressHeartbeat {
				continue
			}
			sent++
			last, lastAt = msg, time.Now()
			_ = h.server.SendNotificationToClient(ctx, "notifications/progress", map[string]any{
				"progressToken": token, "progress": sent, "message": msg,
			})
		}
	}
}

func (h *handlers) progressLine(id string, elapsed time.Duration) string {
	p, _ := h.tasks.Progress(id)
	status := "waiting"
	if p.Line == "" {
		if t, err := h.tasks.Get(id); err == nil {
			status = string(t.Status)
		}
	}
	return view.ProgressLine(p, status, elapsed)
}
