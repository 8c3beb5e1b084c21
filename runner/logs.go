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

	"github.com/codex-connector/codex-connector/backend"
	"github.com/codex-connector/codex-connector/internal/hostfs"
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
	return fmt.Sprintf("codex-connector: the log was cut here, at %d bytes (limits.logMB is %s); the task was stopped\n", limit, hostfs.HumanSize(limit))
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
		if err := s.cut(cutLine(s.limit)); !errors.Is(err, errLogCapped) {
			return total, err
		}
		return total, errLogCapped
	}
	return total, nil
}

// cut ends the log with a line that says why, on a line of its own, and
// refuses more: it returns errLogCapped once the line is written.
func (s *logSink) cut(why string) error {
	if s.held != nil && !s.held() {
		return errLeaseLost
	}
	if !s.lastNL {
		why = "\n" + why
	}
	s.capped = true
	n, err := s.f.WriteString(why)
	s.written += int64(n)
	s.size += int64(n)
	s.lastNL = true
	if err != nil {
		return err
	}
	return errLogCapped
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
// floods: so the engine's copy is capped too, in one file (max-file 1), at
// engineLogFactor times limits.logMB, because it stores each line as a JSON
// object: a NUL becomes \u0000, an empty line some 70 bytes. When it fills,
// the engine truncates it and starts again, and a follower reading it then
// is given some messages again and never given others (Docker 20.10,
// measured: what the engine had written and not yet sent is lost, and the
// start of the new file may come twice). Nothing in the stream says so.
// The log holds every line the task printed once and in order, or it ends
// with a line that says why not and the task is stopped, as at the cap:
//
//   - The copy counts what the engine stores for what it read
//     (engineSize, never less than the engine's own count) and stops at
//     half the engine's cap, leaving the other half for what the engine
//     holds unread, so that in all but a flood read more slowly than it is
//     written the engine's copy never starts again under the copy.
//   - A copy writes nothing it has not seen the engine still hold from the
//     beginning: messages wait in memory (at most flushBytes, flushEvery)
//     until the engine's copy is seen to start with the same first message
//     as when the copy began (engineWhole); a truncation changes that for
//     good. When it changed, what waited is dropped and the log cut where
//     it was last seen whole. A message older than its stream's last one,
//     or a whole line again at that very timestamp, is a sign of it, and
//     looked into at once: otherwise the clock went back, and it is kept.
//   - A copy resumed after a restart cannot skip what the file holds by
//     counting bytes from the start of the engine's copy: its start may have
//     moved. So the copy keeps a checkpoint beside the log (<id>.log.ckpt:
//     the file's size, the engine's first message and, per stream, the last
//     timestamp written and how many messages had it), at most a second old;
//     a resumed copy cuts the file back to the checkpoint and drops what the
//     checkpoint covers. When the engine's copy no longer starts where it did
//     (it was truncated while no server copied it), the log is cut at the
//     checkpoint with a line that says output is missing after it.
//
// A log without a checkpoint was begun by an earlier codex-connector, whose
// containers never had their output truncated (max-size 1t): its copy
// resumes by skipping the bytes the file holds, as before.

// engineLogFactor is how many times limits.logMB the engine's own copy of a
// task's output may hold.
const engineLogFactor = 4

// engineLogCap is the max-size of the engine's copy of a task's output, for
// a log capped at limit bytes.
func engineLogCap(limit int64) int64 { return engineLogFactor * limit }

// engineSize is at least what json-file stores for a message holding line:
// {"log":"LINE","stream":"stdout","time":"RFC3339Nano"} and a newline, with
// the line escaped (measured on Docker 20.10: a quote, a backslash or a
// newline takes 2 bytes, any other control character and <, >, & take 6, an
// invalid byte becomes \ufffd, 6 bytes, which the stream gives back as the
// 3 bytes of U+FFFD: so each byte above ASCII counts 2).
func engineSize(line []byte) int64 {
	n := int64(len(`{"log":"","stream":"stdout","time":"2006-01-02T15:04:05.999999999Z"}`) + 1)
	for _, b := range line {
		switch {
		case b == '"' || b == '\\' || b == '\n':
			n += 2
		case b < 0x20 || b == '<' || b == '>' || b == '&':
			n += 6
		case b >= 0x80:
			n += 2
		default:
			n++
		}
	}
	return n
}

// What the copy holds in memory before it looks at the engine and writes:
// bounded in size, and in time, so that a quiet task's last line is in the
// log at once (flushEvery after the stream went quiet), a steady one's
// within flushAge. Each look costs a call to the engine (about a
// millisecond, measured), so not one per message.
const (
	flushBytes = 4 << 20
	flushEvery = 50 * time.Millisecond
	flushAge   = time.Second
)

// streamMark is where the copy of one stream stands: the timestamp of the
// last message written, and how many messages with exactly it were written.
type streamMark struct {
	Time time.Time `json:"time"`
	N    int       `json:"n"`
}

// logCheckpoint is where a copy stands, as saved beside the log.
type logCheckpoint struct {
	Bytes int64 `json:"bytes"`
	// First is the timestamp of the first message of the engine's copy, as
	// the copy that began the log saw it; zero in a checkpoint of an earlier
	// codex-connector, or before any message.
	First  time.Time  `json:"first,omitzero"`
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
	return hostfs.WriteFileAtomic(checkpointPath(logPath), data)
}

// logSource is where a run's output comes from: its handle, framed as
// backend.LogStream says.
type logSource interface {
	Ref() backend.Ref
	Logs(ctx context.Context, opts backend.LogOptions) (io.ReadCloser, error)
}

// copyLogs follows the container's stdout and stderr, demultiplexed, into
// the log file at path until the container stops, resuming after whatever
// the file already holds. It returns the bytes the file holds at the end.
// When the log reaches limit bytes (0: no limit), or the engine's copy of
// the output is too full to be read whole (see above), it ends with a line
// that says so and the copy calls capped, which stops the task. The file and
// its checkpoint are changed only while held reports true (nil: always);
// once it reports false the copy ends with errLeaseLost.
func copyLogs(ctx context.Context, run logSource, path string, tracker *eventTracker, limit int64, held func() bool, capped func()) (int64, error) {
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
	containerID := run.Ref().Key()
	rc, err := run.Logs(ctx, backend.LogOptions{Follow: true})
	if err != nil {
		return sink.size, engineError("follow logs of container "+containerID, err)
	}
	defer rc.Close()
	c := &logCopy{ctx: ctx, src: run, containerID: containerID, sink: sink, ck: ck, marks: ck.marks, path: path, resumed: resumed}
	c.flushAt = flushBytes
	if limit > 0 {
		c.engineCap = engineLogCap(limit)
		// What waits is dropped when the engine's copy started afresh:
		// never more than a small part of the log.
		c.flushAt = min(flushBytes, max(limit/4, 1))
	}
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
	ctx         context.Context
	src         logSource
	containerID string
	sink        *logSink
	ck          *logCheckpoint // ck.marks: what the log holds
	path        string
	resumed     bool // the first message decides whether the engine still reaches back
	// replay is set per stream while messages the log already holds come
	// again after a restart; seen counts those at the mark's very timestamp.
	replay [2]bool
	seen   [2]int
	// marks is where each stream stands with what waits in pending too;
	// last is its last message, and whole says whether it ended a line.
	marks   [2]streamMark
	last    [2][]byte
	whole   [2]bool
	pending []byte
	// engineBytes is what the engine stores for what the copy read, against
	// engineCap, the max-size of the engine's copy (0: none).
	engineBytes int64
	engineCap   int64
	flushAt     int64 // what waits is written from this size on
	saved       time.Time
}

// maxFrame bounds one message of the engine's stream (json-file splits
// lines at 16 KiB).
const maxFrame = 16 << 20

// engineFrame is one message of the engine's stream: 1 stdout, 2 stderr.
type engineFrame struct {
	stream byte
	data   []byte
}

// readFrames sends the messages of the engine's stream to out until it ends
// (nil) or done is closed: in batches, all that one read of the stream gave
// (up to frameBatch bytes), since a hand-over per message costs more than
// the message.
func readFrames(r io.Reader, out chan<- []engineFrame, done <-chan struct{}) error {
	br := bufio.NewReaderSize(r, frameBatch)
	var batch []engineFrame
	var arena []byte // holds the batch's messages
	send := func() bool {
		if len(batch) == 0 {
			return true
		}
		select {
		case out <- batch:
			batch, arena = nil, nil
			return true
		case <-done:
			return false
		}
	}
	var hdr [8]byte
	for {
		if br.Buffered() == 0 || len(arena) >= frameBatch {
			if !send() {
				return nil
			}
		}
		if _, err := io.ReadFull(br, hdr[:]); err != nil {
			send()
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
		n := int(binary.BigEndian.Uint32(hdr[4:]))
		if n > maxFrame {
			send()
			return fmt.Errorf("a message of %d bytes in the engine's log stream", n)
		}
		if cap(arena)-len(arena) < n {
			if len(batch) > 0 {
				if !send() {
					return nil
				}
			}
			arena = make([]byte, 0, max(n, frameBatch))
		}
		buf := arena[len(arena) : len(arena)+n]
		arena = arena[:len(arena)+n]
		if _, err := io.ReadFull(br, buf); err != nil {
			send()
			return err
		}
		switch hdr[0] {
		case 1, 2:
			batch = append(batch, engineFrame{hdr[0], buf})
		case 3:
			send()
			return fmt.Errorf("the engine says: %s", strings.TrimSpace(string(buf)))
		}
	}
}

// frameBatch is about how much of the stream is handed over at once.
const frameBatch = 64 << 10

// run copies the stream until it ends; the reading goes on beside the
// writing, so that what waits is written after flushEvery even when the
// stream is quiet.
func (c *logCopy) run(r io.Reader) error {
	if c.resumed {
		c.replay = [2]bool{true, true}
	}
	batches := make(chan []engineFrame, 16)
	ended := make(chan error, 1)
	done := make(chan struct{})
	defer close(done)
	go func() {
		ended <- readFrames(r, batches, done)
		close(batches)
	}()
	tick := time.NewTicker(flushEvery)
	defer tick.Stop()
	// Written on a tick when the stream went quiet, or when what waits is
	// older than flushAge; in a flood, per flushBytes.
	quiet, waiting := true, time.Time{}
	for {
		select {
		case batch, ok := <-batches:
			if !ok {
				// What came before the stream broke is still written.
				if err := c.flush(); err != nil {
					return err
				}
				return <-ended
			}
			quiet = false
			if len(c.pending) == 0 {
				waiting = time.Now()
			}
			for _, f := range batch {
				if err := c.message(int(f.stream)-1, f.data); err != nil {
					return err
				}
			}
		case now := <-tick.C:
			if quiet || now.Sub(waiting) >= flushAge {
				if err := c.flush(); err != nil {
					return err
				}
			}
			quiet = true
		}
	}
}

// message takes one message of stream s (0 stdout, 1 stderr) unless the log
// already holds it; it is written at the next flush.
func (c *logCopy) message(s int, m []byte) error {
	ts, line := splitTimestamp(m)
	c.engineBytes += engineSize(line)
	mark := &c.marks[s]
	if c.resumed {
		c.resumed = false
		if c.restarted(ts) {
			// The engine's copy starts after what the log holds: it was
			// truncated while nobody copied it.
			return c.sink.cut("codex-connector: the log was cut here: " + c.engineCopy() + " filled and started afresh while no codex-connector copied it, so what the task printed after this point is missing; the task was stopped\n")
		}
	}
	if c.ck.First.IsZero() {
		c.ck.First = ts
	}
	complete := len(line) > 0 && line[len(line)-1] == '\n'
	if !ts.IsZero() {
		if c.replay[s] {
			if ts.Before(mark.Time) {
				c.whole[s], c.last[s] = complete, line
				return nil
			}
			if ts.Equal(mark.Time) && c.seen[s] < mark.N {
				c.seen[s]++
				c.whole[s], c.last[s] = complete, line
				return nil
			}
			c.replay[s] = false
		} else if ts.Before(mark.Time) || ts.Equal(mark.Time) && (c.whole[s] || bytes.Equal(line, c.last[s])) {
			// The pieces of one long line share a timestamp; anything
			// else that goes back (a line ended, or the same piece again)
			// is what the engine sends again when it started its copy
			// afresh, or a clock set back, or pieces alike.
			if err := c.verify(); err != nil {
				return err
			}
		}
		if ts.Equal(mark.Time) {
			mark.N++
		} else {
			mark.Time, mark.N = ts, 1
		}
	}
	c.whole[s], c.last[s] = complete, line
	c.pending = append(c.pending, line...)
	if c.engineCap > 0 && c.engineBytes > c.engineCap/2 {
		if err := c.flush(); err != nil {
			return err
		}
		return c.sink.cut(fmt.Sprintf("codex-connector: the log was cut here: the engine's own copy of the output, which stores each line as JSON (%s of it for %s of output here), was half full: at %s (%d times limits.logMB) it starts afresh and loses what was not yet read; the task was stopped\n",
			hostfs.HumanSize(c.engineBytes), hostfs.HumanSize(c.sink.size), hostfs.HumanSize(c.engineCap), engineLogFactor))
	}
	if int64(len(c.pending)) >= c.flushAt {
		return c.flush()
	}
	return nil
}

// restarted says whether the engine's copy, whose first message a resumed
// copy was just given (at ts), no longer starts where the log began.
func (c *logCopy) restarted(ts time.Time) bool {
	if !c.ck.First.IsZero() {
		return !ts.Equal(c.ck.First)
	}
	// A checkpoint of an earlier codex-connector: only a start after all
	// the log holds tells.
	last := later(c.ck.marks[0].Time, c.ck.marks[1].Time)
	return !last.IsZero() && ts.After(last)
}

// flush writes what waits, once the engine is seen to hold it whole.
func (c *logCopy) flush() error {
	if len(c.pending) == 0 {
		return nil
	}
	if err := c.verify(); err != nil {
		return err
	}
	_, err := c.sink.Write(c.pending)
	c.pending = c.pending[:0]
	c.ck.marks = c.marks
	if err != nil {
		return err
	}
	if now := time.Now(); now.Sub(c.saved) >= checkpointEvery {
		c.saved = now
		return c.checkpoint()
	}
	return nil
}

// verify cuts the log where it stands, dropping what waits, unless the
// engine's copy still starts with its first message.
func (c *logCopy) verify() error {
	whole, err := c.engineWhole()
	if err != nil || whole {
		return err
	}
	c.pending = c.pending[:0]
	return c.sink.cut("codex-connector: the log was cut here: " + c.engineCopy() + " filled and started afresh before this copy read all of it, so what the task printed after this point may be missing; the task was stopped\n")
}

// engineCopy names the engine's copy of the output, for a line of the log.
func (c *logCopy) engineCopy() string {
	if c.engineCap == 0 {
		return "the engine's own copy of the output"
	}
	return fmt.Sprintf("the engine's own copy of the output (at most %s, %d times limits.logMB)", hostfs.HumanSize(c.engineCap), engineLogFactor)
}

// engineWhole says whether the engine's copy of the output still starts
// with the first message the log began with: until the engine truncates it,
// it does. It reads one message.
func (c *logCopy) engineWhole() (bool, error) {
	first := c.ck.First
	if first.IsZero() {
		return true, nil // no timestamps: nothing to compare
	}
	// Until is exclusive on Podman, whose timestamps are whole seconds,
	// and inclusive on Docker: a second past the first message asks both
	// for what the copy holds from its start, whose first message tells.
	rc, err := c.src.Logs(c.ctx, backend.LogOptions{Until: first.Add(time.Second)})
	if err != nil {
		return false, engineError("read the first message of the logs of container "+c.containerID, err)
	}
	defer rc.Close()
	var hdr [8]byte
	if _, err := io.ReadFull(rc, hdr[:]); err != nil {
		if errors.Is(err, io.EOF) {
			return false, nil // nothing as old as the first message
		}
		return false, fmt.Errorf("read the first message of the logs of container %s: %w", c.containerID, err)
	}
	// The timestamp is all that is needed.
	head := make([]byte, min(binary.BigEndian.Uint32(hdr[4:]), 64))
	if _, err := io.ReadFull(rc, head); err != nil {
		return false, fmt.Errorf("read the first message of the logs of container %s: %w", c.containerID, err)
	}
	if hdr[0] == 3 {
		return false, fmt.Errorf("read the first message of the logs of container %s: the engine says: %s", c.containerID, strings.TrimSpace(string(head)))
	}
	ts, _ := splitTimestamp(head)
	return ts.Equal(first), nil
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
