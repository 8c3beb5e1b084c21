package mcp

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	mcplib "github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"
)

// maxResourceBytes bounds a log read as a resource: the end of the log is
// what a reader wants, and the file holds the rest.
const maxResourceBytes = 256 << 10

func (h *handlers) addResources(s *server.MCPServer) {
	s.AddResourceTemplate(
		mcplib.NewResourceTemplate("codex://tasks/{taskId}/log", "Codex task log",
			mcplib.WithTemplateDescription("The output of a task's container: Codex's JSONL events and its stderr (the last 256 KiB; the whole log is in the file named in codex_status)."),
			mcplib.WithTemplateMIMEType("text/plain")),
		func(ctx context.Context, req mcplib.ReadResourceRequest) ([]mcplib.ResourceContents, error) {
			return h.readFileResource(req.Params.URI, "/log", h.tasks.LogPath)
		})
	s.AddResourceTemplate(
		mcplib.NewResourceTemplate("codex://tasks/{taskId}/result", "Codex task result",
			mcplib.WithTemplateDescription("Codex's final message for a finished task."),
			mcplib.WithTemplateMIMEType("text/markdown")),
		func(ctx context.Context, req mcplib.ReadResourceRequest) ([]mcplib.ResourceContents, error) {
			return h.readFileResource(req.Params.URI, "/result", h.tasks.ResultPath)
		})
}

func (h *handlers) readFileResource(uri, suffix string, path func(string) string) ([]mcplib.ResourceContents, error) {
	id := strings.TrimSuffix(strings.TrimPrefix(uri, "codex://tasks/"), suffix)
	if _, err := h.tasks.Get(id); err != nil {
		return nil, err
	}
	f, err := os.Open(path(id))
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("task %s has no %s yet", id, strings.TrimPrefix(suffix, "/"))
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	var prefix string
	if fi.Size() > maxResourceBytes {
		if _, err := f.Seek(-maxResourceBytes, io.SeekEnd); err != nil {
			return nil, err
		}
		prefix = fmt.Sprintf("[first %d bytes left out; the whole file is %s]\n", fi.Size()-maxResourceBytes, path(id))
	}
	data, err := io.ReadAll(f)
	if err != nil {
		return nil, err
	}
	mime := "text/plain"
	if suffix == "/result" {
		mime = "text/markdown"
	}
	return []mcplib.ResourceContents{mcplib.TextResourceContents{URI: uri, MIMEType: mime, Text: prefix + string(data)}}, nil
}
