// Package view owns what a task looks like to a reader: the structured
// views and the texts that the MCP tools return and the command line
// prints. Both surfaces render through it, so no text is written twice;
// only the hint of what to do next is in the words of each surface.
package view

import (
	"os"
	"strings"
	"time"

	"github.com/codex-connector/codex-connector/runner"
	"github.com/codex-connector/codex-connector/store"
)

// Bounds that keep every result well below what Claude Code accepts from a
// tool (it warns at about 10,000 tokens).
const (
	MaxResultChars = 12000
	maxPromptChars = 500
	MaxTailLines   = 500
	MaxListLimit   = 200
	maxChain       = 20
)

// Source is what a view reads besides the record: the records of earlier
// tasks of a conversation, what a followed task is doing, and where its
// files are.
type Source interface {
	Get(id string) (*store.Task, error)
	Progress(id string) (runner.Progress, bool)
	LogPath(id string) string
	ResultPath(id string) string
}

// Surface is where the reader is: it decides the words of the next step.
type Surface int

const (
	// MCP is a model in Claude Code, which calls the codex_* tools.
	MCP Surface = iota
	// CLI is a person at a terminal, who runs codex-connector commands.
	CLI
)

// Result reads Codex's whole final message from the task's result file,
// of which the record holds only the start.
func Result(src Source, id string) string {
	data, err := os.ReadFile(src.ResultPath(id))
	if err != nil {
		return ""
	}
	return string(data)
}

func stamp(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339)
}

// Clip cuts s to at most n bytes, at a character boundary.
func Clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && s[n]&0xC0 == 0x80 {
		n--
	}
	return s[:n]
}

// FirstLine is the first line of s, with a mark when there is more.
func FirstLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i] + " …"
	}
	return s
}

// ShortID is an image id as `docker images` shows it.
func ShortID(id string) string {
	id = strings.TrimPrefix(id, "sha256:")
	if len(id) > 12 {
		return id[:12]
	}
	return id
}
