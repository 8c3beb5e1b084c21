package view

import (
	"fmt"
	"strings"

	"github.com/codex-connector/codex-connector/store"
	"github.com/codex-connector/codex-connector/workspace"
)

// Diff is a branch task's changes, as codex_diff and `codex-connector
// diff` show them.
type Diff struct {
	Summary string                 `json:"summary" jsonschema:"the whole result as text a reader can act on"`
	TaskID  string                 `json:"taskId"`
	Branch  string                 `json:"branch"`
	From    string                 `json:"from" jsonschema:"the commit the task started from"`
	To      string                 `json:"to" jsonschema:"the branch's head"`
	Files   []workspace.FileChange `json:"files" jsonschema:"the files changed, those host tools run or obey (hostRun) first"`
	Patch   string                 `json:"patch,omitempty"`
	Cut     bool                   `json:"cut,omitempty" jsonschema:"the patch stops short: ask for fewer paths"`
	Next    string                 `json:"next,omitempty"`
}

// DiffOf is the view of task t's diff d.
func DiffOf(t *store.Task, d workspace.Diff, on Surface) Diff {
	v := Diff{TaskID: t.ID, Branch: t.Branch.Name, From: t.Branch.Start, To: t.Branch.Head, Files: d.Files, Patch: d.Patch, Cut: d.Cut}
	if v.Files == nil {
		v.Files = []workspace.FileChange{}
	}
	if on == CLI {
		v.Next = fmt.Sprintf("`codex-connector apply %s` brings it into your work tree; `codex-connector discard %s` drops it", t.ID, t.ID)
	} else {
		v.Next = fmt.Sprintf("codex_apply with taskId %s brings it into the work tree as uncommitted changes; codex_discard drops it", t.ID)
	}
	v.Summary = v.Text()
	return v
}

// Text renders the diff for a reader.
func (v Diff) Text() string {
	var b strings.Builder
	fmt.Fprintf(&b, "Task %s: branch %s, %s..%s, %d file(s) changed\n", v.TaskID, v.Branch, ShortHash(v.From), ShortHash(v.To), len(v.Files))
	var hostRun []string
	for _, f := range v.Files {
		mark := ""
		if f.HostRun {
			mark = "  [host tools run it: read it first]"
			hostRun = append(hostRun, f.Path)
		}
		if f.Binary {
			fmt.Fprintf(&b, "  %s %s (binary or large)%s\n", f.Action, f.Path, mark)
		} else {
			fmt.Fprintf(&b, "  %s %s +%d -%d%s\n", f.Action, f.Path, f.Insertions, f.Deletions, mark)
		}
	}
	if len(hostRun) > 0 {
		fmt.Fprintf(&b, "Review before applying — files that tools on the host run or obey: %s\n", strings.Join(hostRun, ", "))
	}
	if v.Patch != "" {
		fmt.Fprintf(&b, "\n%s", v.Patch)
	}
	if v.Cut {
		b.WriteString("\n[the patch is cut here: ask for fewer paths, or read the branch with git diff]\n")
	}
	if v.Next != "" {
		fmt.Fprintf(&b, "\nNext: %s\n", v.Next)
	}
	return strings.TrimRight(b.String(), "\n")
}

// Applied is what codex_apply and `codex-connector apply` did.
type Applied struct {
	Summary   string   `json:"summary" jsonschema:"the whole result as text a reader can act on"`
	TaskID    string   `json:"taskId"`
	Branch    string   `json:"branch"`
	Applied   bool     `json:"applied" jsonschema:"the changes are in the work tree; false on a conflict, when nothing was written"`
	Written   []string `json:"written,omitempty" jsonschema:"files written with the branch's version"`
	Merged    []string `json:"merged,omitempty" jsonschema:"of those, the files whose uncommitted changes of the user's were kept and merged"`
	Removed   []string `json:"removed,omitempty"`
	Already   []string `json:"already,omitempty" jsonschema:"files already as the branch has them"`
	Conflicts []string `json:"conflicts,omitempty" jsonschema:"files that could not be applied, and why"`
	HostRun   []string `json:"hostRunFiles,omitempty" jsonschema:"written files that host tools run or obey: review them before running anything"`
	Next      string   `json:"next,omitempty"`
}

// AppliedOf is the view of applying task t.
func AppliedOf(t *store.Task, a workspace.Applied, on Surface) Applied {
	v := Applied{TaskID: t.ID, Branch: t.Branch.Name, Applied: len(a.Conflicts) == 0,
		Written: a.Written, Merged: a.Merged, Removed: a.Removed, Already: a.Already, Conflicts: a.Conflicts}
	v.HostRun = workspace.HostRunOf(append(append([]string(nil), a.Written...), a.Removed...))
	switch {
	case !v.Applied && on == CLI:
		v.Next = fmt.Sprintf("resolve the conflicts yourself (git diff %s %s shows the task's side), or commit or stash your changes and run `codex-connector apply %s` again", ShortHash(t.Branch.Start), t.Branch.Name, t.ID)
	case !v.Applied:
		v.Next = fmt.Sprintf("nothing was written: commit or stash the user's changes to those files and call codex_apply again, or merge the branch %s with git", t.Branch.Name)
	case on == CLI:
		v.Next = fmt.Sprintf("the changes are uncommitted in your work tree: review them with git diff; `codex-connector discard %s` removes the branch once you keep them", t.ID)
	default:
		v.Next = fmt.Sprintf("the changes are uncommitted in the work tree (git diff shows them); codex_discard with taskId %s removes the branch once they are kept", t.ID)
	}
	v.Summary = v.Text()
	return v
}

// Text renders the apply for a reader.
func (v Applied) Text() string {
	var b strings.Builder
	if v.Applied {
		fmt.Fprintf(&b, "Task %s: the changes of %s are in the work tree, uncommitted\n", v.TaskID, v.Branch)
	} else {
		fmt.Fprintf(&b, "Task %s: %s was NOT applied — %d conflict(s), and nothing was written\n", v.TaskID, v.Branch, len(v.Conflicts))
	}
	for _, l := range []struct {
		what  string
		paths []string
	}{{"Conflicts", v.Conflicts}, {"Written", v.Written}, {"Merged with your uncommitted changes", v.Merged}, {"Removed", v.Removed}, {"Already so", v.Already}} {
		if len(l.paths) > 0 {
			fmt.Fprintf(&b, "%s: %s\n", l.what, strings.Join(l.paths, ", "))
		}
	}
	if len(v.HostRun) > 0 {
		fmt.Fprintf(&b, "Review before running anything here — written files that host tools run or obey: %s\n", strings.Join(v.HostRun, ", "))
	}
	if v.Next != "" {
		fmt.Fprintf(&b, "\nNext: %s\n", v.Next)
	}
	return strings.TrimRight(b.String(), "\n")
}
