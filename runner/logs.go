package runner

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/docker/docker/api/types/container"
)

// maxLineBuffer bounds how much of one unterminated line is held for event
// parsing; a longer line is still copied to the log, just not parsed.
const maxLineBuffer = 4 << 20

// logSink writes the container's output to the task's log file and feeds
// complete lines to the event tracker. The first skip bytes of the stream are
// already in the file (a copy resumed after a restart) and are dropped, so
// the file is the container's output exactly once. With a limit, it writes
// up to limit bytes in all (size counts what the file held before), then a
// line that says the log was cut there, and refuses more.
type logSink struct {
	f *os.File
	// held says whether this process may still write the log (it holds
	// the task's lease); nil: always.
	held    func() bool
	skip    int64
	written int64
	partial []byte
	tracker *eventTracker
	size    int64 // of the file, what it held before included
	limit   int64 // 0: none
	capped  bool
	lastNL  bool // the file ends with a newline (or is empty)
}

// errLogCapped ends a copy whose log reached its cap.
var errLogCapped = errors.New("the log reached its cap")

// errLeaseLost ends a copy whose follower no longer holds the task's lease:
// another server may be copying the same log.
var errLeaseLost = errors.New("this server no longer holds the task's lease")

// cutLine ends a log that reached its cap.
func cutLine(limit int64) string {
	return fmt.Sprintf("codex-connector: the log was cut here, at %d bytes (limits.logMB is %s); the task was stopped\n", limit, humanBytes(limit))
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
	if s.capped {
		return 0, errLogCapped
	}
	if s.held != nil && !s.held() {
		return 0, errLeaseLost
	}
	cut := false
	if s.limit > 0 && s.size+int64(len(p)) > s.limit {
		p, cut = p[:max(0, s.limit-s.size)], true
	}
	n, err := s.f.Write(p)
	s.written += int64(n)
	s.size += int64(n)
	if n > 0 {
		s.lastNL = p[n-1] == '\n'
	}
	s.feed(p[:n])
	if err != nil {
		return total, err
	}
	if cut {
		s.capped = true
		end := cutLine(s.limit)
		if !s.lastNL {
			end = "\n" + end
		}
		n, err := s.f.WriteString(end)
		s.written += int64(n)
		s.size += int64(n)
		if err != nil {
			return total, err
		}
		return total, errLogCapped
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

// The engine keeps its own copy of a container's output (json-file), which
// the copy reads, and which would grow without bound with a task that
// floods: so the engine's copy is capped at limits.logMB too, in one file
// (max-file 1). When it fills, the engine truncates it and starts again:
// output from before that point is no longer in the engine. Two things
// follow, both handled here.
//
//   - A copy that follows the container across a truncation is given some
//     messages again (Docker 20.10, measured) and may miss some the engine
//     dropped before they were read. Each message carries its engine
//     timestamp, so repeats are dropped: per stream, nothing older than the
//     last message written, and of the messages with that very timestamp
//     (the pieces of one long line) no more than were written, once a
//     message older than its stream's last shows the engine went back.
//     What the engine dropped unread is lost; only a flood is fast enough
//     for that, and the cap then stops it. (Should the engine go back to
//     exactly the last message, that one message is written twice.)
//   - A copy resumed after a restart cannot skip what the file holds by
//     counting bytes from the start of the engine's copy: its start moved.
//     So the copy keeps a checkpoint beside the log (<id>.log.ckpt: the
//     file's size and, per stream, the last timestamp written and how many
//     messages had it), at most a second old; a resumed copy cuts the file
//     back to the checkpoint and drops what the checkpoint covers. When the
//     engine's copy no longer reaches back to the checkpoint (it was
//     truncated while no server copied), the log says, at that point, that
//     output from then to the next message may be missing.
//
// A log without a checkpoint was begun by an earlier codex-connector, whose
// containers never had their output truncated (max-size 1t): its copy
// resumes by skipping the bytes the file holds, as before.

// streamMark is where the copy of one stream stands: the timestamp of the
// last message written, and how many messages with exactly it were written.
type streamMark struct {
	Time time.Time `json:"time"`
	N    int       `json:"n"`
}

// logCheckpoint is where a copy stands, as saved beside the log.
type logCheckpoint struct {
	Bytes  int64      `json:"bytes"`
	Stdout streamMark `json:"stdout"`
	Stderr streamMark `json:"stderr"`
	Capped bool       `json:"capped,omitempty"`
	// Progress is when Codex last made progress (the stall clock), so that
	// the next follower does not start the clock afresh.
	Progress time.Time     `json:"progress,omitzero"`
	marks    [2]streamMark // working copy: 0 stdout, 1 stderr
}

func checkpointPath(logPath string) string { return logPath + ".ckpt" }

// checkpointEvery is how often a copy saves where it stands.
const checkpointEvery = time.Second

func readCheckpoint(logPath string) (*logCheckpoint, error) {
	data, err := os.ReadFile(checkpointPath(logPath))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var ck logCheckpoint
	if err := json.Unmarshal(data, &ck); err != nil {
		return nil, fmt.Errorf("read %s: %w", checkpointPath(logPath), err)
	}
	ck.marks = [2]streamMark{ck.Stdout, ck.Stderr}
	return &ck, nil
}

func (ck *logCheckpoint) save(logPath string) error {
	ck.Stdout, ck.Stderr = ck.marks[0], ck.marks[1]
	data, _ := json.Marshal(ck)
	return writeFileAtomic(checkpointPath(logPath), data)
}

// copyLogs follows the container's stdout and stderr, demultiplexed, into
// the log file at path until the container stops, resuming after whatever
// the file already holds. It returns the bytes the file holds at the end.
// When the log reaches limit bytes (0: no limit), it ends with a line that
// says so and the copy calls capped, which stops the task. The file and its
// checkpoint are changed only while held reports true (nil: always); once
// it reports false the copy ends with errLeaseLost.
func copyLogs(ctx context.Context, eng engine, containerID, path string, tracker *eventTracker, limit int64, held func() bool, capped func()) (int64, error) {
	if held == nil {
		held = func() bool { return true }
	}
	if !held() {
		return 0, errLeaseLost
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR|os.O_APPEND, 0o600)
	if err != nil {
		return 0, fmt.Errorf("open log %s: %w", path, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return 0, fmt.Errorf("stat log %s: %w", path, err)
	}
	ck, err := readCheckpoint(path)
	if err != nil {
		return fi.Size(), err
	}
	sink := &logSink{f: f, held: held, tracker: tracker, size: fi.Size(), limit: limit, lastNL: true}
	resumed := ck != nil
	switch {
	case ck != nil:
		// What was written after the checkpoint comes again.
		if fi.Size() > ck.Bytes {
			if !held() {
				return fi.Size(), errLeaseLost
			}
			if err := f.Truncate(ck.Bytes); err != nil {
				return fi.Size(), fmt.Errorf("cut log %s back to its checkpoint: %w", path, err)
			}
		}
		sink.size = min(fi.Size(), ck.Bytes)
		if sink.size > 0 {
			var last [1]byte
			if _, err := f.ReadAt(last[:], sink.size-1); err == nil {
				sink.lastNL = last[0] == '\n'
			}
		}
		if ck.Capped {
			capped()
			return sink.size, nil
		}
	case fi.Size() > 0:
		sink.skip = fi.Size()
		ck = &logCheckpoint{}
	default:
		ck = &logCheckpoint{}
	}
	if limit > 0 && sink.size >= limit {
		ck.Capped = true
		capped()
		return sink.size, ck.save(path)
	}
	rc, err := eng.ContainerLogs(ctx, containerID, container.LogsOptions{ShowStdout: true, ShowStderr: true, Follow: true, Timestamps: true})
	if err != nil {
		return sink.size, engineError("follow logs of container "+containerID, err)
	}
	defer rc.Close()
	c := &logCopy{sink: sink, ck: ck, path: path, resumed: resumed}
	err = c.run(rc)
	if errors.Is(err, errLogCapped) {
		ck.Capped, err = true, nil
	}
	if errors.Is(err, errLeaseLost) {
		return sink.size, err
	}
	if err == nil && len(sink.partial) > 0 {
		tracker.feed(sink.partial)
	}
	if syncErr := c.checkpoint(); err == nil && syncErr != nil {
		err = syncErr
	}
	if ck.Capped {
		capped()
	}
	if err != nil {
		return sink.size, fmt.Errorf("copy logs of container %s to %s: %w", containerID, path, err)
	}
	return sink.size, nil
}

// logCopy reads the engine's multiplexed, timestamped stream: each frame is
// one message, "TIMESTAMP message".
type logCopy struct {
	sink    *logSink
	ck      *logCheckpoint
	path    string
	resumed bool // the first message decides whether the engine still reaches back
	// replay is set per stream while messages the log already holds come
	// again; seen counts those at the mark's very timestamp.
	replay [2]bool
	seen   [2]int
	saved  time.Time
}

// maxFrame bounds one message of the engine's stream (json-file splits
// lines at 16 KiB).
const maxFrame = 16 << 20

func (c *logCopy) run(r io.Reader) error {
	if c.resumed {
		c.replay = [2]bool{true, true}
	}
	var hdr [8]byte
	var buf []byte
	for {
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
		n := binary.BigEndian.Uint32(hdr[4:])
		if n > maxFrame {
			return fmt.Errorf("a message of %d bytes in the engine's log stream", n)
		}
		if cap(buf) < int(n) {
			buf = make([]byte, n)
		}
		buf = buf[:n]
		if _, err := io.ReadFull(r, buf); err != nil {
			return err
		}
		switch hdr[0] {
		case 1, 2:
			if err := c.message(int(hdr[0])-1, buf); err != nil {
				return err
			}
		case 3:
			return fmt.Errorf("the engine says: %s", strings.TrimSpace(string(buf)))
		}
	}
}

// message writes one message of stream s (0 stdout, 1 stderr) unless the
// log already holds it.
func (c *logCopy) message(s int, m []byte) error {
	ts, line := splitTimestamp(m)
	mark := &c.ck.marks[s]
	if c.resumed {
		c.resumed = false
		if last := later(c.ck.marks[0].Time, c.ck.marks[1].Time); !last.IsZero() && ts.After(last) {
			// The engine's copy starts after what the log holds: it was
			// truncated while nobody copied it.
			note := fmt.Sprintf("codex-connector: output between %s and %s may be missing here: the engine's copy of it (capped by limits.logMB) was cut while no codex-connector copied it\n",
				last.Format(time.RFC3339Nano), ts.Format(time.RFC3339Nano))
			if !c.sink.lastNL {
				note = "\n" + note
			}
			if _, err := c.sink.Write([]byte(note)); err != nil {
				return err
			}
			c.replay = [2]bool{}
		}
	}
	if !ts.IsZero() {
		if !c.replay[s] && ts.Before(mark.Time) {
			// The engine went back (its copy was truncated under the
			// follow): what follows, up to each stream's mark, the log
			// holds already — the other stream's messages too.
			c.replay, c.seen = [2]bool{true, true}, [2]int{}
		}
		if c.replay[s] {
			if ts.Before(mark.Time) {
				return nil
			}
			if ts.Equal(mark.Time) && c.seen[s] < mark.N {
				c.seen[s]++
				return nil
			}
			c.replay[s] = false
		}
		if ts.Equal(mark.Time) {
			mark.N++
		} else {
			mark.Time, mark.N = ts, 1
		}
	}
	if _, err := c.sink.Write(line); err != nil {
		return err
	}
	if now := time.Now(); now.Sub(c.saved) >= checkpointEvery {
		c.saved = now
		return c.checkpoint()
	}
	return nil
}

// checkpoint makes what the log holds durable, then says so beside it.
func (c *logCopy) checkpoint() error {
	if c.sink.held != nil && !c.sink.held() {
		return errLeaseLost
	}
	if err := c.sink.f.Sync(); err != nil {
		return err
	}
	c.ck.Bytes = c.sink.size
	c.ck.Progress = c.sink.tracker.progressAt()
	return c.ck.save(c.path)
}

// splitTimestamp splits "TIMESTAMP message" as the engine sends it with
// timestamps on; a message without one has the zero time.
func splitTimestamp(m []byte) (time.Time, []byte) {
	i := bytes.IndexByte(m, ' ')
	if i < 0 {
		return time.Time{}, m
	}
	ts, err := time.Parse(time.RFC3339Nano, string(m[:i]))
	if err != nil {
		return time.Time{}, m
	}
	return ts, m[i+1:]
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
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
	// What lies past the checkpoint is copied again, and fed then.
	var in io.Reader = f
	ck, err := readCheckpoint(path)
	if err == nil && ck != nil {
		in = io.LimitReader(f, ck.Bytes)
		if !ck.Progress.IsZero() {
			defer tracker.resumeClock(ck.Progress)
		}
	}
	r := bufio.NewReaderSize(in, 64<<10)
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

// tailWindow bounds how much of a log file a tail reads; tailChunk is how
// much it reads at a time, from the end back, so that the last lines of a
// 1 GB log cost what they cost in a 1 MB one.
const (
	tailWindow = 4 << 20
	tailChunk  = 64 << 10
)

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
	size := fi.Size()
	var out []string // newest first
	// carry holds the end of a line whose beginning is further back, in
	// the pieces read so far, the last read first: a long line is joined
	// once, when its beginning is found, not copied again at each chunk.
	var carry [][]byte
	pos, first := size, true
	for pos > 0 && size-pos < tailWindow {
		chunk := min(int64(tailChunk), pos, tailWindow-(size-pos))
		pos -= chunk
		data := make([]byte, chunk)
		read, err := f.ReadAt(data, pos)
		if err != nil && err != io.EOF {
			return nil, false, err
		}
		// A log truncated since the Stat (a takeover rewinds it to its
		// checkpoint) reads short: never a line of zeros.
		data = data[:read]
		if first {
			data, first = bytes.TrimRight(data, "\n"), false
		}
		if pos > 0 && bytes.IndexByte(data, '\n') < 0 {
			carry = append(carry, data)
			continue
		}
		for i := len(carry) - 1; i >= 0; i-- {
			data = append(data, carry[i]...)
		}
		lines := bytes.Split(data, []byte("\n"))
		carry = nil
		if pos > 0 {
			// The first line may begin in the chunk before.
			carry, lines = [][]byte{lines[0]}, lines[1:]
		}
		for i := len(lines) - 1; i >= 0; i-- {
			r := RenderLine(string(lines[i]))
			if r == "" {
				continue
			}
			if len(out) == n {
				return reversed(out), true, nil
			}
			out = append(out, r)
		}
	}
	// What is left before the window, or a line cut by it, is left out.
	return reversed(out), pos > 0, nil
}

func reversed(s []string) []string {
	for i, j := 0, len(s)-1; i < j; i, j = i+1, j-1 {
		s[i], s[j] = s[j], s[i]
	}
	return s
}
