package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"
	"unicode/utf16"

	dockerbe "github.com/codex-connector/codex-connector/backend/docker"

	"github.com/codex-connector/codex-connector/runner"
	"github.com/codex-connector/codex-connector/store"
	"github.com/codex-connector/codex-connector/view"
)

// The commands that read and steer tasks. They use the same runner, records
// and views as the MCP tools: `tasks` is codex_tasks, `status` is
// codex_status, `cancel` is codex_cancel.

// errNoHome says that no task ever ran with this data directory.
var errNoHome = errors.New("no tasks here yet")

// tasksOf opens the home's tasks for reading and steering, without
// starting a host: this process runs no task.
func (e *env) tasksOf() (*runner.Runner, error) {
	if _, err := os.Stat(filepath.Join(e.cfg.Home, "tasks.db")); errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%w: %s has no tasks.db — start a task with `codex-connector run` or from Claude Code, or set CODEX_CONNECTOR_HOME to the data directory you use", errNoHome, e.cfg.Home)
	}
	st := store.New(filepath.Join(e.cfg.Home, "tasks.db"), e.cfg.LockTimeout)
	return runner.New(context.Background(), runnerConfig(e.cfg, ""), dockerbe.New(e.docker), st, func(string, ...any) {})
}

// theTask reads the one task id of args and opens the home's tasks.
func (e *env) theTask(args []string) (*runner.Runner, string, error) {
	id, err := e.oneArg(args, "task id")
	if err != nil {
		return nil, "", err
	}
	r, err := e.tasksOf()
	return r, id, err
}

// printJSON prints v as JSON for programs, which a person may read at a
// terminal too. encoding/json escapes the C0 controls in strings but not
// the C1 ones, nor the other characters a person does not see (a
// right-to-left override in a file name): all are escaped, as JSON allows,
// so the JSON is the same and shows what is there.
func (e *env) printJSON(v any) error {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	var b strings.Builder
	for _, r := range string(data) {
		// Newlines are the indentation's: encoding/json escapes those in strings.
		if invisible(r) && r != '\n' {
			for _, u := range utf16.Encode([]rune{r}) {
				fmt.Fprintf(&b, `\u%04x`, u)
			}
			continue
		}
		b.WriteRune(r)
	}
	b.WriteByte('\n')
	_, err = io.WriteString(e.exact, b.String())
	return err
}

type tasksOpts struct {
	status string
	limit  int
	json   bool
}

var tasksCommand = &command{
	name: "tasks", args: "[--status FILTER] [--limit N] [--json]", summary: "list tasks, newest first",
	help: `Lists tasks, newest first, as a table: id, status, age, duration, repository
and task, with the reason of a task that did not complete under its row. It
is what codex_tasks returns in Claude Code.

FILTER is all, running (queued or running), completed, failed (failed,
cancelled or timed out), or exactly queued, cancelled or timed_out.`,
	needs: needsDocker,
	flags: func(fs *flag.FlagSet) any {
		o := &tasksOpts{}
		fs.StringVar(&o.status, "status", "all", "which tasks: all, running, completed, failed, queued, cancelled, timed_out")
		fs.IntVar(&o.limit, "limit", 20, fmt.Sprintf("at most this many tasks (1 to %d)", view.MaxListLimit))
		fs.BoolVar(&o.json, "json", false, "print the list as JSON (the structure codex_tasks returns)")
		return o
	},
	run: func(e *env, opts any, args []string) error {
		o := opts.(*tasksOpts)
		if len(args) > 0 {
			return e.cmd.usagef("tasks takes no arguments, got %q", args[0])
		}
		statuses, ok := view.Filters[o.status]
		if !ok {
			return e.cmd.usagef("--status %q is not a filter: use one of %v", o.status, view.FilterNames)
		}
		if o.limit < 1 || o.limit > view.MaxListLimit {
			return e.cmd.usagef("--limit must be from 1 to %d, got %d", view.MaxListLimit, o.limit)
		}
		r, err := e.tasksOf()
		if errors.Is(err, errNoHome) {
			fmt.Fprintf(e.stdout, "No tasks (filter: %s).\n", o.status)
			return nil
		}
		if err != nil {
			return err
		}
		tasks, unreadable, err := r.List(store.Filter{Statuses: statuses, Limit: o.limit + 1})
		if err != nil {
			return err
		}
		v := view.ListOf(tasks, unreadable, o.status, o.limit, time.Now(), view.CLI)
		if o.json {
			return e.printJSON(v)
		}
		fmt.Fprintln(e.stdout, v.Summary)
		return nil
	},
}

type statusOpts struct {
	tail int
	wait time.Duration
	json bool
}

var statusCommand = &command{
	name: "status", args: "[--tail N] [--wait DURATION] [--json] ID", summary: "show one task: state, commands, files, result, log tail",
	help: `Shows one task as codex_status does: its state and times, what Codex is doing
or did (commands with exit codes, files changed), the result once it ended,
and the last lines of its log, rendered.`,
	needs: needsDocker,
	flags: func(fs *flag.FlagSet) any {
		o := &statusOpts{}
		fs.IntVar(&o.tail, "tail", 10, fmt.Sprintf("recent log lines to show (0 to %d)", view.MaxTailLines))
		fs.DurationVar(&o.wait, "wait", 0, "wait up to this long (e.g. 5m) for the task to end first")
		fs.BoolVar(&o.json, "json", false, "print the task as JSON (the structure codex_status returns)")
		return o
	},
	run: func(e *env, opts any, args []string) error {
		o := opts.(*statusOpts)
		if o.tail < 0 || o.tail > view.MaxTailLines {
			return e.cmd.usagef("--tail must be from 0 to %d, got %d", view.MaxTailLines, o.tail)
		}
		r, id, err := e.theTask(args)
		if err != nil {
			return err
		}
		t, err := r.Get(id)
		if err != nil {
			return err
		}
		if o.wait > 0 && !t.Status.Final() {
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			ctx, cancel := context.WithTimeout(ctx, o.wait)
			t2, err := r.Wait(ctx, id)
			cancel()
			stop()
			if err == nil || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
				if t2 != nil {
					t = t2
				}
			} else {
				return err
			}
		}
		return e.printTask(r, t, o.tail, o.json)
	},
}

// printTask prints the task's view, with n lines of its log.
func (e *env) printTask(r *runner.Runner, t *store.Task, n int, asJSON bool) error {
	var result string
	if t.Status.Final() {
		result = view.Result(r, t.ID)
	}
	v := view.Of(r, t, result, view.CLI)
	if n > 0 {
		lines, cut, err := r.Tail(t.ID, n)
		if err != nil {
			return fmt.Errorf("read the log of task %s: %w", t.ID, err)
		}
		v.LogTail, v.LogTailCut = lines, cut
	}
	v.Summary = v.Text()
	if asJSON {
		return e.printJSON(v)
	}
	fmt.Fprintln(e.stdout, v.Summary)
	return nil
}

var cancelCommand = &command{
	name: "cancel", args: "ID", summary: "stop a queued or running task",
	help: `Stops a task: a queued one never starts; a running one gets SIGTERM, then
SIGKILL after the stop grace. Its log and what it changed so far are kept.
Cancelling a task that ended changes nothing.`,
	needs: needsDocker,
	run: func(e *env, _ any, args []string) error {
		r, id, err := e.theTask(args)
		if err != nil {
			return err
		}
		t, err := r.Cancel(context.Background(), id)
		if errors.Is(err, context.DeadlineExceeded) {
			// The stop reached the engine; the end is recorded by whoever
			// follows the task, and none did in time.
			err = fmt.Errorf("task %s is stopped, but its end is not recorded yet: a server of %s records it, or `codex-connector follow` when none runs", id, e.cfg.Home)
		}
		if t != nil {
			if perr := e.printTask(r, t, 0, false); perr != nil {
				return perr
			}
		}
		return err
	},
}

var pruneCommand = &command{
	name: "prune", args: "[AGE]", summary: "remove tasks that ended more than AGE (e.g. 30d) ago",
	help: `Removes the tasks that ended more than AGE ago (e.g. 30d, 12h), with their
logs and results, now. Without AGE it uses the retention of config.json.
Tasks that have not ended are never removed.`,
	needs: needsDocker,
	run: func(e *env, _ any, args []string) error {
		if len(args) > 1 {
			return e.cmd.usagef("one AGE, got %d arguments", len(args))
		}
		return prune(e.cfg, e.docker, args)
	},
}

var cachesCommand = &command{
	name: "caches", args: "[remove]", summary: "list (or remove) the package cache volumes of your tasks",
	help: `Lists the package cache volumes (go, npm, pip, cargo) your tasks share, with
their sizes; "caches remove" removes them, and the next task makes them anew.`,
	needs: needsDocker,
	run: func(e *env, _ any, args []string) error {
		if len(args) > 1 || len(args) == 1 && args[0] != "remove" {
			return e.cmd.usagef("caches takes nothing, or remove")
		}
		return caches(e.docker, args)
	},
}
