package docker

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/codex-connector/codex-connector/backend"
	"github.com/codex-connector/codex-connector/images/imagestest"
	"github.com/docker/docker/client"
)

// testSpec is a run of the fake Codex that runs script, with a name and a
// label of its own, removed when the test ends.
func testSpec(t *testing.T, b *Backend, script string) backend.Spec {
	t.Helper()
	var buf [6]byte
	_, _ = rand.Read(buf[:])
	name := "codex-connector-backend-test-" + hex.EncodeToString(buf[:])
	t.Cleanup(func() { _ = b.Remove(context.Background(), backend.Ref{Name: name}) })
	return backend.Spec{
		Task: "test", Name: name, Image: imagestest.FakeCodex(t),
		Command: []string{"codex", "exec", "--", script},
		Labels:  map[string]string{"codex-connector.backend-test": name},
		Network: backend.NoNetwork,
		Limits:  backend.Limits{MemoryBytes: 128 << 20, NanoCPUs: 1e9, Pids: 64, TmpBytes: 16 << 20, LogBytes: 1 << 20},
	}
}

func recordNothing(backend.Ref) error { return nil }

// A run that exits before anyone waits is still seen to exit: the wait was
// registered before the start. Its output and exit are there until it is
// removed, and removing it twice is no error.
func TestARunThatEndsAtOnceIsSeenToEnd(t *testing.T) {
	b := New(imagestest.Engine(t))
	ctx := context.Background()
	spec := testSpec(t, b, "say hello from the backend")
	var recorded backend.Ref
	h, err := b.Launch(ctx, spec, func(ref backend.Ref) error { recorded = ref; return nil })
	if err != nil {
		t.Fatal(err)
	}
	if recorded.ID == "" || recorded != h.Ref() || recorded.Name != spec.Name {
		t.Fatalf("recorded %+v, the handle's %+v", recorded, h.Ref())
	}
	// Gone by now, long before the wait below is asked.
	for deadline := time.Now().Add(30 * time.Second); ; {
		st, err := b.Inspect(ctx, h.Ref())
		if err != nil {
			t.Fatal(err)
		}
		if !st.Running && !st.Created {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the run never ended: %+v", st)
		}
		time.Sleep(100 * time.Millisecond)
	}
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := h.Wait(wctx); err != nil {
		t.Fatalf("the wait missed the exit: %v", err)
	}
	st, err := h.State(ctx)
	if err != nil || st.Running || st.Exit != (backend.Exit{}) || !strings.Contains(strings.Join(st.Command, " "), "say hello") {
		t.Fatalf("state %+v, %v", st, err)
	}
	rc, err := h.Logs(ctx, backend.LogOptions{})
	if err != nil {
		t.Fatal(err)
	}
	out, _ := io.ReadAll(rc)
	rc.Close()
	// Framed as backend.LogStream says: a stream byte, three zeros, a
	// length, then the message, which starts with its time.
	if !bytes.Contains(out, []byte("hello from the backend")) || len(out) < 9 || out[0] != 1 && out[0] != 2 || !bytes.Equal(out[1:4], []byte{0, 0, 0}) {
		t.Fatalf("logs %q", out)
	}
	if _, err := time.Parse(time.RFC3339Nano, string(out[8:8+bytes.IndexByte(out[8:], ' ')])); err != nil {
		t.Fatalf("the first message has no time: %v", err)
	}
	if err := h.Remove(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Inspect(ctx, h.Ref()); !errors.Is(err, backend.ErrNotFound) {
		t.Fatalf("inspect after removal: %v", err)
	}
	if err := h.Remove(ctx); err != nil {
		t.Fatalf("a second removal: %v", err)
	}
}

// A run the scheduler cannot record is removed before it starts.
func TestARunThatCannotBeRecordedIsRemoved(t *testing.T) {
	b := New(imagestest.Engine(t))
	ctx := context.Background()
	spec := testSpec(t, b, "say never")
	refused := errors.New("the record is locked")
	var made backend.Ref
	_, err := b.Launch(ctx, spec, func(ref backend.Ref) error { made = ref; return refused })
	if !errors.Is(err, refused) || made.ID == "" {
		t.Fatalf("launch: %v (made %+v)", err, made)
	}
	if _, err := b.Inspect(ctx, made); !errors.Is(err, backend.ErrNotFound) {
		t.Fatalf("the run was left: %v", err)
	}
}

// A run is found again by the name the record keeps, listed by its labels,
// and stopped with a grace; a name left by a run that was never recorded
// is replaced by the next launch.
func TestARunIsRecoveredListedAndStopped(t *testing.T) {
	b := New(imagestest.Engine(t))
	ctx := context.Background()
	spec := testSpec(t, b, "sleep 60s; say late")
	if _, err := b.Launch(ctx, spec, recordNothing); err != nil {
		t.Fatal(err)
	}
	first, err := b.Inspect(ctx, backend.Ref{Name: spec.Name})
	if err != nil {
		t.Fatal(err)
	}
	h, err := b.Launch(ctx, spec, recordNothing)
	if err != nil {
		t.Fatalf("a second launch of the name: %v", err)
	}
	if h.Ref().ID == first.ID {
		t.Fatal("the second launch kept the first container")
	}
	got, st, err := b.Recover(ctx, backend.Ref{Name: spec.Name})
	if err != nil || !st.Running || got.Ref().ID != h.Ref().ID {
		t.Fatalf("recover: %+v %+v %v", got, st, err)
	}
	list, err := b.List(ctx, map[string]string{"codex-connector.backend-test": spec.Name})
	if err != nil || len(list) != 1 || list[0].Ref != got.Ref() || !list[0].Running {
		t.Fatalf("list: %+v %v", list, err)
	}
	if err := got.Stop(ctx, time.Second); err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := got.Wait(wctx); err != nil {
		t.Fatal(err)
	}
	if st, err := got.State(ctx); err != nil || st.Running || st.Exit.Code == 0 {
		t.Fatalf("after the stop: %+v %v", st, err)
	}
	if err := got.Stop(ctx, time.Second); err != nil {
		t.Fatalf("a stop of a stopped run: %v", err)
	}
}

// An engine that does not answer is told apart from a run that is gone.
func TestAnEngineThatDoesNotAnswerIsUnreachable(t *testing.T) {
	cli, err := client.NewClientWithOpts(client.WithHost("unix://"+t.TempDir()+"/no-engine.sock"), client.WithAPIVersionNegotiation())
	if err != nil {
		t.Fatal(err)
	}
	b := New(cli)
	_, _, err = b.Recover(context.Background(), backend.Ref{Name: "codex-connector-none"})
	if !errors.Is(err, backend.ErrUnreachable) || errors.Is(err, backend.ErrNotFound) {
		t.Fatalf("recover on no engine: %v", err)
	}
	err = b.Stop(context.Background(), backend.Ref{Name: "codex-connector-none"}, time.Second)
	if !errors.Is(err, backend.ErrUnreachable) || !strings.Contains(err.Error(), "cannot reach the Docker engine") {
		t.Fatalf("stop on no engine: %v", err)
	}
	if caps := b.Capabilities(); !caps.SharedFilesystem {
		t.Fatalf("capabilities %+v", caps)
	}
}
