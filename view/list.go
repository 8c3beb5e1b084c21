package view

import (
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/codex-connector/codex-connector/store"
)

// Filters maps a list filter to task statuses. The brief's four stay as
// they were: "running" is every task not yet finished (queued ones
// included) and "failed" every task that did not complete (cancelled and
// timed out included); the exact statuses can be asked for too.
var Filters = map[string][]store.Status{
	"all":       nil,
	"running":   {store.Queued, store.Running},
	"completed": {store.Completed},
	"failed":    {store.Failed, store.Cancelled, store.TimedOut},
	"queued":    {store.Queued},
	"cancelled": {store.Cancelled},
	"timed_out": {store.TimedOut},
}

// FilterNames are the keys of Filters, in the order help shows them.
var FilterNames = []string{"all", "running", "completed", "failed", "queued", "cancelled", "timed_out"}

// List is a list of tasks: the structured result of codex_tasks, and what
// `codex-connector tasks` prints.
type List struct {
	Summary    string   `json:"summary" jsonschema:"the whole list as text"`
	Tasks      []Item   `json:"tasks"`
	Truncated  bool     `json:"truncated,omitempty" jsonschema:"more tasks matched than the limit"`
	Unreadable []string `json:"unreadable,omitempty" jsonschema:"ids of task records that could not be read"`
}

// Item is one task of a list.
type Item struct {
	TaskID           string `json:"taskId"`
	Status           string `json:"status"`
	Task             string `json:"task"`
	WorkingDirectory string `json:"workingDirectory"`
	Sandbox          string `json:"sandbox"`
	CreatedAt        string `json:"createdAt"`
	FinishedAt       string `json:"finishedAt,omitempty"`
	DurationMs       int64  `json:"durationMs,omitempty" jsonschema:"running time so far, or in all once finished"`
	Error            string `json:"error,omitempty"`
}

// ListOf makes the list of tasks (newest first, at most limit of them;
// more means the list was cut) as it stands at now.
func ListOf(tasks []*store.Task, unreadable []string, filter string, limit int, now time.Time, on Surface) List {
	v := List{Tasks: []Item{}, Unreadable: unreadable}
	if len(tasks) > limit {
		tasks, v.Truncated = tasks[:limit], true
	}
	for _, t := range tasks {
		v.Tasks = append(v.Tasks, Item{TaskID: t.ID, Status: string(t.Status), Task: Clip(FirstLine(t.Prompt), 120),
			WorkingDirectory: t.WorkingDirectory, Sandbox: t.Sandbox, CreatedAt: stamp(t.CreatedAt), FinishedAt: stamp(t.FinishedAt),
			DurationMs: duration(t, now).Milliseconds(), Error: Clip(t.Error, 200)})
	}
	v.Summary = v.text(filter, now, on)
	return v
}

// duration is how long the task has run: so far, or in all.
func duration(t *store.Task, now time.Time) time.Duration {
	if t.StartedAt.IsZero() {
		return 0
	}
	end := t.FinishedAt
	if end.IsZero() {
		end = now
	}
	return end.Sub(t.StartedAt)
}

// text is the list as a table: id, status, age, duration, repository and
// task, with a failure's reason under its row.
func (v List) text(filter string, now time.Time, on Surface) string {
	var b strings.Builder
	if len(v.Tasks) == 0 {
		fmt.Fprintf(&b, "No tasks (filter: %s).", filter)
		return b.String()
	}
	rows := [][]string{{"ID", "STATUS", "AGE", "DURATION", "REPOSITORY", "TASK"}}
	for _, it := range v.Tasks {
		created, _ := time.Parse(time.RFC3339, it.CreatedAt)
		dur := "-"
		if it.DurationMs > 0 {
			dur = Age(time.Duration(it.DurationMs) * time.Millisecond)
		}
		task := it.Task
		if len(task) > 60 {
			task = Clip(task, 59) + "…"
		}
		rows = append(rows, []string{it.TaskID, it.Status, Age(now.Sub(created)), dur, it.WorkingDirectory, task})
	}
	fmt.Fprintf(&b, "%d task(s), newest first (filter: %s):\n", len(v.Tasks), filter)
	widths := make([]int, len(rows[0])-1)
	for _, r := range rows {
		for i := range widths {
			widths[i] = max(widths[i], utf8.RuneCountInString(r[i]))
		}
	}
	for n, r := range rows {
		for i, cell := range r {
			if i == len(r)-1 {
				b.WriteString(cell)
				break
			}
			b.WriteString(cell + strings.Repeat(" ", widths[i]-utf8.RuneCountInString(cell)+2))
		}
		b.WriteByte('\n')
		if n > 0 && v.Tasks[n-1].Error != "" {
			fmt.Fprintf(&b, "  └ %s\n", FirstLine(v.Tasks[n-1].Error))
		}
	}
	if v.Truncated {
		if on == CLI {
			fmt.Fprintf(&b, "(more tasks match: raise --limit, up to %d, or narrow --status)\n", MaxListLimit)
		} else {
			fmt.Fprintf(&b, "(more tasks match: raise limit, up to %d, or narrow the filter)\n", MaxListLimit)
		}
	}
	if len(v.Unreadable) > 0 {
		fmt.Fprintf(&b, "(%d task record(s) could not be read and were left out: %s)\n", len(v.Unreadable), strings.Join(v.Unreadable, ", "))
	}
	return strings.TrimRight(b.String(), "\n")
}

// Age is a duration as a person reads it at a glance: 45s, 12m, 3h5m, 4d.
func Age(d time.Duration) string {
	switch {
	case d <= 0:
		return "0s"
	case d < time.Second:
		return "<1s"
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm%02ds", int(d.Minutes()), int(d.Seconds())%60)
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh%02dm", int(d.Hours()), int(d.Minutes())%60)
	}
	return fmt.Sprintf("%dd", int(d.Hours()/24))
}
