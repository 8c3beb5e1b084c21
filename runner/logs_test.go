package runner

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
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

// streamEngine answers ContainerLogs with a fixed stream.
type streamEngine struct {
	engine
	stream []byte
}

func (e streamEngine) ContainerLogs(context.Context, string, container.LogsOptions) (io.ReadCloser, error) {
	return io.NopCloser(bytes.NewReader(e.stream)), nil
}

func copyStream(t *testing.T, path string, limit int64, msgs ...frame1) (int64, bool) {
	t.Helper()
	capped := false
	n, err := copyLogs(context.Background(), streamEngine{stream: frames(msgs...)}, "c", path, &eventTracker{}, limit, nil, func() { capped = true })
	if err != nil {
		t.Fatal(err)
	}
	return n, capped
}

func TestLogCopyDropsWhatTheEngineSendsAgain(t *testing.T) {
	path := filepath.Join(t.TempDir(), "task.log")
	// A truncation under the follow: the engine goes back and sends 2 and
	// 3 again; two pieces of one long line share a timestamp.
	copyStream(t, path, 0,
		frame1{1, 1, "one\n"}, frame1{2, 1, "err one\n"}, frame1{1, 2, "two-a"}, frame1{1, 2, "two-b\n"}, frame1{1, 3, "three\n"},
		frame1{1, 2, "two-a"}, frame1{1, 2, "two-b\n"}, frame1{1, 3, "three\n"}, frame1{2, 1, "err one\n"},
		frame1{1, 4, "four\n"}, frame1{2, 4, "err four\n"})
	if got, want := readFile(t, path), "one\nerr one\ntwo-atwo-b\nthree\nfour\nerr four\n"; got != want {
		t.Fatalf("log %q, want %q", got, want)
	}
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
	t.Run("the engine's copy was cut meanwhile: the log says where", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "task.log")
		copyStream(t, path, 0, frame1{1, 1, "one\n"}, frame1{1, 2, "two\n"})
		copyStream(t, path, 0, frame1{1, 7, "seven\n"}, frame1{1, 8, "eight\n"})
		got := readFile(t, path)
		if !strings.HasPrefix(got, "one\ntwo\ncodex-connector: output between ") || !strings.HasSuffix(got, "may be missing here: the engine's copy of it (capped by limits.logMB) was cut while no codex-connector copied it\nseven\neight\n") {
			t.Fatalf("log %q", got)
		}
	})
	t.Run("a log of an earlier version without a checkpoint skips what it holds", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "task.log")
		must(t, os.WriteFile(path, []byte("one\ntw"), 0o600))
		copyStream(t, path, 0, frame1{1, 1, "one\n"}, frame1{1, 2, "two\n"}, frame1{1, 3, "three\n"})
		if got := readFile(t, path); got != "one\ntwo\nthree\n" {
			t.Fatalf("log %q", got)
		}
	})
}

func TestLogCopyStopsAtTheCap(t *testing.T) {
	path := filepath.Join(t.TempDir(), "task.log")
	var msgs []frame1
	for i := 0; i < 100; i++ {
		msgs = append(msgs, frame1{1, i, fmt.Sprintf("line %06d\n", i)})
	}
	n, capped := copyStream(t, path, 100, msgs...)
	got := readFile(t, path)
	cut := "codex-connector: the log was cut here, at 100 bytes (limits.logMB is 100 bytes); the task was stopped\n"
	if !capped || !strings.HasPrefix(got, "line 000000\n") || !strings.HasSuffix(got, "line 000007\nline\n"+cut) || n != int64(len(got)) || int64(len(got)) != 100+1+int64(len(cut)) {
		t.Fatalf("capped %v, %d bytes: %q", capped, n, got)
	}
	t.Run("a copy resumed after the cap copies nothing and stops the task again", func(t *testing.T) {
		n2, capped := copyStream(t, path, 100, msgs...)
		if !capped || n2 != n || readFile(t, path) != got {
			t.Fatalf("capped %v, %d bytes", capped, n2)
		}
	})
}
