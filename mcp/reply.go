package mcp

import (
	"context"

	"github.com/codex-connector/codex-connector/runner"
	"github.com/codex-connector/codex-connector/view"
	mcplib "github.com/mark3labs/mcp-go/mcp"
)

func replyTool() mcplib.Tool {
	return mcplib.NewTool("codex_reply",
		mcplib.WithDescription(`Continue the Codex session of an earlier task with a new message ("now also update the docs", "the test still fails: look at the log"), as a new task of its own. Codex resumes with the whole earlier conversation, in the same repository and at the same sandbox level, in a fresh container with its own copy of the earlier task's Codex state: two replies to one task each continue from the same point.
The earlier task must have ended (completed, failed, timed out or cancelled) and its state must still be kept. Works across server restarts. Returns like codex_agent; the new task's parent is the earlier task.
The conversation is the one the earlier task's container recorded: text that task's code wrote there reaches the model again.`),
		mcplib.WithString("taskId", mcplib.Required(), mcplib.Description("The task to continue (from codex_agent, codex_reply or codex_tasks)")),
		mcplib.WithString("task", mcplib.Required(), mcplib.Description("The new message to Codex")),
		mcplib.WithString("model", mcplib.Description("Model override; default: the earlier task's")),
		effortParam(),
		mcplib.WithBoolean("async", mcplib.DefaultBool(false), mcplib.Description("If true, returns immediately with the new task's ID")),
		mcplib.WithNumber("timeoutMs", mcplib.Min(0), mcplib.DefaultNumber(0), mcplib.Description("Timeout in milliseconds (0 = no timeout); counted from when the task starts running")),
		mcplib.WithOutputSchema[view.Task](),
		mcplib.WithTitleAnnotation("Reply to a Codex task"),
		mcplib.WithReadOnlyHintAnnotation(false),
		mcplib.WithDestructiveHintAnnotation(true),
		mcplib.WithIdempotentHintAnnotation(false),
		mcplib.WithOpenWorldHintAnnotation(true),
	)
}

func (h *handlers) reply(ctx context.Context, req mcplib.CallToolRequest) (*mcplib.CallToolResult, error) {
	a := argsOf(req)
	return h.start(ctx, req, a, runner.Spec{Parent: a.str("taskId", true), Prompt: a.str("task", true)})
}
