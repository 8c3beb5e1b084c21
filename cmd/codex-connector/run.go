package main

import (
	"bufio"
	"context"
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

	"github.com/codex-connector/codex-connector/runner"
	"github.com/codex-connector/codex-connector/store"
	"github.com/codex-connector/codex-connector/view"
)

// statusEvery is how often the terminal's status line is drawn again.
const statusEvery = 250 * time.Millisecond

type runOpts struct {
	dir       string
	sandbox   string
	workspace string
	base      string
	model     string
	effort    string
	timeout   time.Duration
	detach    bool
}

var runCommand = &command{
	name: "run", args: "[flags] TASK", summary: "run a task in this repository and watch it",
	help: `Runs TASK (the prompt for Codex; "-" reads it from stdin) in the git repository
of the current directory, or of -C DIR, in its own container, as codex_agent
does. It shows what Codex does while it works (elapsed time, what it is
doing now, the commands with their exit codes, the files it changes), then
the result and a one-line summary. It exits 0 when the task completed, 1
when it ended otherwise, and 130 when you left it running.

Ctrl-C asks whether to cancel the task or leave it running; a task left
running, or started with --detach, goes on after this command ends (follow
it with codex-connector logs -f ID). When the output is not a terminal it
prints plain lines, and Ctrl-C leaves the task running. A "--" ends the
flags: what follows is the task, however it looks.`,
	needs: needsDocker,
	flags: func(fs *flag.FlagSet) any {
		o := &runOpts{}
		fs.StringVar(&o.dir, "C", ".", "the repository (or a directory in it) to run in")
		fs.StringVar(&o.sandbox, "sandbox", "", "read-only, workspace-write or danger-full-access (default: danger-full-access, or the maxSandbox of config.json)")
		fs.StringVar(&o.workspace, "workspace", "", "shared (in the work tree itself) or branch (a checkout of its own, collected into the branch codex/ID; see codex-connector help diff) (default: shared, or the workspace of config.json)")
		fs.StringVar(&o.base, "base", "", "with --workspace branch: the branch, tag or commit to start from (default: HEAD with your uncommitted changes)")
		fs.StringVar(&o.model, "model", "", "the model, e.g. gpt-5-codex (default: Codex's)")
		fs.StringVar(&o.effort, "effort", "", "reasoning effort: "+strings.Join(runner.ReasoningEfforts, ", ")+" (default: the model's)")
		fs.DurationVar(&o.timeout, "timeout", 0, "stop the task after it has run this long, e.g. 30m (default: no limit)")
		fs.BoolVar(&o.detach, "detach", false, "start the task and return at once; it runs on")
		fs.BoolVar(&o.detach, "d", false, "the same as --detach")
		return o
	},
	run: runTask,
}

func runTask(e *env, opts any, args []string) error {
	o := opts.(*runOpts)
	if len(args) == 0 {
		return e.cmd.usagef("say what the task is, e.g. codex-connector run \"make the tests pass\"")
	}
	prompt := strings.Join(args, " ")
	if prompt == "-" {
		data, err := io.ReadAll(io.LimitReader(e.stdin, 1<<20))
		if err != nil {
			return fmt.Errorf("read the task from stdin: %w", err)
		}
		prompt = string(data)
	}
	if strings.TrimSpace(prompt) == "" {
		return e.cmd.usagef("the task is empty")
	}
	if o.timeout < 0 {
		return e.cmd.usagef("--timeout must not be negative")
	}
	dir, err := filepath.Abs(o.dir)
	if err != nil {
		return fmt.Errorf("find the directory %s: %w", o.dir, err)
	}
	if o.detach && !e.cfg.FollowAfterExit {
		return errors.New("--detach needs the detached follower to take the task on, and followAfterExit is false in config.json (or CODEX_CONNECTOR_FOLLOW_AFTER_EXIT): run without --detach, or turn it back on")
	}
	h, err := openHost(e.cfg, e.docker, "codex-connector run", false)
	if err != nil {
		return err
	}
	defer h.close()
	if err := h.prepare(); err != nil {
		return err
	}

	t, err := h.runner.Start(context.Background(), runner.Spec{
		Prompt: prompt, WorkingDirectory: dir, Sandbox: o.sandbox,
		Workspace: o.workspace, Base: o.base,
		Model: o.model, Effort: o.effort, Timeout: o.timeout,
	})
	if err != nil {
		return inCLIWords(err)
	}
	if o.detach {
		fmt.Fprintf(e.stdout, "%s\n", t.ID)
		fmt.Fprintf(e.stderr, "Task %s %s in %s (sandbox %s); it runs on after this command.\n"+
			"Follow it: codex-connector logs -f %s · status: codex-connector status %s · stop it: codex-connector cancel %s\n",
			t.ID, t.Status, t.RepoRoot, t.Sandbox, t.ID, t.ID, t.ID)
		return nil
	}
	return watchTask(e, h.runner, t)
}

// watchTask shows a task's log and progress until it ends, or until the
// person leaves it running.
func watchTask(e *env, r *runner.Runner, t *store.Task) error {
	tty := e.terminal != nil
	sl := &statusLine{out: e.stdout}
	if tty {
		sl.term, sl.width = e.terminal, terminalWidth(e.terminal)
	}
	fmt.Fprintf(e.stdout, "Task %s: %s in %s (sandbox %s)\n", t.ID, firstWords(t.Prompt), t.RepoRoot, t.Sandbox)

	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sigs)

	l := &logReader{path: r.LogPath(t.ID)}
	defer l.close()
	start := time.Now()
	tick := time.NewTicker(statusEvery)
	defer tick.Stop()
	for {
		cur, err := look(r, t.ID)
		if err != nil {
			return err
		}
		// Read after the look: a task seen ended has its whole log.
		ended := cur != nil && cur.Status.Final()
		if err := l.render(sl.println, ended); err != nil {
			return fmt.Errorf("read the log of task %s: %w", t.ID, err)
		}
		if ended {
			sl.clear()
			return ending(e, r, cur)
		}
		if cur != nil {
			p, _ := r.Progress(t.ID)
			sl.show(view.ProgressLine(p, string(cur.Status), time.Since(start)))
		}
		select {
		case <-tick.C:
		case <-r.Done(t.ID):
			// Its end is recorded: shown now, not at the next tick.
		case sig := <-sigs:
			sl.clear()
			if !tty || sig != os.Interrupt || !isTerminal(e.stdin) {
				return leftRunning(e, t.ID)
			}
			if !askCancel(e, t.ID, sigs) {
				return leftRunning(e, t.ID)
			}
			fmt.Fprintf(e.stderr, "cancelling task %s…\n", t.ID)
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			_, err := r.Cancel(ctx, t.ID)
			cancel()
			if err != nil {
				return err
			}
		}
	}
}

// askCancel asks whether to cancel the task; another Ctrl-C, or anything
// but yes, leaves it running.
func askCancel(e *env, id string, sigs <-chan os.Signal) bool {
	fmt.Fprintf(e.stderr, "Cancel task %s? y cancels it; Enter (or Ctrl-C) leaves it running: ", id)
	answer := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(e.stdin).ReadString('\n')
		answer <- strings.ToLower(strings.TrimSpace(line))
	}()
	select {
	case a := <-answer:
		return a == "y" || a == "yes"
	case <-sigs:
		fmt.Fprintln(e.stderr)
		return false
	}
}

// leftRunning says how to find the task again. The command fails (130, as
// after an interrupt) because the task has not completed: `run X && git
// commit` must not go on while Codex still changes files.
func leftRunning(e *env, id string) error {
	fmt.Fprintf(e.stderr, "Task %s runs on. Follow it: codex-connector logs -f %s · stop it: codex-connector cancel %s\n", id, id, id)
	if !e.cfg.FollowAfterExit {
		fmt.Fprintf(e.stderr, "followAfterExit is false: it goes on only while a server of %s runs, or `codex-connector follow`\n", e.cfg.Home)
	}
	return exitCode(130)
}

// inCLIWords puts the names of the MCP parameters in a refusal into the
// words of the command line.
func inCLIWords(err error) error {
	if !errors.Is(err, runner.ErrInvalidTask) {
		return err
	}
	msg := strings.NewReplacer("workingDirectory", "the directory (-C)", "reasoningEffort", "--effort", "timeoutMs", "--timeout").Replace(err.Error())
	return errors.New(msg)
}

// ending prints the result and the one-line summary, and fails the
// command when the task did not complete.
func ending(e *env, r *runner.Runner, t *store.Task) error {
	v := view.Of(r, t, view.Result(r, t.ID), view.CLI)
	fmt.Fprintln(e.stdout, v.Ending())
	if t.Status != store.Completed {
		return exitCode(1)
	}
	return nil
}

// exitCode ends the process with the code, having said everything.
type exitCode int

func (c exitCode) Error() string { return fmt.Sprintf("exit code %d", int(c)) }

func firstWords(s string) string {
	s = view.FirstLine(s)
	if len(s) > 60 {
		s = view.Clip(s, 57) + "…"
	}
	return fmt.Sprintf("%q", s)
}
