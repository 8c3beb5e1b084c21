package mcp

import (
	"context"

	"github.com/codex-connector/codex-connector/runner"
	"github.com/codex-connector/codex-connector/store"
	"github.com/codex-connector/codex-connector/view"
	mcplib "github.com/mark3labs/mcp-go/mcp"
)

func reviewTool() mcplib.Tool {
	return mcplib.NewTool("codex_review",
		mcplib.WithDescription(`Have Codex review the changes in a git repository with its own review mode: the uncommitted changes (staged, unstaged and untracked), or with base the changes of the current branch against it (base...HEAD). Always read-only: the repository is mounted read-only and nothing is changed.
Returns the review as text and its findings (file, line, severity P0 highest to P3, text) in findings. Without async it waits for the end, like codex_agent.`),
		mcplib.WithString("workingDirectory", mcplib.Required(), mcplib.Description("The git repository to review: an absolute path")),
		mcplib.WithString("taskId", mcplib.Description("Review the branch of this task (one that ran with workspace branch) against where it started, in a read-only checkout of it: one agent writes, another reviews")),
		mcplib.WithString("base", mcplib.Description("A branch or commit to review against (base...HEAD); leave it out for the uncommitted changes")),
		mcplib.WithString("focus", mcplib.Description("What to look at especially, e.g. \"error handling\" or \"the SQL queries\"")),
		mcplib.WithString("model", mcplib.Description("Model override")),
		effortParam(),
		mcplib.WithBoolean("async", mcplib.DefaultBool(false), mcplib.Description("If true, returns immediately with the task ID")),
		mcplib.WithNumber("timeoutMs", mcplib.Min(0), mcplib.DefaultNumber(0), mcplib.Description("Timeout in milliseconds (0 = no timeout); counted from when the review starts running")),
		mcplib.WithOutputSchema[view.Task](),
		mcplib.WithTitleAnnotation("Review changes with Codex"),
		mcplib.WithReadOnlyHintAnnotation(true),
		mcplib.WithDestructiveHintAnnotation(false),
		mcplib.WithIdempotentHintAnnotation(false),
		mcplib.WithOpenWorldHintAnnotation(true),
	)
}

func (h *handlers) review(ctx context.Context, req mcplib.CallToolRequest) (*mcplib.CallToolResult, error) {
	a := argsOf(req)
	task := a.str("taskId", false)
	return h.start(ctx, req, a, runner.Spec{
		WorkingDirectory: a.str("workingDirectory", true),
		Review:           &store.Review{Base: a.str("base", false), Focus: a.str("focus", false), Task: task},
	})
}
