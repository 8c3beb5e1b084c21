package mcp

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/codex-connector/codex-connector/store"
	mcplib "github.com/mark3labs/mcp-go/mcp"
)

// statusFilters maps the codex_tasks filter to task statuses. The brief's
// four stay as they were: "running" is every task not yet finished (queued
// ones included) and "failed" every task that did not complete (cancelled
// and timed out included); the exact statuses can be asked for too.
var statusFilters = map[string][]store.Status{
	"all":       nil,
	"running":   {store.Queued, store.Running},
	"completed": {store.Completed},
	"failed":    {store.Failed, store.Cancelled, store.TimedOut},
	"queued":    {store.Queued},
	"cancelled": {store.Cancelled},
	"timed_out": {store.TimedOut},
}

var statusFilterNames = []string{"all", "running", "completed", "failed", "queued", "cancelled", "timed_out"}

type listView struct {
	Summary    string     `json:"summary" jsonschema:"the whole list as text"`
	Tasks      []listItem `json:"tasks"`
	Truncated  bool       `json:"truncated,omitempty" jsonschema:"more tasks matched than the limit"`
	Unreadable []string   `json:"unreadable,omitempty" jsonschema:"ids of task records that could not be read"`
}

type listItem struct {
	TaskID           string `json:"taskId"`
	Status           string `json:"status"`
	Task             string `json:"task"`
	WorkingDirectory string `json:"workingDirectory"`
	Sandbox          string `json:"sandbox"`
	CreatedAt        string `json:"createdAt"`
	FinishedAt       string `json:"finishedAt,omitempty"`
	Error            string `json:"error,omitempty"`
}

func tasksTool() mcplib.Tool {
	return mcplib.NewTool("codex_tasks",
		mcplib.WithDescription(`List all Codex tasks, newest first, one line each. Filters: running = queued or running; completed; failed = failed, cancelled or timed out; or an exact status (queued, cancelled, timed_out).`),
		mcplib.WithString("status", mcplib.Enum(statusFilterNames...), mcplib.DefaultString("all"), mcplib.Description("Filter: all, running, completed, or failed (failed includes cancelled and timed_out); queued, cancelled and timed_out select exactly those")),
		mcplib.WithNumber("limit", mcplib.Min(1), mcplib.Max(maxListLimit), mcplib.DefaultNumber(20), mcplib.Description(fmt.Sprintf("Max tasks to return (default: 20, at most %d)", maxListLimit))),
		mcplib.WithOutputSchema[listView](),
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
	limit := a.integer("limit", 20, maxListLimit)
	if a.err == nil && limit < 1 {
		a.fail("limit must be at least 1")
	}
	if filter == "" {
		filter = "all"
	}
	statuses, ok := statusFilters[filter]
	if !ok && a.err == nil {
		a.fail("status %q is not a filter: use one of %s", filter, strings.Join(statusFilterNames, ", "))
	}
	if a.err != nil {
		return problem(a.err), nil
	}
	// One more than asked, to know whether the list was cut.
	tasks, unreadable, err := h.tasks.List(store.Filter{Statuses: statuses, Limit: int(limit) + 1})
	if err != nil {
		return problem(err), nil
	}
	v := listView{Tasks: []listItem{}, Unreadable: unreadable}
	if len(tasks) > int(limit) {
		tasks, v.Truncated = tasks[:limit], true
	}
	var b strings.Builder
	if len(tasks) == 0 {
		fmt.Fprintf(&b, "No tasks (filter: %s).", filter)
	} else {
		fmt.Fprintf(&b, "%d task(s), newest first (filter: %s):\n", len(tasks), filter)
	}
	now := time.Now()
	for _, t := range tasks {
		item := listItem{TaskID: t.ID, Status: string(t.Status), Task: clip(firstLine(t.Prompt), 120),
			WorkingDirectory: t.WorkingDirectory, Sandbox: t.Sandbox, CreatedAt: stamp(t.CreatedAt), FinishedAt: stamp(t.FinishedAt), Error: clip(t.Error, 200)}
		v.Tasks = append(v.Tasks, item)
		fmt.Fprintf(&b, "%s  %-9s  %s ago  %s  %q", t.ID, t.Status, now.Sub(t.CreatedAt).Round(time.Second), t.WorkingDirectory, item.Task)
		if item.Error != "" {
			fmt.Fprintf(&b, "  — %s", item.Error)
		}
		b.WriteByte('\n')
	}
	if v.Truncated {
		fmt.Fprintf(&b, "(more tasks match: raise limit, up to %d, or narrow the filter)\n", maxListLimit)
	}
	if len(unreadable) > 0 {
		fmt.Fprintf(&b, "(%d task record(s) could not be read and were left out: %s)\n", len(unreadable), strings.Join(unreadable, ", "))
	}
	v.Summary = strings.TrimRight(b.String(), "\n")
	return mcplib.NewToolResultStructured(v, v.Summary), nil
}
