package mcp

import (
	"context"

	"github.com/codex-connector/codex-connector/view"
	mcplib "github.com/mark3labs/mcp-go/mcp"
)

// The tools for a branch task's result: its diff, its apply into the work
// tree, and its discard.

// maxDiffBytes bounds a patch in one result.
const maxDiffBytes = 200 << 10

func diffTool() mcplib.Tool {
	return mcplib.NewTool("codex_diff",
		mcplib.WithDescription(`Show the changes of a task that ran with workspace "branch": its branch codex/<taskId> against where it started (so your own uncommitted changes it started with are not in it). Files that tools on the host run or obey (Makefile, package.json scripts, .envrc, CI workflows, .gitattributes, .gitmodules…) come first, flagged: read them before applying. The patch is cut at about 200 KB; ask for fewer paths, or stat only.`),
		mcplib.WithString("taskId", mcplib.Required(), mcplib.Description("The branch task")),
		mcplib.WithArray("paths", mcplib.WithStringItems(), mcplib.Description("Only these files, or the files below these directories (repository-relative)")),
		mcplib.WithBoolean("stat", mcplib.DefaultBool(false), mcplib.Description("If true, only the files and their line counts, no patch")),
		mcplib.WithOutputSchema[view.Diff](),
		mcplib.WithTitleAnnotation("Show a Codex task's changes"),
		mcplib.WithReadOnlyHintAnnotation(true),
		mcplib.WithDestructiveHintAnnotation(false),
		mcplib.WithIdempotentHintAnnotation(true),
		mcplib.WithOpenWorldHintAnnotation(false),
	)
}

func (h *handlers) diff(ctx context.Context, req mcplib.CallToolRequest) (*mcplib.CallToolResult, error) {
	a := argsOf(req)
	id := a.str("taskId", true)
	paths := a.strs("paths")
	stat := a.boolean("stat")
	if a.err != nil {
		return problem(a.err), nil
	}
	t, d, err := h.tasks.Diff(ctx, id, paths, !stat, maxDiffBytes)
	if err != nil {
		return problem(err), nil
	}
	v := view.DiffOf(t, d, view.MCP)
	return mcplib.NewToolResultStructured(v, v.Summary), nil
}

func applyTool() mcplib.Tool {
	return mcplib.NewTool("codex_apply",
		mcplib.WithDescription(`Bring the changes of a task that ran with workspace "branch" into its repository's work tree, as uncommitted changes: nothing is committed, the checked-out branch, HEAD and the index stay as they are. A file changed in the work tree since the task started is merged line by line only where that is clean; on any conflict nothing at all is written and the conflicting files are listed. Review with codex_diff first. For a reply to a branch task, only the reply's own step is applied (from its parent's head): apply the parent first.`),
		mcplib.WithString("taskId", mcplib.Required(), mcplib.Description("The branch task")),
		mcplib.WithOutputSchema[view.Applied](),
		mcplib.WithTitleAnnotation("Apply a Codex task's changes"),
		mcplib.WithReadOnlyHintAnnotation(false),
		mcplib.WithDestructiveHintAnnotation(false),
		mcplib.WithIdempotentHintAnnotation(true),
		mcplib.WithOpenWorldHintAnnotation(false),
	)
}

func (h *handlers) apply(ctx context.Context, req mcplib.CallToolRequest) (*mcplib.CallToolResult, error) {
	a := argsOf(req)
	id := a.str("taskId", true)
	if a.err != nil {
		return problem(a.err), nil
	}
	t, applied, err := h.tasks.Apply(ctx, id)
	if err != nil {
		return problem(err), nil
	}
	v := view.AppliedOf(t, applied, view.MCP)
	res := mcplib.NewToolResultStructured(v, v.Summary)
	res.IsError = !v.Applied
	return res, nil
}

func discardTool() mcplib.Tool {
	return mcplib.NewTool("codex_discard",
		mcplib.WithDescription(`Drop the result of a task that ran with workspace "branch": its branch codex/<taskId> is deleted (unless commits of yours were added to it since) and whatever is left of its workspace removed. Nothing else removes a branch: pruning old tasks keeps them. The work tree is not touched: changes already applied stay.`),
		mcplib.WithString("taskId", mcplib.Required(), mcplib.Description("The branch task")),
		mcplib.WithOutputSchema[view.Task](),
		mcplib.WithTitleAnnotation("Discard a Codex task's branch"),
		mcplib.WithReadOnlyHintAnnotation(false),
		mcplib.WithDestructiveHintAnnotation(true),
		mcplib.WithIdempotentHintAnnotation(true),
		mcplib.WithOpenWorldHintAnnotation(false),
	)
}

func (h *handlers) discard(ctx context.Context, req mcplib.CallToolRequest) (*mcplib.CallToolResult, error) {
	a := argsOf(req)
	id := a.str("taskId", true)
	if a.err != nil {
		return problem(a.err), nil
	}
	t, err := h.tasks.Discard(ctx, id)
	if err != nil {
		return problem(err), nil
	}
	v := view.Of(h.tasks, t, "", view.MCP)
	v.Next = "the branch is gone; the task's record and log stay"
	res := h.taskResult(v)
	res.IsError = false
	return res, nil
}
