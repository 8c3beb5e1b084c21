package runner

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/pkg/stdcopy"
)

// maxLineBuffer bounds how much of one unterminated line is held for event
// parsing; a longer line is still copied to the log, just not parsed.
const maxLineBuffer = 4 << 20

// logSink writes the container's output to the task's log file and feeds
// complete lines to the event tracker. The first skip bytes of the stream are
// already in the file (a copy resumed after a restart) and are dropped, so
// the file is the container's output exactly once.
type logSink struct {
	f       *os.File
	skip    int64
	written int64
	partial []byte
	tracker *eventTracker
}

func (s *logSink) Write(p []byte) (int, error) {
	total := len(p)
	if s.skip > 0 {
		k := int64(len(p))
		if k > s.skip {
			k = s.skip
		}
		s.skip -= k
		p = p[k:]
	}
	if len(p) == 0 {
		return total, nil
	}
	n, err := s.f.Write(p)
	s.written += int64(n)
	s.feed(p[:n])
	if err != nil {
		return total, err
	}
	return total, nil
}

func (s *logSink) feed(p []byte) {
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			if len(s.partial)+len(p) <= maxLineBuffer {
				s.partial = append(s.partial, p...)
			} else {
				s.partial = s.partial[:0] // too long to be an event worth parsing
			}
			return
		}
		if len(s.partial) > 0 {
			s.tracker.feed(append(s.partial, p[:i]...))
			s.partial = s.partial[:0]
		} else {
			s.tracker.feed(p[:i])
		}
		p = p[i+1:]
	}
}

// copyLogs follows the container's stdout and stderr, demultiplexed, into
// the log file at path until the container stops, resuming after whatever
// the file already holds. It returns the bytes the file holds at the end.
func copyLogs(ctx context.Context, eng engine, containerID, path string, tracker *eventTracker) (int64, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return 0, fmt.Errorf("open log %s: %w", path, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return 0, fmt.Errorf("stat log %s: %w", path, err)
	}
	// The engine keeps the whole log (json-file, no rotation), so reading it
	// again from the start and skipping what the file holds resumes with no
	// gap and no duplicate, without trusting timestamps.
	rc, err := eng.ContainerLogs(ctx, containerID, container.LogsOptions{ShowStdout: true, ShowStderr: true, Follow: true})
	if err != nil {
		return fi.Size(), engineError("follow logs of container "+containerID, err)
	}
	defer rc.Close()
	sink := &logSink{f: f, skip: fi.Size(), tracker: tracker}
	_, err = stdcopy.StdCopy(sink, sink, rc)
	if err == nil && len(sink.partial) > 0 {
		tracker.feed(sink.partial)
	}
	size := fi.Size() + sink.written
	if syncErr := f.Sync(); err == nil && syncErr != nil {
		err = syncErr
	}
	if err != nil {
		return size, fmt.Errorf("copy logs of container %s to %s: %w", containerID, path, err)
	}
	return size, nil
}

// replayLog feeds what an existing log file holds to the tracker, so that a
// task adopted after a restart has the summary of its whole run.
func replayLog(path string, tracker *eventTracker) error {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	defer f.Close()
	sink := &logSink{tracker: tracker}
	r := bufio.NewReaderSize(f, 64<<10)
	buf := make([]byte, 64<<10)
	for {
		n, err := r.Read(buf)
		sink.feed(buf[:n])
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// tailWindow bounds how much of a log file a tail reads.
const tailWindow = 4 << 20

// tailLog returns up to n of the last lines of the log at path, rendered for
// a reader, and whether earlier lines were left out.
func tailLog(path string, n int) ([]string, bool, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, false, err
	}
	start := fi.Size() - tailWindow
	if start < 0 {
		start = 0
	}
	data := make([]byte, fi.Size()-start)
	if _, err := f.ReadAt(data, start); err != nil && err != io.EOF {
		return nil, false, err
	}
	raw := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if start > 0 && len(raw) > 0 {
		raw = raw[1:] // the first line in the window is cut
	}
	var out []string
	more := start > 0
	for i := len(raw) - 1; i >= 0; i-- {
		r := renderLine(raw[i])
		if r == "" {
			continue
		}
		if len(out) == n {
			more = true
			break
		}
		out = append(out, r)
	}
	for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
		out[i], out[j] = out[j], out[i]
	}
	return out, more, nil
}
