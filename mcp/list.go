package mcp

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/codex-connector/codex-connector/store"
	"github.com/codex-connector/codex-connector/view"
	mcplib "github.com/mark3labs/mcp-go/mcp"
)

func tasksTool() mcplib.Tool {
	return mcplib.NewTool("codex_tasks",
		mcplib.WithDescription(`List all Codex tasks, newest first, one line each. Filters: running = queued or running; completed; failed = failed, cancelled or timed out; or an exact status (queued, cancelled, timed_out).`),
		mcplib.WithString("status", mcplib.Enum(view.FilterNames...), mcplib.DefaultString("all"), mcplib.Description("Filter: all, running, completed, or failed (failed includes cancelled and timed_out); queued, cancelled and timed_out select exactly those")),
		mcplib.WithNumber("limit", mcplib.Min(1), mcplib.Max(view.MaxListLimit), mcplib.DefaultNumber(20), mcplib.Description(fmt.Sprintf("Max tasks to return (default: 20, at most %d)", view.MaxListLimit))),
		mcplib.WithOutputSchema[view.List](),
		mcplib.WithTitleAnnotation("List Codex tasks"),
		mcplib.WithReadOnlyHintAnnotation(true),
		mcplib.WithDestructiveHintAnnotation(false),
		mcplib.WithIdempotentHintAnnotation(true),
		mcplib.WithOpenWorldHintAnnotation(false),
	)
}

func (h *handlers) list(ctx context.Context, req mcplib.CallToolRequest) (*mcplib.CallToolResult, error) {
	a := argsOf(req)
	filter := a.str("status", false)
	limit := a.integer("limit", 20, view.MaxListLimit)
	if a.err == nil && limit < 1 {
		a.fail("limit must be at least 1")
	}
	if filter == "" {
		filter = "all"
	}
	statuses, ok := view.Filters[filter]
	if !ok && a.err == nil {
		a.fail("status %q is not a filter: use one of %s", filter, strings.Join(view.FilterNames, ", "))
	}
	if a.err != nil {
		return problem(a.err), nil
	}
	// One more than asked, to know whether the list was cut.
	tasks, unreadable, err := h.tasks.List(store.Filter{Statuses: statuses, Limit: int(limit) + 1})
	if err != nil {
		return problem(err), nil
	}
	v := view.ListOf(tasks, unreadable, filter, int(limit), time.Now(), view.MCP)
	return mcplib.NewToolResultStructured(v, v.Summary), nil
}
