package mcp

import (
	"context"
	"fmt"

	"github.com/codex-connector/codex-connector/view"
	mcplib "github.com/mark3labs/mcp-go/mcp"
)

func cancelTool() mcplib.Tool {
	return mcplib.NewTool("codex_cancel",
		mcplib.WithDescription("Cancel a running task: a queued task never starts; a running one is stopped (SIGTERM, then SIGKILL after a grace period) and ends as cancelled, its log kept. Cancelling a task that already finished changes nothing and says so."),
		mcplib.WithString("taskId", mcplib.Required(), mcplib.Description("The task ID to cancel")),
		mcplib.WithOutputSchema[view.Task](),
		mcplib.WithTitleAnnotation("Cancel a Codex task"),
		mcplib.WithReadOnlyHintAnnotation(false),
		mcplib.WithDestructiveHintAnnotation(true),
		mcplib.WithIdempotentHintAnnotation(true),
		mcplib.WithOpenWorldHintAnnotation(false),
	)
}

func (h *handlers) cancel(ctx context.Context, req mcplib.CallToolRequest) (*mcplib.CallToolResult, error) {
	a := argsOf(req)
	id := a.str("taskId", true)
	if a.err != nil {
		return problem(a.err), nil
	}
	before, err := h.tasks.Get(id)
	if err != nil {
		return problem(err), nil
	}
	t := before
	if !before.Status.Final() {
		if t, err = h.tasks.Cancel(ctx, id); err != nil {
			return problem(fmt.Errorf("cancel task %s: %w", id, err)), nil
		}
	}
	v := view.Of(h.tasks, t, "", view.MCP)
	if before.Status.Final() {
		v.Next = fmt.Sprintf("task %s had already finished (%s): nothing to cancel", id, before.Status)
	} else if !t.Status.Final() {
		v.Next = fmt.Sprintf("the stop was asked but the task has not ended yet: call codex_status with taskId %s", id)
	}
	res := h.taskResult(v)
	res.IsError = false
	return res, nil
}
