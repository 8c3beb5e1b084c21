package mcp

import (
	"context"
	"fmt"

	mcplib "github.com/mark3labs/mcp-go/mcp"
)

func statusTool() mcplib.Tool {
	return mcplib.NewTool("codex_status",
		mcplib.WithDescription("Check the status of a running or completed task: its state, times, what Codex is doing or did (commands with exit codes, files changed), the result when done, and the last log lines rendered for a reader. The full log is in logFile and the resource codex://tasks/{taskId}/log."),
		mcplib.WithString("taskId", mcplib.Required(), mcplib.Description("The task ID from codex_agent")),
		mcplib.WithNumber("tailLines", mcplib.Min(0), mcplib.Max(maxTailLines), mcplib.DefaultNumber(50), mcplib.Description(fmt.Sprintf("Number of recent log lines (default: 50, at most %d; 0 for none)", maxTailLines))),
		mcplib.WithOutputSchema[taskView](),
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
	n := a.integer("tailLines", 50, maxTailLines)
	if a.err != nil {
		return problem(a.err), nil
	}
	t, err := h.tasks.Get(id)
	if err != nil {
		return problem(err), nil
	}
	var result string
	if t.Status.Final() {
		result = h.resultText(id)
	}
	v := h.view(t, result)
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
