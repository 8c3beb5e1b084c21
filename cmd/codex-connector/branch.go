package main

import (
	"context"
	"flag"
	"fmt"

	"github.com/codex-connector/codex-connector/view"
)

// The commands for a branch task's result: diff, apply, discard. They act
// on the user's repository and the record only, never on a container.

type diffOpts struct {
	stat bool
	json bool
}

var diffCommand = &command{
	name: "diff", args: "[--stat] [--json] ID [PATH...]", summary: "show a branch task's changes against where it started",
	help: `Shows the changes of a task that ran with --workspace branch: its branch
codex/ID against where it started (your uncommitted changes it started with
are not in it). Files that host tools run or obey come first, flagged. With
paths, only those files or the files below those directories.`,
	needs: needsDocker,
	flags: func(fs *flag.FlagSet) any {
		o := &diffOpts{}
		fs.BoolVar(&o.stat, "stat", false, "only the files and their line counts")
		fs.BoolVar(&o.json, "json", false, "print the diff as JSON (the structure codex_diff returns)")
		return o
	},
	run: func(e *env, opts any, args []string) error {
		o := opts.(*diffOpts)
		r, id, err := e.theTask(args[:min(len(args), 1)])
		if err != nil {
			return err
		}
		t, d, err := r.Diff(context.Background(), id, args[1:], !o.stat, 64<<20)
		if err != nil {
			return inCLIWords(err)
		}
		v := view.DiffOf(t, d, view.CLI)
		if o.json {
			return e.printJSON(v)
		}
		fmt.Fprintln(e.stdout, v.Summary)
		return nil
	},
}

var applyCommand = &command{
	name: "apply", args: "[--json] ID", summary: "bring a branch task's changes into the work tree, uncommitted",
	help: `Writes the changes of a task that ran with --workspace branch into its
repository's work tree as uncommitted changes. Nothing is committed and the
checked-out branch, HEAD and the index stay. A file you changed since the
task started is merged line by line where that is clean; on any conflict
nothing is written, the conflicting files are listed, and it exits 1.`,
	needs: needsDocker,
	flags: func(fs *flag.FlagSet) any {
		o := &diffOpts{}
		fs.BoolVar(&o.json, "json", false, "print the outcome as JSON (the structure codex_apply returns)")
		return o
	},
	run: func(e *env, opts any, args []string) error {
		o := opts.(*diffOpts)
		r, id, err := e.theTask(args)
		if err != nil {
			return err
		}
		t, a, err := r.Apply(context.Background(), id)
		if err != nil {
			return inCLIWords(err)
		}
		v := view.AppliedOf(t, a, view.CLI)
		if o.json {
			err = e.printJSON(v)
		} else {
			fmt.Fprintln(e.stdout, v.Summary)
		}
		if err == nil && !v.Applied {
			return exitCode(1) // the conflicts are said
		}
		return err
	},
}

var discardCommand = &command{
	name: "discard", args: "ID", summary: "delete a branch task's branch",
	help: `Deletes the branch codex/ID of a task that ran with --workspace branch
(unless you committed on it since) and whatever is left of its workspace.
The work tree is not touched. Nothing else deletes such a branch: prune
keeps them.`,
	needs: needsDocker,
	run: func(e *env, _ any, args []string) error {
		r, id, err := e.theTask(args)
		if err != nil {
			return err
		}
		t, err := r.Discard(context.Background(), id)
		if err != nil {
			return inCLIWords(err)
		}
		return e.printTask(r, t, 0, false)
	},
}
