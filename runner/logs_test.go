package runner

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/codex-connector/codex-connector/backend"
	"github.com/codex-connector/codex-connector/internal/hostfs/hostfstest"
)

// frames renders messages as the engine streams them with timestamps on:
// each a frame of its stream holding "TIMESTAMP message".
type frame1 struct {
	stream byte
	at     int // seconds after t0
	text   string
}

var t0 = time.Date(2026, 11, 25, 6, 0, 0, 0, time.UTC)

func frames(msgs ...frame1) []byte {
	var b bytes.Buffer
	for _, m := range msgs {
		payload := t0.Add(time.Duration(m.at)*time.Second).Format("2006-01-02T15:04:05.000000000Z07:00") + " " + m.text
		var hdr [8]byte
		hdr[0] = m.stream
		binary.BigEndian.PutUint32(hdr[4:], uint32(len(payload)))
		b.Write(hdr[:])
		b.WriteString(payload)
	}
	return b.Bytes()
}

// streamEngine is a run whose logs are a fixed stream. Asked for the start
// of its copy (no follow), it answers with the stream from its first
// message, or from the message at rotateAt once the copy has read that far:
// the engine's copy was started afresh there.
type streamEngine struct {
	stream   []byte
	rotateAt int // a byte offset of the stream; 0: never
	read     *atomic.Int64
}

func (e streamEngine) Ref() backend.Ref { return backend.Ref{ID: "c"} }

func (e streamEngine) Logs(_ context.Context, opts backend.LogOptions) (io.ReadCloser, error) {
	if !opts.Follow {
		if e.rotateAt > 0 && e.read.Load() > int64(e.rotateAt) {
			return io.NopCloser(bytes.NewReader(e.stream[e.rotateAt:])), nil
		}
		return io.NopCloser(bytes.NewReader(e.stream)), nil
	}
	return io.NopCloser(&countingReader{bytes.NewReader(e.stream), e.read}), nil
}

type countingReader struct {
	r io.Reader
	n *atomic.Int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n.Add(int64(n))
	return n, err
}

func copyStream(t *testing.T, path string, limit int64, msgs ...frame1) (int64, bool) {
	t.Helper()
	return copyRotated(t, path, limit, -1, msgs...)
}

// copyRotated copies msgs as copyStream does, from an engine whose copy
// starts afresh with msgs[rotated] (none if negative) as it is read.
func copyRotated(t *testing.T, path string, limit int64, rotated int, msgs ...frame1) (int64, bool) {
	t.Helper()
	e := streamEngine{stream: frames(msgs...), read: new(atomic.Int64)}
	if rotated >= 0 {
		e.rotateAt = len(frames(msgs[:rotated]...))
	}
	capped := false
	n, err := copyLogs(context.Background(), e, path, &eventTracker{}, limit, nil, func() { capped = true })
	if err != nil {
		t.Fatal(err)
	}
	return n, capped
}

const rotatedCut = "codex-connector: the log was cut here: the engine's own copy of the output filled and started afresh before this copy read all of it, so what the task printed after this point may be missing; the task was stopped\n"

// cutPrefix fails t unless log is the first lines of want, each once and in
// order, then the line that cut it.
func cutPrefix(t *testing.T, log string, want []string, cut string) {
	t.Helper()
	body, ok := strings.CutSuffix(log, cut)
	if !ok {
		t.Fatalf("the log does not end with the cut: %q", log)
	}
	if body == "" {
		return
	}
	got := strings.SplitAfter(body, "\n")
	got = got[:len(got)-1]
	if len(got) > len(want) || !slices.Equal(got, want[:len(got)]) {
		t.Fatalf("the log holds %q before the cut, not the first lines of %q", got, want)
	}
}

func TestLogCopyStopsWhenTheEngineStartedItsCopyAfresh(t *testing.T) {
	t.Run("it went back to exactly the last message: never a line twice", func(t *testing.T) {
		// The engine's copy started afresh after "three": four to six
		// were never sent, seven was, then seven again from the new start.
		path := filepath.Join(t.TempDir(), "task.log")
		_, capped := copyRotated(t, path, 0, 3,
			frame1{1, 1, "one\n"}, frame1{1, 2, "two\n"}, frame1{1, 3, "three\n"},
			frame1{1, 7, "seven\n"}, frame1{1, 7, "seven\n"}, frame1{1, 8, "eight\n"})
		if !capped {
			t.Fatalf("the task goes on: %q", readFile(t, path))
		}
		cutPrefix(t, readFile(t, path), []string{"one\n", "two\n", "three\n"}, rotatedCut)
	})
	t.Run("it went back further: what it sends again is not written", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "task.log")
		_, capped := copyRotated(t, path, 0, 3,
			frame1{1, 1, "one\n"}, frame1{2, 1, "err one\n"}, frame1{1, 2, "two-a"}, frame1{1, 2, "two-b\n"},
			frame1{1, 5, "five\n"}, frame1{1, 6, "six\n"}, frame1{1, 5, "five\n"}, frame1{1, 6, "six\n"}, frame1{1, 7, "seven\n"})
		if !capped {
			t.Fatalf("the task goes on: %q", readFile(t, path))
		}
		cutPrefix(t, readFile(t, path), []string{"one\n", "err one\n", "two-atwo-b\n"}, rotatedCut)
	})
	t.Run("a gap with no step back is seen at the end", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "task.log")
		_, capped := copyRotated(t, path, 0, 2, frame1{1, 1, "one\n"}, frame1{1, 2, "two\n"}, frame1{1, 9, "nine\n"})
		if !capped {
			t.Fatalf("the task goes on: %q", readFile(t, path))
		}
		cutPrefix(t, readFile(t, path), []string{"one\n", "two\n"}, rotatedCut)
	})
	t.Run("a clock set back, or two lines at one instant, with the engine's copy whole: all kept", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "task.log")
		_, capped := copyStream(t, path, 0,
			frame1{1, 1, "one\n"}, frame1{1, 3, "three\n"}, frame1{1, 2, "two, after the clock went back\n"},
			frame1{1, 4, "four\n"}, frame1{1, 4, "four again, at the same instant\n"}, frame1{1, 5, "five-a"}, frame1{1, 5, "five-a"}, frame1{1, 5, "\n"})
		if got, want := readFile(t, path), "one\nthree\ntwo, after the clock went back\nfour\nfour again, at the same instant\nfive-afive-a\n"; capped || got != want {
			t.Fatalf("capped %v, log %q, want %q", capped, got, want)
		}
	})
}

func TestLogCopyResumesAtItsCheckpoint(t *testing.T) {
	t.Run("the engine still has all: exactly once", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "task.log")
		copyStream(t, path, 0, frame1{1, 1, "one\n"}, frame1{1, 2, "two\n"})
		// Written after the checkpoint, by a server that then died.
		f, _ := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
		f.WriteString("three\nfo")
		f.Close()
		n, _ := copyStream(t, path, 0, frame1{1, 1, "one\n"}, frame1{1, 2, "two\n"}, frame1{1, 3, "three\n"}, frame1{1, 4, "four\n"})
		if got, want := readFile(t, path), "one\ntwo\nthree\nfour\n"; got != want || n != int64(len(want)) {
			t.Fatalf("log %q (%d bytes), want %q", got, n, want)
		}
	})
	t.Run("the engine's copy was cut meanwhile: the log is cut there, and the task stopped", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "task.log")
		copyStream(t, path, 0, frame1{1, 1, "one\n"}, frame1{1, 2, "two\n"})
		_, capped := copyStream(t, path, 0, frame1{1, 7, "seven\n"}, frame1{1, 8, "eight\n"})
		want := "one\ntwo\ncodex-connector: the log was cut here: the engine's own copy of the output filled and started afresh while no codex-connector copied it, so what the task printed after this point is missing; the task was stopped\n"
		if got := readFile(t, path); !capped || got != want {
			t.Fatalf("capped %v, log %q", capped, got)
		}
	})
	t.Run("a checkpoint of an earlier version, without the first message, still sees a gap", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "task.log")
		copyStream(t, path, 0, frame1{1, 1, "one\n"}, frame1{1, 2, "two\n"})
		ck, err := readCheckpoint(path)
		hostfstest.Must(t, err)
		ck.First = time.Time{}
		hostfstest.Must(t, ck.save(path))
		if _, capped := copyStream(t, path, 0, frame1{1, 7, "seven\n"}); !capped || !strings.HasPrefix(readFile(t, path), "one\ntwo\ncodex-connector: the log was cut here") {
			t.Fatalf("capped %v, log %q", capped, readFile(t, path))
		}
	})
	t.Run("a log of an earlier version without a checkpoint skips what it holds", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "task.log")
		hostfstest.Must(t, os.WriteFile(path, []byte("one\ntw"), 0o600))
		copyStream(t, path, 0, frame1{1, 1, "one\n"}, frame1{1, 2, "two\n"}, frame1{1, 3, "three\n"})
		if got := readFile(t, path); got != "one\ntwo\nthree\n" {
			t.Fatalf("log %q", got)
		}
	})
}

func TestLogCopyStopsAtTheCap(t *testing.T) {
	const limit = 4000
	path := filepath.Join(t.TempDir(), "task.log")
	var msgs []frame1
	for i := 0; i < 100; i++ {
		msgs = append(msgs, frame1{1, i, fmt.Sprintf("line %06d %s\n", i, strings.Repeat("x", 188))})
	}
	n, capped := copyStream(t, path, limit, msgs...)
	got := readFile(t, path)
	cut := "codex-connector: the log was cut here, at 4000 bytes (limits.logMB is 4000 bytes); the task was stopped\n"
	if !capped || !strings.HasPrefix(got, "line 000000 x") || !strings.HasSuffix(got, "\nline 000019 "+strings.Repeat("x", 169)+"\n"+cut) || n != int64(len(got)) || int64(len(got)) != limit+1+int64(len(cut)) {
		t.Fatalf("capped %v, %d bytes: %q", capped, n, got)
	}
	t.Run("a copy resumed after the cap copies nothing and stops the task again", func(t *testing.T) {
		n2, capped := copyStream(t, path, limit, msgs...)
		if !capped || n2 != n || readFile(t, path) != got {
			t.Fatalf("capped %v, %d bytes", capped, n2)
		}
	})
}

// Short lines take the engine many times the bytes they take in the log:
// the copy stops once half the engine's copy is read, before it can start
// afresh under the copy.
func TestLogCopyStopsWhenTheEnginesCopyIsHalfFull(t *testing.T) {
	const limit = 4000
	path := filepath.Join(t.TempDir(), "task.log")
	var msgs []frame1
	var want []string
	for i := 0; i < 1000; i++ {
		msgs = append(msgs, frame1{1, i, fmt.Sprintf("l%04d\n", i)})
		want = append(want, fmt.Sprintf("l%04d\n", i))
	}
	_, capped := copyStream(t, path, limit, msgs...)
	log := readFile(t, path)
	i := strings.Index(log, "codex-connector: the log was cut here: the engine's own copy of the output, which stores each line as JSON (")
	if !capped || i < 0 || !strings.Contains(log[i:], "was half full: at 16000 bytes (4 times limits.logMB) it starts afresh and loses what was not yet read; the task was stopped\n") {
		t.Fatalf("capped %v, log %q", capped, log)
	}
	lines := strings.SplitAfter(log[:i], "\n")
	lines = lines[:len(lines)-1]
	// Each line takes the engine 76 bytes, counted: the cut comes with
	// the one that passed 8,000 bytes.
	if !slices.Equal(lines, want[:len(lines)]) || len(lines) != 8000/76+1 {
		t.Fatalf("%d lines before the cut, not %d: %q", len(lines), 8000/76+1, log[:min(len(log), 200)])
	}
}

func TestEngineSizeCountsWhatJSONFileStores(t *testing.T) {
	for _, c := range []struct {
		line   string
		stored string // as Docker 20.10 wrote it, measured
	}{
		{"\n", `{"log":"\n","stream":"stdout","time":"2026-12-06T12:35:41.532724936Z"}`},
		{"\x00\x00\x00\n", `{"log":"\u0000\u0000\u0000\n","stream":"stdout","time":"2026-12-06T12:35:41.532719486Z"}`},
		{"\tx\"<>&\\\n", `{"log":"\u0009x\"\u003c\u003e\u0026\\\n","stream":"stdout","time":"2026-12-06T12:35:41.532727832Z"}`},
		{"\ufffd\ufffda\u2028b\u00e9\n", `{"log":"\ufffd\ufffda\u2028bé\n","stream":"stdout","time":"2026-12-06T12:35:41.532730898Z"}`},
		{"\x1b[31m\x7f\n", "{\"log\":\"\\u001b[31m\x7f\\n\",\"stream\":\"stdout\",\"time\":\"2026-12-06T12:35:41.53274218Z\"}"},
	} {
		if got, min := engineSize([]byte(c.line)), int64(len(c.stored)+1); got < min {
			t.Errorf("%q: counted %d bytes, the engine stores %d", c.line, got, min)
		}
	}
}
