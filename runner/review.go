package runner

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"github.com/codex-connector/codex-connector/store"
)

// A review is Codex's own non-interactive review (`codex exec review`) of
// the repository's changes: against a base branch or commit (base...HEAD),
// or the uncommitted ones. It runs at read-only, whatever else is asked:
// a review changes nothing.

// reviewArgs are the arguments of `codex exec review` after the common
// flags: what to review. Codex takes custom instructions only instead of a
// target, so a focus becomes instructions that name the target too
// (reviewInstructions), read from stdin like every prompt (promptfile.go).
func reviewArgs(rv *store.Review) []string {
	if rv.Focus == "" {
		if rv.Base != "" {
			return []string{"--base", rv.Base}
		}
		return []string{"--uncommitted"}
	}
	return []string{"--", stdinPrompt}
}

// reviewInstructions are the custom instructions of a review with a focus;
// "" for one without.
func reviewInstructions(rv *store.Review) string {
	if rv.Focus == "" {
		return ""
	}
	what := "the current uncommitted changes (staged, unstaged and untracked: see `git status` and `git diff HEAD`)"
	if rv.Base != "" {
		what = fmt.Sprintf("the changes against the base %s (`git diff %s...HEAD`)", rv.Base, rv.Base)
	}
	return fmt.Sprintf("Review %s, and report the issues you find. Focus: %s", what, rv.Focus)
}

// finding is one line of Codex's rendered review: "- [P1] title — path:3-5".
var finding = regexp.MustCompile(`^- \[(P[0-3])\] (.+) — (.+?)(?::(\d+)(?:-(\d+))?)?$`)

// parseFindings reads the findings out of Codex's rendered review (its
// final message): each with its file (relative to the repository where it
// is inside it), line, severity (Codex's priority, P0 the highest) and
// text (title and body).
func parseFindings(text, root string) []store.Finding {
	var out []store.Finding
	lines := strings.Split(text, "\n")
	for i := 0; i < len(lines) && len(out) < maxFindings; i++ {
		m := finding.FindStringSubmatch(strings.TrimRight(lines[i], " "))
		if m == nil {
			continue
		}
		f := store.Finding{Severity: m[1], File: m[3], Text: m[2]}
		if rel, ok := strings.CutPrefix(f.File, root+"/"); ok {
			f.File = rel
		}
		f.Line, _ = strconv.Atoi(m[4])
		f.EndLine, _ = strconv.Atoi(m[5])
		var body []string
		for i+1 < len(lines) && strings.HasPrefix(lines[i+1], "  ") {
			i++
			body = append(body, strings.TrimSpace(lines[i]))
		}
		if len(body) > 0 {
			f.Text += ": " + strings.Join(body, " ")
		}
		f.File, f.Text = clipN(f.File, maxPath), clipN(f.Text, maxText*4)
		out = append(out, f)
	}
	return out
}

// maxFindings bounds the findings kept in a record.
const maxFindings = 50

// checkReview refuses a review the engine would misread: a base that git
// would take for an option, or that is no ref name.
func checkReview(rv *store.Review) error {
	b := rv.Base
	if b == "" {
		return nil
	}
	if strings.HasPrefix(b, "-") || strings.ContainsAny(b, " \t\n\x00~^:?*[\\") || strings.Contains(b, "..") || len(b) > 255 {
		return invalid("base %q is not a branch or commit name: give one such as main, origin/main or a commit id", b)
	}
	return nil
}

// reviewPrompt is what a review's record shows as its task.
func reviewPrompt(rv *store.Review) string {
	what := "the uncommitted changes"
	if rv.Base != "" {
		what = "the changes against " + rv.Base + " (" + rv.Base + "...HEAD)"
	}
	if rv.Focus != "" {
		return "review " + what + ", focusing on: " + rv.Focus
	}
	return "review " + what
}
