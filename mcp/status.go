package mcp

import (
	"context"
	"fmt"
	"time"

	"github.com/codex-connector/codex-connector/view"
	mcplib "github.com/mark3labs/mcp-go/mcp"
)

// maxWaitSeconds keeps a waiting codex_status under the ~120 s after which
// Claude Code moves a call into the background.
const maxWaitSeconds = 110

func statusTool() mcplib.Tool {
	return mcplib.NewTool("codex_status",
		mcplib.WithDescription("Check the status of a running or completed task: its state, times, what Codex is doing or did (commands with exit codes, files changed), the result when done, and the last log lines rendered for a reader. The full log is in logFile and the resource codex://tasks/{taskId}/log.\nTo wait for a task, pass waitSeconds (at most 110) and call again while it is still running, instead of sleeping: the call answers as soon as the task ends, sending progress meanwhile. Claude Code moves tool calls longer than about 120 s into the background and can lose their results, so one call never waits longer."),
		mcplib.WithString("taskId", mcplib.Required(), mcplib.Description("The task ID from codex_agent")),
		mcplib.WithNumber("waitSeconds", mcplib.Min(0), mcplib.Max(maxWaitSeconds), mcplib.DefaultNumber(0), mcplib.Description(fmt.Sprintf("Wait up to this many seconds for the task to end before answering (0 to %d; default 0: answer at once)", maxWaitSeconds))),
		mcplib.WithNumber("tailLines", mcplib.Min(0), mcplib.Max(view.MaxTailLines), mcplib.DefaultNumber(50), mcplib.Description(fmt.Sprintf("Number of recent log lines (default: 50, at most %d; 0 for none)", view.MaxTailLines))),
		mcplib.WithOutputSchema[view.Task](),
		mcplib.WithTitleAnnotation("Codex task status"),
		mcplib.WithReadOnlyHintAnnotation(true),
		mcplib.WithDestructiveHintAnnotation(false),
		mcplib.WithIdempotentHintAnnotation(true),
		mcplib.WithOpenWorldHintAnnotation(false),
	)
}

func (h *handlers) status(ctx context.Context, req mcplib.CallToolRequest) (*mcplib.CallToolResult, error) {
	a := argsOf(req)
	id := a.str("taskId", true)
	n := a.integer("tailLines", 50, view.MaxTailLines)
	wait := a.integer("waitSeconds", 0, maxWaitSeconds)
	if a.err != nil {
		return problem(a.err), nil
	}
	t, err := h.tasks.Get(id)
	if err != nil {
		return problem(err), nil
	}
	if wait > 0 && !t.Status.Final() {
		wctx, cancel := context.WithTimeout(ctx, time.Duration(wait)*time.Second)
		_, _ = h.waitWithProgress(wctx, id, progressToken(req))
		cancel()
		if t, err = h.tasks.Get(id); err != nil {
			return problem(err), nil
		}
	}
	var result string
	if t.Status.Final() {
		result = view.Result(h.tasks, id)
	}
	v := view.Of(h.tasks, t, result, view.MCP)
	if n > 0 {
		lines, cut, err := h.tasks.Tail(id, int(n))
		if err != nil {
			return problem(fmt.Errorf("read the log of task %s: %w", id, err)), nil
		}
		v.LogTail, v.LogTailCut = lines, cut
	}
	res := h.taskResult(v)
	// Asking about a failed task is a successful call.
	res.IsError = false
	return res, nil
}
