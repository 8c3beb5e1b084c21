// Package mcp is codex-connector's MCP surface: the codex_* tools of the
// brief, their schemas, texts and structured results, and the task log as
// a resource. It turns every problem a caller can fix into a tool result
// that says what to do; it knows nothing of Docker or bbolt.
package mcp

import (
	"context"

	"github.com/codex-connector/codex-connector/runner"
	"github.com/codex-connector/codex-connector/store"
	"github.com/codex-connector/codex-connector/workspace"
	mcplib "github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"
)

// Tasks is what the MCP tools need of the runner.
type Tasks interface {
	Start(ctx context.Context, spec runner.Spec) (*store.Task, error)
	Get(id string) (*store.Task, error)
	Wait(ctx context.Context, id string) (*store.Task, error)
	Cancel(ctx context.Context, id string) (*store.Task, error)
	List(f store.Filter) ([]*store.Task, []string, error)
	Progress(id string) (runner.Progress, bool)
	Tail(id string, n int) ([]string, bool, error)
	LogPath(id string) string
	ResultPath(id string) string
	Diff(ctx context.Context, id string, paths []string, patch bool, max int) (*store.Task, workspace.Diff, error)
	Apply(ctx context.Context, id string) (*store.Task, workspace.Applied, error)
	Discard(ctx context.Context, id string) (*store.Task, error)
}

const instructions = `codex-connector runs OpenAI Codex on a coding task, each task in its own disposable container with the git repository mounted.
Start with codex_agent (task + absolute workingDirectory of a git repo). With async=true it returns a taskId at once: wait for it with codex_status and waitSeconds (in a loop, rather than sleeping), list with codex_tasks, stop with codex_cancel. Continue a task that ended with codex_reply; review a repository's changes with codex_review (read-only).
sandbox: read-only (Codex can read, not change, the repo), workspace-write (it may change the repo, never .git/hooks or .git/config), danger-full-access (default; full network).
workspace: shared (Codex works in the work tree itself) or branch (a checkout of its own, so tasks run side by side without touching the work tree; its changes come back as the branch codex/<taskId>: review with codex_diff, take them with codex_apply, drop them with codex_discard).`

// NewServer builds the MCP server with the codex_* tools and the task
// log and result resources.
func NewServer(tasks Tasks, version string) *server.MCPServer {
	s := server.NewMCPServer("codex-connector", version,
		server.WithInstructions(instructions),
		server.WithToolCapabilities(false),
		server.WithResourceCapabilities(false, false),
		server.WithRecovery(),
	)
	h := &handlers{tasks: tasks, server: s}
	s.AddTool(agentTool(), h.agent)
	s.AddTool(statusTool(), h.status)
	s.AddTool(tasksTool(), h.list)
	s.AddTool(cancelTool(), h.cancel)
	s.AddTool(replyTool(), h.reply)
	s.AddTool(reviewTool(), h.review)
	s.AddTool(diffTool(), h.diff)
	s.AddTool(applyTool(), h.apply)
	s.AddTool(discardTool(), h.discard)
	h.addResources(s)
	return s
}

type handlers struct {
	tasks  Tasks
	server *server.MCPServer
}

// problem is a tool result for a problem the caller can act on: the model
// reads the message and fixes the call, where a JSON-RPC error would only
// say that something broke.
func problem(err error) *mcplib.CallToolResult {
	return mcplib.NewToolResultError(err.Error())
}

func boolPtr(b bool) *bool { return &b }
