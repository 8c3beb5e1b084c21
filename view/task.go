package view

import (
	"fmt"
	"strings"
	"time"

	"github.com/codex-connector/codex-connector/runner"
	"github.com/codex-connector/codex-connector/store"
)

// Task is a task as a reader sees it: the structured result of
// codex_agent, codex_status and codex_cancel, and what `codex-connector
// status` prints. Claude Code shows the model only the structured part of a
// result that has one, so summary repeats, as text, everything that matters.
type Task struct {
	Summary          string    `json:"summary" jsonschema:"the whole result as text a reader can act on"`
	TaskID           string    `json:"taskId"`
	Status           string    `json:"status" jsonschema:"queued, running, completed, failed, cancelled or timed_out"`
	Task             string    `json:"task"`
	WorkingDirectory string    `json:"workingDirectory"`
	RepoRoot         string    `json:"repoRoot"`
	Sandbox          string    `json:"sandbox"`
	Workspace        string    `json:"workspace,omitempty" jsonschema:"shared (the user's work tree) or branch (a checkout of its own, whose changes come back as a branch)"`
	Branch           *Branch   `json:"branch,omitempty" jsonschema:"a branch task's branch in the user's repository"`
	Model            string    `json:"model,omitempty"`
	ReasoningEffort  string    `json:"reasoningEffort,omitempty" jsonschema:"the reasoning effort asked for"`
	Parent           string    `json:"parent,omitempty" jsonschema:"the task this one continues (codex_reply)"`
	Chain            []string  `json:"chain,omitempty" jsonschema:"the tasks this one continues, nearest first, back to the first of the conversation"`
	Ran              *Ran      `json:"ran,omitempty" jsonschema:"what actually ran: the Codex version and image, the model and effort that applied (asked for, or the defaults), the provider"`
	Image            *Image    `json:"image,omitempty" jsonschema:"the image the task runs in"`
	Engine           *Engine   `json:"engine,omitempty" jsonschema:"the engine the task was launched on, and the limits it does not enforce"`
	CreatedAt        string    `json:"createdAt"`
	StartedAt        string    `json:"startedAt,omitempty"`
	FinishedAt       string    `json:"finishedAt,omitempty"`
	DurationMs       int64     `json:"durationMs,omitempty" jsonschema:"running time so far, or in all once finished"`
	ExitCode         *int      `json:"exitCode,omitempty"`
	Error            string    `json:"error,omitempty" jsonschema:"why the task failed, timed out or was cancelled"`
	Result           string    `json:"result,omitempty" jsonschema:"Codex's final message"`
	ResultTruncated  bool      `json:"resultTruncated,omitempty" jsonschema:"the final message was cut; the whole one is in resultFile"`
	Now              string    `json:"now,omitempty" jsonschema:"what Codex is doing at the moment"`
	Commands         []Command `json:"commands,omitempty"`
	FilesChanged     []string  `json:"filesChanged,omitempty"`
	Findings         []Finding `json:"findings,omitempty" jsonschema:"a review's findings"`
	HostRunFiles     []string  `json:"hostRunFiles,omitempty" jsonschema:"changed files that tools on the host run or obey without asking (Makefile, package.json, .envrc, .vscode/, .github/workflows/, .gitattributes, a .git): review them before running anything in the repository"`
	Usage            *Usage    `json:"usage,omitempty"`
	LogTail          []string  `json:"logTail,omitempty" jsonschema:"the last lines of the log, rendered for a reader"`
	LogTailCut       bool      `json:"logTailCut,omitempty" jsonschema:"earlier log lines were left out"`
	LogFile          string    `json:"logFile"`
	ResultFile       string    `json:"resultFile"`
	Next             string    `json:"next,omitempty" jsonschema:"what to call next"`
}

type Finding struct {
	File     string `json:"file,omitempty"`
	Line     int    `json:"line,omitempty"`
	EndLine  int    `json:"endLine,omitempty"`
	Severity string `json:"severity,omitempty" jsonschema:"Codex's priority: P0 (highest) to P3"`
	Text     string `json:"text"`
}

type Ran struct {
	CodexVersion string `json:"codexVersion,omitempty"`
	ImageID      string `json:"imageId,omitempty"`
	Model        string `json:"model,omitempty"`
	Effort       string `json:"effort,omitempty"`
	Provider     string `json:"provider,omitempty"`
	ThreadID     string `json:"threadId,omitempty" jsonschema:"Codex's session id"`
}

type Image struct {
	Ref    string   `json:"ref,omitempty" jsonschema:"the image: the Codex image, or Codex put onto base (set at launch)"`
	ID     string   `json:"id,omitempty"`
	Base   string   `json:"base,omitempty" jsonschema:"the toolchain image chosen for the repository"`
	Source string   `json:"source,omitempty" jsonschema:"where that choice was made: config.json, or the repository's dev container file the user opted into"`
	Notes  []string `json:"notes,omitempty" jsonschema:"what the image lacks, and what of a dev container file was ignored"`
}

type Engine struct {
	Name       string   `json:"name" jsonschema:"which engine, its version, rootful or rootless, its cgroup version"`
	Unenforced []string `json:"unenforced,omitempty" jsonschema:"limits (memory, cpu, pids) its runs did not get, as seen from inside one; accepted by limits.acceptUnenforced in config.json"`
	Warnings   []string `json:"warnings,omitempty" jsonschema:"what the engine said when asked to make a run"`
}

// Branch is a branch task's branch.
type Branch struct {
	Name      string   `json:"name" jsonschema:"the branch in the user's repository: codex/<taskId>"`
	Base      string   `json:"base" jsonschema:"the commit the workspace was made from"`
	BaseRef   string   `json:"baseRef,omitempty" jsonschema:"the base as asked (a branch, tag or commit); empty for HEAD"`
	Start     string   `json:"start,omitempty" jsonschema:"the commit the task started from: the base, or the user's uncommitted changes on it; the task's diff is against it"`
	Carried   []string `json:"carried,omitempty" jsonschema:"the user's uncommitted changes the task started with"`
	Head      string   `json:"head,omitempty" jsonschema:"the branch's head, once the task ended"`
	Commits   int      `json:"commits,omitempty" jsonschema:"the task's own commits on the branch"`
	Rest      bool     `json:"rest,omitempty" jsonschema:"a commit of what the task left uncommitted follows them"`
	Left      []string `json:"left,omitempty" jsonschema:"what of the user's changes or of the task's work was not taken, and why"`
	Discarded bool     `json:"discarded,omitempty"`
}

type Command struct {
	Command  string `json:"command"`
	ExitCode *int   `json:"exitCode,omitempty"`
}

type Usage struct {
	InputTokens       int64 `json:"inputTokens"`
	CachedInputTokens int64 `json:"cachedInputTokens"`
	OutputTokens      int64 `json:"outputTokens"`
	ReasoningTokens   int64 `json:"reasoningOutputTokens"`
}

func Of(src Source, t *store.Task, result string, on Surface) Task {
	v := Task{
		TaskID: t.ID, Status: string(t.Status), Task: Clip(t.Prompt, maxPromptChars),
		WorkingDirectory: t.WorkingDirectory, RepoRoot: t.RepoRoot, Sandbox: t.Sandbox, Model: t.Model,
		CreatedAt: stamp(t.CreatedAt), StartedAt: stamp(t.StartedAt), FinishedAt: stamp(t.FinishedAt),
		ExitCode: t.ExitCode, Error: t.Error,
		LogFile: src.LogPath(t.ID), ResultFile: src.ResultPath(t.ID),
	}
	v.ReasoningEffort, v.Parent = t.Effort, t.Parent
	if t.Workspace != "" {
		v.Workspace = t.Workspace
	}
	if b := t.Branch; b != nil {
		v.Branch = &Branch{Name: b.Name, Base: b.Base, BaseRef: b.BaseRef, Start: b.Start, Carried: b.Carried,
			Head: b.Head, Commits: b.Commits, Rest: b.Rest, Left: b.Left, Discarded: b.Discarded}
	}
	for id, n := t.Parent, 0; id != "" && n < maxChain; n++ {
		v.Chain = append(v.Chain, id)
		p, err := src.Get(id)
		if err != nil {
			break
		}
		id = p.Parent
	}
	if t.Ran != nil || t.Summary != nil && t.Summary.ThreadID != "" {
		v.Ran = &Ran{ImageID: t.ImageID}
		if r := t.Ran; r != nil {
			v.Ran.CodexVersion, v.Ran.Model, v.Ran.Effort, v.Ran.Provider = r.CodexVersion, r.Model, r.Effort, r.Provider
		}
		if t.Summary != nil {
			v.Ran.ThreadID = t.Summary.ThreadID
		}
	}
	if t.Image != "" || t.BaseImage != "" || t.ImageBuild != nil {
		v.Image = &Image{Ref: t.Image, ID: t.ImageID, Base: t.BaseImage, Source: t.ImageSource,
			Notes: append(append([]string(nil), t.ImageNotes...), runner.LackNotes(t)...)}
	}
	if e := t.Engine; e != nil {
		v.Engine = &Engine{Name: e.Name, Unenforced: e.Unenforced, Warnings: e.Warnings}
	}
	if !t.StartedAt.IsZero() {
		end := t.FinishedAt
		if end.IsZero() {
			end = time.Now()
		}
		v.DurationMs = end.Sub(t.StartedAt).Milliseconds()
	}
	if result == "" {
		result = t.Result
	}
	v.Result = Clip(result, MaxResultChars)
	v.ResultTruncated = len(v.Result) < len(result)
	if s := t.Summary; s != nil {
		for _, c := range s.Commands {
			v.Commands = append(v.Commands, Command{Command: c.Command, ExitCode: c.ExitCode})
		}
		v.FilesChanged = s.FilesChanged
		for _, f := range s.Findings {
			v.Findings = append(v.Findings, Finding(f))
		}
		v.HostRunFiles = s.HostRunFiles
		if s.Usage != (store.Usage{}) {
			v.Usage = &Usage{s.Usage.InputTokens, s.Usage.CachedInputTokens, s.Usage.OutputTokens, s.Usage.ReasoningOutputTokens}
		}
	}
	if p, ok := src.Progress(t.ID); ok && !t.Status.Final() {
		v.Now = p.Line
	}
	v.Next = next(t, on)
	return v
}

// Text renders the view for a reader; it is also the view's summary.
func (v Task) Text() string {
	var b strings.Builder
	fmt.Fprintf(&b, "Task %s: %s", v.TaskID, v.Status)
	if v.DurationMs > 0 {
		fmt.Fprintf(&b, " after %s", (time.Duration(v.DurationMs) * time.Millisecond).Round(100*time.Millisecond))
	}
	if v.ExitCode != nil && *v.ExitCode != 0 {
		fmt.Fprintf(&b, " (exit code %d)", *v.ExitCode)
	}
	fmt.Fprintf(&b, "\nRepository: %s (sandbox %s)", v.WorkingDirectory, v.Sandbox)
	if v.Model != "" {
		fmt.Fprintf(&b, ", model %s", v.Model)
	}
	if v.ReasoningEffort != "" {
		fmt.Fprintf(&b, ", effort %s", v.ReasoningEffort)
	}
	if len(v.Chain) > 0 {
		fmt.Fprintf(&b, "\nReply to: %s", strings.Join(v.Chain, " ← "))
	}
	if r := v.Ran; r != nil && (r.Model != "" || r.CodexVersion != "") {
		var parts []string
		if r.CodexVersion != "" {
			parts = append(parts, "Codex "+r.CodexVersion)
		}
		if r.Model != "" {
			parts = append(parts, "model "+r.Model)
		}
		if r.Effort != "" {
			parts = append(parts, "effort "+r.Effort)
		} else if r.Model != "" {
			parts = append(parts, "effort: the model's default")
		}
		if r.Provider != "" {
			parts = append(parts, "provider "+r.Provider)
		}
		if r.ThreadID != "" {
			parts = append(parts, "session "+r.ThreadID)
		}
		fmt.Fprintf(&b, "\nRan: %s (as the task's Codex session file reports them)", strings.Join(parts, ", "))
	}
	if im := v.Image; im != nil && (im.Base != "" || len(im.Notes) > 0 || strings.Contains(im.Source, "build")) {
		// The Codex image alone is the usual case, and says nothing new.
		fmt.Fprintf(&b, "\nImage: ")
		switch {
		case im.Base != "":
			fmt.Fprintf(&b, "%s with Codex", im.Base)
		default:
			fmt.Fprintf(&b, "built from the repository's dev container Dockerfile, with Codex")
		}
		if im.Ref != "" && im.Base != im.Ref {
			fmt.Fprintf(&b, " (%s", im.Ref)
			if im.ID != "" {
				fmt.Fprintf(&b, ", %s", ShortID(im.ID))
			}
			b.WriteString(")")
		}
		fmt.Fprintf(&b, ", chosen by %s", im.Source)
		for _, n := range im.Notes {
			fmt.Fprintf(&b, "\nImage note: %s", n)
		}
	}
	if e := v.Engine; e != nil && (len(e.Unenforced) > 0 || len(e.Warnings) > 0) {
		// An engine that enforces every limit and warns of nothing is the
		// usual case, and says nothing new.
		fmt.Fprintf(&b, "\nEngine: %s", e.Name)
		if len(e.Unenforced) > 0 {
			fmt.Fprintf(&b, "; limits NOT enforced: %s (accepted by limits.acceptUnenforced)", strings.Join(e.Unenforced, ", "))
		}
		for _, w := range e.Warnings {
			fmt.Fprintf(&b, "\nEngine warning: %s", w)
		}
	}
	if br := v.Branch; br != nil {
		writeBranch(&b, br)
	}
	fmt.Fprintf(&b, "\nTask: %s\n", FirstLine(v.Task))
	if v.Error != "" {
		fmt.Fprintf(&b, "Reason: %s\n", v.Error)
	}
	if v.Now != "" {
		fmt.Fprintf(&b, "Now: %s\n", v.Now)
	}
	if len(v.Commands) > 0 {
		fmt.Fprintf(&b, "Commands run (%d):\n", len(v.Commands))
		for _, c := range v.Commands {
			if c.ExitCode != nil {
				fmt.Fprintf(&b, "  $ %s → exit %d\n", c.Command, *c.ExitCode)
			} else {
				fmt.Fprintf(&b, "  $ %s\n", c.Command)
			}
		}
	}
	if len(v.FilesChanged) > 0 {
		fmt.Fprintf(&b, "Files changed: %s\n", strings.Join(v.FilesChanged, ", "))
	}
	if len(v.Findings) > 0 {
		writeFindings(&b, v.Findings)
	}
	if len(v.HostRunFiles) > 0 {
		fmt.Fprintf(&b, "Review before running anything here — changed files that host tools run or obey: %s\n", strings.Join(v.HostRunFiles, ", "))
	}
	if v.Usage != nil {
		fmt.Fprintf(&b, "Tokens: %d in (%d cached), %d out\n", v.Usage.InputTokens, v.Usage.CachedInputTokens, v.Usage.OutputTokens)
	}
	if v.Result != "" {
		fmt.Fprintf(&b, "\nResult:\n%s\n", v.Result)
		if v.ResultTruncated {
			fmt.Fprintf(&b, "[result cut; the whole message is in %s]\n", v.ResultFile)
		}
	}
	if len(v.LogTail) > 0 {
		fmt.Fprintf(&b, "\nLog (last %d lines", len(v.LogTail))
		if v.LogTailCut {
			b.WriteString("; earlier lines left out")
		}
		fmt.Fprintf(&b, "; full log: %s):\n", v.LogFile)
		for _, l := range v.LogTail {
			b.WriteString("  " + strings.ReplaceAll(l, "\n", "\n  ") + "\n")
		}
	}
	if v.Next != "" {
		fmt.Fprintf(&b, "\nNext: %s\n", v.Next)
	}
	return strings.TrimRight(b.String(), "\n")
}

// next says what to do now, in the words of the surface the reader is on.
func next(t *store.Task, on Surface) string {
	// A review's session continues too once a usage limit resets; a
	// review that ended is not a conversation to go on with.
	session := t.Summary != nil && t.Summary.ThreadID != ""
	limited := strings.HasPrefix(t.Error, runner.UsageLimitReached) && session
	continues := t.Review == nil && session
	if b := t.Branch; b != nil && b.Head != "" && !b.Discarded && t.Status.Final() {
		if on == CLI {
			return fmt.Sprintf("review it with `codex-connector diff %s`, bring it into your work tree with `codex-connector apply %s`, or drop it with `codex-connector discard %s`; the branch %s stays until you do", t.ID, t.ID, t.ID, b.Name)
		}
		return fmt.Sprintf("review its changes with codex_diff (taskId %s), bring them into the work tree as uncommitted changes with codex_apply, or drop the branch with codex_discard; codex_reply continues on the branch", t.ID)
	}
	if on == CLI {
		switch {
		case t.Status == store.Queued:
			return fmt.Sprintf("queued: it starts as soon as a slot is free; `codex-connector logs -f %s` follows it, `codex-connector cancel %s` drops it", t.ID, t.ID)
		case t.Status == store.Running:
			return fmt.Sprintf("`codex-connector logs -f %s` follows it to its end; `codex-connector cancel %s` stops it", t.ID, t.ID)
		case limited:
			return fmt.Sprintf("once the limit resets, codex_reply (from Claude Code) with taskId %s and a message such as \"go on\" continues the task where it stopped", t.ID)
		case continues:
			return fmt.Sprintf("to continue this conversation, ask Claude Code to call codex_reply with taskId %s", t.ID)
		}
		return ""
	}
	switch {
	case t.Status == store.Queued:
		return fmt.Sprintf("queued: it starts as soon as a slot is free; call codex_status with taskId %s to follow it, or codex_cancel to drop it", t.ID)
	case t.Status == store.Running:
		return fmt.Sprintf("call codex_status with taskId %s and waitSeconds 110 to wait for its end (again while it runs); codex_cancel stops it", t.ID)
	case limited:
		return fmt.Sprintf("once the limit resets, codex_reply with taskId %s and a message such as \"go on\" continues the task where it stopped", t.ID)
	case continues:
		return fmt.Sprintf("to continue this conversation, call codex_reply with taskId %s", t.ID)
	}
	return ""
}

func writeBranch(b *strings.Builder, br *Branch) {
	base := ShortHash(br.Base)
	if br.BaseRef != "" {
		base = br.BaseRef + " (" + base + ")"
	}
	switch {
	case br.Discarded:
		fmt.Fprintf(b, "\nBranch: %s, discarded", br.Name)
	case br.Head != "":
		var parts []string
		if br.Commits > 0 {
			parts = append(parts, fmt.Sprintf("%d commit(s) of the task's", br.Commits))
		}
		if br.Rest {
			parts = append(parts, "one of what it left uncommitted")
		}
		if len(parts) == 0 {
			parts = append(parts, "no change")
		}
		fmt.Fprintf(b, "\nBranch: %s at %s, from %s: %s", br.Name, ShortHash(br.Head), base, strings.Join(parts, ", then "))
	default:
		fmt.Fprintf(b, "\nBranch: %s, from %s, made when the task ends", br.Name, base)
	}
	if len(br.Carried) > 0 {
		fmt.Fprintf(b, "\nCarried in (your uncommitted changes, the first commit on the branch, not in its diff): %s", strings.Join(br.Carried, ", "))
	}
	for _, l := range br.Left {
		fmt.Fprintf(b, "\nLeft out: %s", l)
	}
}

// ShortHash is a commit's hash as git abbreviates it.
func ShortHash(h string) string { return h[:min(len(h), 12)] }

func writeFindings(b *strings.Builder, findings []Finding) {
	fmt.Fprintf(b, "Findings (%d):\n", len(findings))
	for _, f := range findings {
		where := f.File
		if f.Line > 0 {
			where += fmt.Sprintf(":%d", f.Line)
		}
		fmt.Fprintf(b, "  [%s] %s — %s\n", f.Severity, where, f.Text)
	}
}
