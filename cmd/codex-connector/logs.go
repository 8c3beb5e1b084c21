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
	"strings"
	"syscall"
	"time"

	"github.com/codex-connector/codex-connector/runner"
	"github.com/codex-connector/codex-connector/store"
	"github.com/codex-connector/codex-connector/view"
)

// followEveryLog is how often a followed log is looked at again once
// everything in it was read.
const followEveryLog = 200 * time.Millisecond

// maxLogLine bounds one line read from a log: a task writes the log, and a
// line without end must not take the reader's memory.
const maxLogLine = 1 << 20

// logReader reads a task's log file from where it stopped, as whole lines
// or as the bytes there are.
type logReader struct {
	path    string
	f       *os.File
	r       *bufio.Reader
	partial []byte
	cut     bool // partial reached maxLogLine; the rest of the line is dropped
}

func (l *logReader) open() (bool, error) {
	if l.f != nil {
		return true, nil
	}
	f, err := os.Open(l.path)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil // not copied yet
	}
	if err != nil {
		return false, err
	}
	l.f, l.r = f, bufio.NewReaderSize(f, 64<<10)
	return true, nil
}

// next returns the next whole line, without its newline, or ok false when
// there is none yet. A line longer than maxLogLine is cut, and says so.
func (l *logReader) next() (line string, ok bool, err error) {
	if there, err := l.open(); !there || err != nil {
		return "", false, err
	}
	for {
		chunk, err := l.r.ReadSlice('\n')
		if room := maxLogLine - len(l.partial); len(chunk) > room {
			l.partial, l.cut = append(l.partial, chunk[:max(room, 0)]...), true
		} else {
			l.partial = append(l.partial, chunk...)
		}
		switch {
		case err == nil:
			return l.take(), true, nil
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		case errors.Is(err, io.EOF):
			return "", false, nil
		default:
			return "", false, err
		}
	}
}

func (l *logReader) take() string {
	line := strings.TrimSuffix(string(l.partial), "\n")
	if l.cut {
		line += " …[line cut at 1 MiB]"
	}
	l.partial, l.cut = l.partial[:0], false
	return line
}

// rest returns what is left after the last whole line: the end of a log
// whose task ended without a newline.
func (l *logReader) rest() string {
	if len(l.partial) == 0 {
		return ""
	}
	return l.take()
}

// bytes returns what the log holds past what was read, as it is.
func (l *logReader) bytes(buf []byte) (int, error) {
	if there, err := l.open(); !there || err != nil {
		return 0, err
	}
	n, err := l.r.Read(buf)
	if errors.Is(err, io.EOF) {
		err = nil
	}
	return n, err
}

func (l *logReader) close() {
	if l.f != nil {
		l.f.Close()
	}
}

// render passes each whole line read since the last call, rendered, to
// out; once the log is whole (its task has ended), the end of a last line
// without a newline too.
func (l *logReader) render(out func(string), whole bool) error {
	for {
		line, ok, err := l.next()
		if err != nil {
			return err
		}
		if !ok {
			break
		}
		if s := runner.RenderLine(line); s != "" {
			out(s)
		}
	}
	if whole {
		if s := runner.RenderLine(l.rest()); s != "" {
			out(s)
		}
	}
	return nil
}

// look reads the task's record for a follower of its log. A database
// another process holds for a moment is no error: nil, and the follower
// looks again at its next turn.
func look(r *runner.Runner, id string) (*store.Task, error) {
	t, err := r.Get(id)
	if errors.Is(err, store.ErrLocked) {
		return nil, nil
	}
	return t, err
}

// streamLog prints the task's log: rendered lines to out, or with raw its
// bytes as they are to exact. With follow it goes on until the task has
// ended and all its log is printed, or ctx ends.
func streamLog(ctx context.Context, r *runner.Runner, id string, raw, follow bool, out func(string), exact io.Writer) error {
	l := &logReader{path: r.LogPath(id)}
	defer l.close()
	buf := make([]byte, 64<<10)
	for {
		// Whether the task had ended before this read: its log is then
		// whole, and the read that reaches its end is the last.
		ended := !follow
		if follow {
			t, err := look(r, id)
			if err != nil {
				return err
			}
			ended = t != nil && t.Status.Final()
		}
		if raw {
			for {
				n, err := l.bytes(buf)
				if err != nil {
					return fmt.Errorf("read the log of task %s: %w", id, err)
				}
				if n == 0 {
					break
				}
				if _, err := exact.Write(buf[:n]); err != nil {
					return err
				}
			}
		} else if err := l.render(out, ended); err != nil {
			return fmt.Errorf("read the log of task %s: %w", id, err)
		}
		if ended {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(followEveryLog):
		}
	}
}

type logsOpts struct {
	follow bool
	raw    bool
}

var logsCommand = &command{
	name: "logs", args: "[-f] [--raw] ID", summary: "print a task's log, rendered (or --raw JSONL); -f follows it",
	help: `Prints a task's log: Codex's events rendered as short lines (commands with
their exit codes, messages, files changed), and other output as it is.
--raw prints the log as Codex wrote it (JSONL). With -f it follows the log
until the task ends; Ctrl-C stops following, never the task.`,
	needs: needsDocker,
	flags: func(fs *flag.FlagSet) any {
		o := &logsOpts{}
		fs.BoolVar(&o.follow, "f", false, "follow the log until the task ends")
		fs.BoolVar(&o.follow, "follow", false, "the same as -f")
		fs.BoolVar(&o.raw, "raw", false, "print the log as Codex wrote it (JSONL), not rendered")
		return o
	},
	run: func(e *env, opts any, args []string) error {
		o := opts.(*logsOpts)
		r, id, err := e.theTask(args)
		if err != nil {
			return err
		}
		t, err := r.Get(id)
		if err != nil {
			return err
		}
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		w := bufio.NewWriter(e.stdout)
		defer w.Flush()
		err = streamLog(ctx, r, id, o.raw, o.follow, func(line string) {
			fmt.Fprintln(w, line)
			if o.follow {
				w.Flush()
			}
		}, e.exact)
		if errors.Is(err, context.Canceled) {
			return nil // Ctrl-C stops following, not the task
		}
		if err != nil {
			return err
		}
		if o.follow && !o.raw {
			if t, err = r.Get(id); err == nil {
				w.Flush()
				fmt.Fprintln(e.stderr, view.Of(r, t, "", view.CLI).OneLine())
			}
		}
		return nil
	},
}
