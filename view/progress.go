package view

import (
	"fmt"
	"strings"
	"time"

	"github.com/codex-connector/codex-connector/runner"
	"github.com/codex-connector/codex-connector/store"
)

// ProgressLine says in one short line what Codex is doing in a task being
// followed: the MCP progress notifications and the terminal's status line.
// status stands in when nothing is known of what Codex does.
func ProgressLine(p runner.Progress, status string, elapsed time.Duration) string {
	line := p.Line
	if line == "" {
		line = status
	}
	var parts []string
	if p.Commands > 0 {
		parts = append(parts, plural(p.Commands, "command"))
	}
	if p.Files > 0 {
		parts = append(parts, plural(p.Files, "file")+" changed")
	}
	parts = append(parts, elapsed.Round(time.Second).String())
	return line + " (" + strings.Join(parts, ", ") + ")"
}

func plural(n int, word string) string {
	if n == 1 {
		return "1 " + word
	}
	return fmt.Sprintf("%d %ss", n, word)
}

// OneLine sums up an ended task in one line: how it ended and after how
// long, its commands (and how many failed), its files and its tokens.
func (v Task) OneLine() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s", v.TaskID, v.Status)
	if v.DurationMs > 0 {
		fmt.Fprintf(&b, " after %s", (time.Duration(v.DurationMs) * time.Millisecond).Round(100*time.Millisecond))
	}
	if len(v.Commands) > 0 {
		failed := 0
		for _, c := range v.Commands {
			if c.ExitCode != nil && *c.ExitCode != 0 {
				failed++
			}
		}
		fmt.Fprintf(&b, " · %s", plural(len(v.Commands), "command"))
		if failed > 0 {
			fmt.Fprintf(&b, " (%d failed)", failed)
		}
	}
	if len(v.FilesChanged) > 0 {
		fmt.Fprintf(&b, " · %s changed", plural(len(v.FilesChanged), "file"))
	}
	if v.Usage != nil {
		fmt.Fprintf(&b, " · %d tokens in, %d out", v.Usage.InputTokens, v.Usage.OutputTokens)
	}
	if v.Error != "" && v.Status != string(store.Completed) {
		fmt.Fprintf(&b, " · %s", FirstLine(v.Error))
	}
	return b.String()
}

// Ending is what a person who watched the task's log needs once it ended:
// what changed, what to review before running anything, the result, and
// the one-line summary. The commands were in the log already.
func (v Task) Ending() string {
	var b strings.Builder
	if len(v.FilesChanged) > 0 {
		fmt.Fprintf(&b, "Files changed: %s\n", strings.Join(v.FilesChanged, ", "))
	}
	if len(v.HostRunFiles) > 0 {
		fmt.Fprintf(&b, "Review before running anything here — changed files that host tools run or obey: %s\n", strings.Join(v.HostRunFiles, ", "))
	}
	if len(v.Findings) > 0 {
		writeFindings(&b, v.Findings)
	}
	if v.Result != "" {
		fmt.Fprintf(&b, "\nResult:\n%s\n", strings.TrimRight(v.Result, "\n"))
		if v.ResultTruncated {
			fmt.Fprintf(&b, "[result cut; the whole message is in %s]\n", v.ResultFile)
		}
		b.WriteByte('\n')
	}
	b.WriteString(v.OneLine())
	if v.Next != "" {
		fmt.Fprintf(&b, "\nNext: %s", v.Next)
	}
	return b.String()
}
