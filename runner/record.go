package runner

import (
	"encoding/json"

	"github.com/codex-connector/codex-connector/store"
)

// A record is read whole by every list and status call, and much of what it
// holds comes from a task: its events (which a task can fake by writing to
// the container's stdout), its last message, paths it made. So every field
// is clipped, and the whole record is held within limits.recordKB.

// maxReason bounds one reason added to a record's error: reasons quote
// paths and messages a task chose.
const maxReason = 2000

// maxError bounds a record's error, which gathers several reasons.
const maxError = 4 * maxReason

// maxPath bounds a file path in a summary.
const maxPath = 512

// maxField bounds the other text fields of a record (paths, names, ids),
// which only a damaged record fills beyond reason.
const maxField = 4096

// maxArg is the most one command-line argument may hold on Linux
// (MAX_ARG_STRLEN, 128 KiB with its NUL), less a margin: the task text is
// one.
const maxArg = 120 << 10

// maxPrompt is the longest task text a record of this cap takes.
func maxPrompt(recordBytes int64) int {
	return int(min(recordBytes/4, maxArg))
}

// clipSummary holds each field of a summary within its bound.
func clipSummary(s *store.Summary) {
	s.ThreadID = clip(s.ThreadID)
	if len(s.Commands) > maxCommands {
		s.Commands = s.Commands[:maxCommands]
	}
	for i := range s.Commands {
		s.Commands[i].Command = clip(s.Commands[i].Command)
	}
	if len(s.FilesChanged) > maxFiles {
		s.FilesChanged = s.FilesChanged[:maxFiles]
	}
	for i := range s.FilesChanged {
		s.FilesChanged[i] = clipN(s.FilesChanged[i], maxPath)
	}
	if len(s.Errors) > maxErrors {
		s.Errors = s.Errors[:maxErrors]
	}
	for i := range s.Errors {
		s.Errors[i] = clip(s.Errors[i])
	}
	s.LastMessage = clipN(s.LastMessage, maxResultInRecord)
	for _, n := range []*int64{&s.Usage.InputTokens, &s.Usage.CachedInputTokens, &s.Usage.OutputTokens, &s.Usage.ReasoningOutputTokens} {
		*n = max(*n, 0)
	}
}

// recordCut is said in the error of a record whose summary was cut to fit.
const recordCut = "the summary was cut to fit the record's cap (limits.recordKB)"

// fitRecord clips every field of t, then, while its encoding is larger
// than limit, cuts the summary's lists and texts from their ends, and says
// so in the error.
func fitRecord(t *store.Task, limit int64) {
	t.Prompt = clipN(t.Prompt, maxPrompt(limit))
	// Not the id: it is the record's key.
	for _, f := range []*string{&t.WorkingDirectory, &t.RepoRoot, &t.Sandbox, &t.Model, &t.Image,
		&t.ImageID, &t.BaseImage, &t.ImageSource, &t.ContainerID, &t.ContainerName, &t.User, &t.Follower} {
		*f = clipN(*f, maxField)
	}
	if len(t.ImageLacks) > 8 {
		t.ImageLacks = t.ImageLacks[:8]
	}
	if len(t.ImageNotes) > 8 {
		t.ImageNotes = t.ImageNotes[:8]
	}
	for i := range t.ImageNotes {
		t.ImageNotes[i] = clipN(t.ImageNotes[i], maxReason)
	}
	t.Error = clipN(t.Error, maxError)
	t.StopReason = clipN(t.StopReason, maxReason)
	t.Result = clipN(t.Result, maxResultInRecord)
	if t.Summary != nil {
		clipSummary(t.Summary)
	}
	if encodedSize(t) <= limit {
		return
	}
	// Room for the note that says what happened.
	room := limit - int64(len(recordCut)) - 16
	for encodedSize(t) > room && shrink(t) {
	}
	t.Error = joinReason(t.Error, recordCut)
}

// shrink cuts one more piece of t, least useful first; false when nothing
// is left to cut.
func shrink(t *store.Task) bool {
	half := func(s string) string {
		if len(s) <= 16 {
			return ""
		}
		return clipN(s, len(s)/2)
	}
	s := t.Summary
	switch {
	case s != nil && len(s.FilesChanged) > 0:
		s.FilesChanged = s.FilesChanged[:len(s.FilesChanged)/2]
	case s != nil && len(s.Commands) > 0:
		s.Commands = s.Commands[:len(s.Commands)/2]
	case s != nil && len(s.Errors) > 0:
		s.Errors = s.Errors[:len(s.Errors)/2]
	case s != nil && len(s.Findings) > 0:
		s.Findings = s.Findings[:len(s.Findings)/2]
	case s != nil && s.LastMessage != "":
		s.LastMessage = half(s.LastMessage)
	case t.Result != "":
		t.Result = half(t.Result)
	case len(t.Error) > 200:
		t.Error = half(t.Error)
	case len(t.Prompt) > 200:
		t.Prompt = half(t.Prompt)
	default:
		return false
	}
	return true
}

func encodedSize(t *store.Task) int64 {
	data, err := json.Marshal(t)
	if err != nil {
		return 0
	}
	return int64(len(data))
}

// update is store.Update with the record held within its cap, whatever fn
// (or an earlier writer, or damage) put in it.
func (r *Runner) update(id string, fn func(*store.Task) error) (*store.Task, error) {
	return r.store.Update(id, func(t *store.Task) error {
		if err := fn(t); err != nil {
			return err
		}
		fitRecord(t, r.cfg.Limits.RecordBytes)
		return nil
	})
}

// checkPrompt refuses a task text its record could not hold.
func (r *Runner) checkPrompt(prompt string) error {
	if n := maxPrompt(r.cfg.Limits.RecordBytes); len(prompt) > n {
		return invalid("the task text is %d bytes, more than %d (a quarter of limits.recordKB, and at most %d, what one command-line argument holds) — shorten it, or put the details in a file in the repository and ask Codex to read it", len(prompt), n, maxArg)
	}
	return nil
}
