package docker

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/codex-connector/codex-connector/backend"
	"github.com/codex-connector/codex-connector/images/imagestest"
	"github.com/codex-connector/codex-connector/runner/egress"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/client"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
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

// The probe reads what a run is given from inside one: on this machine's
// own engine every limit holds, and no user namespace maps its uids.
func TestTheProbeSeesTheLimitsTheEngineEnforces(t *testing.T) {
	b := New(imagestest.Engine(t))
	h := b.Helpers(HelperConfig{Binary: imagestest.StaticBinary(t), ImageLabels: helperTestLabels})
	facts, err := h.Look(context.Background(), "")
	if err != nil {
		t.Fatal(err)
	}
	got := facts.Enforced
	t.Logf("%s; inside: %+v; warnings %q", facts, got.Inside, facts.Warnings)
	if facts.Name != "Docker" || facts.Rootless() || !strings.Contains(facts.String(), "rootful") {
		t.Fatalf("the engine is taken for %s", facts)
	}
	if got.Inside.Cgroup == "" || got.Inside.UIDMap == "" || !strings.HasPrefix(got.Kernel, "Linux version") {
		t.Fatalf("the probe read nothing: %+v", got.Inside)
	}
	if missing := got.Missing(); len(missing) != 0 || got.UserNamespace {
		t.Fatalf("limits not enforced %v, user namespace %v: %+v", missing, got.UserNamespace, got.Inside)
	}
}

// On a rootless engine the probe sees the user namespace, and on this
// machine's cgroup v1 that no limit reaches the run, though neither the
// engine's create answer nor (for Podman) its /info says so.
func TestTheProbeSeesWhatARootlessEngineGives(t *testing.T) {
	for _, kind := range []string{imagestest.Podman, imagestest.RootlessDocker} {
		t.Run(kind, func(t *testing.T) {
			e := imagestest.StartRootless(t, kind)
			b := New(e.Client(t))
			cfg := HelperConfig{Binary: imagestest.StaticBinary(t), ImageLabels: helperTestLabels, FactsFile: filepath.Join(t.TempDir(), "engine.json")}
			facts, err := b.Helpers(cfg).Look(context.Background(), "")
			if err != nil {
				t.Fatalf("%v\n%s", err, e.Log())
			}
			// A later server on this engine takes what the probe saw.
			counted := &countCreates{Client: e.Client(t)}
			if again, err := New(counted).Helpers(cfg).Look(context.Background(), ""); err != nil || counted.n.Load() != 0 || again.Enforced != facts.Enforced {
				t.Fatalf("a later server probed again (%d containers, %v)", counted.n.Load(), err)
			}
			got := facts.Enforced
			t.Logf("%s; inside: %+v; warnings %q", facts, got.Inside, facts.Warnings)
			want := map[string]string{imagestest.Podman: "Podman", imagestest.RootlessDocker: "Docker"}[kind]
			if facts.Name != want || !facts.Rootless() || !strings.Contains(facts.String(), want+" ") || !strings.Contains(facts.String(), "rootless") {
				t.Fatalf("the engine is taken for %s", facts)
			}
			if !got.UserNamespace {
				t.Fatalf("no user namespace seen: %+v", got.Inside)
			}
			if _, err := os.Stat("/sys/fs/cgroup/cgroup.controllers"); err != nil {
				if missing := got.Missing(); len(missing) != 3 {
					t.Fatalf("on cgroup v1, limits seen as enforced: missing only %v: %+v", missing, got.Inside)
				}
			}
		})
	}
}

// A proxy that cannot serve says why in its own words: here its user may
// not open the directories it serves from, as a rootless engine's mapped
// uid could not.
func TestAProxyThatCannotServeSaysWhy(t *testing.T) {
	b := New(imagestest.Engine(t))
	dir := t.TempDir()
	for _, sub := range []string{egress.PoliciesDir, egress.SocketsDir} {
		if err := os.Mkdir(filepath.Join(dir, sub), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	name := "codex-connector-backend-test-proxy-" + filepath.Base(dir)
	h := b.Helpers(HelperConfig{Binary: imagestest.StaticBinary(t), ImageLabels: helperTestLabels,
		ProxyName: name, ProxyDir: dir, ProxyUser: "54321:54321", ProxyLabels: map[string]string{"codex-connector.backend-test": "proxy"}})
	t.Cleanup(func() { _ = h.RemoveProxy(context.Background()) })
	if err := h.EnsureProxy(context.Background()); err != nil {
		t.Fatal(err)
	}
	var said string
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(300 * time.Millisecond) {
		if said = h.ProxyTail(context.Background()); strings.Contains(said, "permission denied") {
			return
		}
	}
	t.Fatalf("the proxy's own reason is not told: %s", said)
}

// countCreates counts the containers made through it.
type countCreates struct {
	*client.Client // an engine that builds too
	n              atomic.Int32
}

func (c *countCreates) ContainerCreate(ctx context.Context, config *container.Config, host *container.HostConfig, net *network.NetworkingConfig, platform *ocispec.Platform, name string) (container.CreateResponse, error) {
	c.n.Add(1)
	return c.Client.ContainerCreate(ctx, config, host, net, platform, name)
}

// A server started later on the same engine takes the facts a probe saw
// from the facts file, and probes no more; a file that is not the
// server's own regular file is probed over.
func TestTheEnginesFactsAreProbedOncePerEngine(t *testing.T) {
	cli := imagestest.Engine(t)
	file := filepath.Join(t.TempDir(), "engine.json")
	look := func() (Facts, int32) {
		eng := &countCreates{Client: cli}
		h := New(eng).Helpers(HelperConfig{Binary: imagestest.StaticBinary(t), ImageLabels: helperTestLabels, FactsFile: file})
		f, err := h.Look(context.Background(), "")
		if err != nil {
			t.Fatal(err)
		}
		return f, eng.n.Load()
	}
	first, made := look()
	if made != 1 {
		t.Fatalf("the first look made %d containers, want the probe's one", made)
	}
	again, made := look()
	if made != 0 || again.Enforced != first.Enforced || again.String() != first.String() {
		t.Fatalf("a later server probed again (%d containers), or saw other facts: %+v vs %+v", made, again, first)
	}
	// A link in its place is not followed: the facts are probed afresh.
	forged := filepath.Join(t.TempDir(), "forged.json")
	if err := os.Rename(file, forged); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(forged, file); err != nil {
		t.Fatal(err)
	}
	if _, made := look(); made != 1 {
		t.Fatalf("a facts file that is a link was taken (%d containers made)", made)
	}
}

// helperTestLabels mark the helper image these tests build as a server
// would (its home's label, here a home of the tests'): on a new engine the
// first test to build the image of this binary labels it for every later
// one, and the runner's tests check that the image carries a home.
var helperTestLabels = map[string]string{"codex-connector.proxy-image-home": "backend-tests"}
