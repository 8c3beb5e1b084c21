package runner

import (
	"context"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/codex-connector/codex-connector/backend"

	"github.com/codex-connector/codex-connector/backend/docker"
	"github.com/codex-connector/codex-connector/images"
	"github.com/codex-connector/codex-connector/images/imagestest"
	"github.com/codex-connector/codex-connector/store"
	"github.com/codex-connector/codex-connector/workspace"
	"github.com/docker/docker/client"
)

const testUID, testGID = imagestest.RepoUID, imagestest.RepoGID

type harness struct {
	*Runner
	// engine is the engine itself, unwrapped, for what a test looks at.
	engine *client.Client
	store  *store.Store
	home   string
	// stop ends the server as a server exits: its containers run on.
	stop func()
}

func newHarness(t testing.TB, mod func(*Config)) *harness { return newHarnessOn(t, mod, nil) }

// newHarnessOn is newHarness with the engine wrapped by wrap (nil: as it
// is), for faults a real engine cannot produce on demand. A mod that sets
// Home makes a second server of that home.
func newHarnessOn(t testing.TB, mod func(*Config), wrap func(*client.Client) docker.Engine) *harness {
	t.Helper()
	return newHarnessWith(t, mod, wrap, nil)
}

// newHarnessOnBackend is newHarness with the backend wrapped by wrap, for
// how a run behaves that a real engine cannot show on demand.
func newHarnessOnBackend(t testing.TB, wrap func(backend.Backend) backend.Backend) *harness {
	t.Helper()
	return newHarnessWith(t, nil, nil, wrap)
}

func newHarnessWith(t testing.TB, mod func(*Config), wrap func(*client.Client) docker.Engine, wrapBackend func(backend.Backend) backend.Backend) *harness {
	t.Helper()
	cli := imagestest.Engine(t)
	var eng docker.Engine = cli
	if wrap != nil {
		eng = wrap(cli)
	}
	ref := imagestest.FakeCodex(t)
	cfg := Config{
		Home:       t.TempDir(),
		Image:      images.Codex{Ref: ref, Version: images.DefaultCodexVersion},
		MaxRunning: 4,
		StopGrace:  time.Second,
		Limits:     Limits{MemoryBytes: 256 << 20, NanoCPUs: 1e9, Pids: 256, TmpBytes: 64 << 20},
		Version:    "test",
		// Test repositories live in temporary directories.
		AllowedRoots: []string{os.TempDir()},
		HelperBinary: imagestest.StaticBinary(t),
	}
	if mod != nil {
		mod(&cfg)
	}
	st, err := store.Open(filepath.Join(cfg.Home, "tasks.db"), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	be := testBackend(cli)
	if wrap != nil {
		be = docker.New(eng)
	}
	r, err := New(ctx, cfg, be, st, t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	if wrapBackend != nil {
		r.backend = wrapBackend(r.backend)
	}
	go r.Supervise()
	h := &harness{Runner: r, engine: cli, store: st, home: cfg.Home}
	var once sync.Once
	h.stop = func() {
		once.Do(func() {
			cancel()
			r.Drain()
		})
	}
	t.Cleanup(func() {
		h.stop()
		removeTestContainers(t, r)
		_ = r.remove(context.Background(), r.proxyName())
	})
	return h
}

// testBackend is one backend of the shared engine for every harness that
// does not wrap it, so that what the engine enforces is probed once per
// test binary, as a server probes it once.
func testBackend(cli *client.Client) *docker.Backend {
	testBackendOnce.Do(func() { sharedTestBackend = docker.New(cli) })
	return sharedTestBackend
}

var (
	testBackendOnce   sync.Once
	sharedTestBackend *docker.Backend
)

// removeTestContainers removes what a failed test may have left running.
func removeTestContainers(t testing.TB, r *Runner) {
	tasks, _, _ := r.List(store.Filter{})
	for _, task := range tasks {
		_ = r.remove(context.Background(), task.ContainerName)
	}
}

func newRepo(t testing.TB) string { return imagestest.Repo(t) }

// startAndWait starts a task and waits for its end.
func (h *harness) startAndWait(t testing.TB, spec Spec) *store.Task {
	t.Helper()
	task, err := h.Start(context.Background(), spec)
	if err != nil {
		t.Fatalf("start: %v", err)
	}
	return h.waitFinal(t, task.ID)
}

func (h *harness) waitFinal(t testing.TB, id string) *store.Task {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	task, err := h.Wait(ctx, id)
	if err != nil {
		t.Fatalf("wait for task %s: %v", id, err)
	}
	// Wait returns once the end is recorded; what the runner does after
	// it (the container removed, the state before the run and a branch's
	// workspace gone) is done when it lets the task go.
	if done := h.Done(id); done != nil {
		select {
		case <-done:
		case <-ctx.Done():
			t.Fatalf("task %s ended, but the runner never let it go", id)
		}
	}
	return task
}

func (h *harness) waitStatus(t *testing.T, id string, want store.Status) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		task, err := h.Get(id)
		if err != nil {
			t.Fatal(err)
		}
		if task.Status == want && (want != store.Running || task.ContainerID != "") {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("task %s never reached %s", id, want)
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// readLog returns what the log holds so far ("" before it exists).
func readLog(path string) string {
	b, _ := os.ReadFile(path)
	return string(b)
}

// mockRoute is the route to the scripted model server, with its key.
func mockRoute(model *imagestest.ModelServer) ModelRoute {
	return ModelRoute{Provider: "mock", Upstream: model.BaseURL, Secrets: []RouteSecret{BearerKey(imagestest.MockKeyEnv, model.Key, "")}}
}

// newCodexHarness runs tasks in the real Codex image against the scripted
// model server, Codex's provider "mock", reached by its model route: the
// proxy adds the server's key, which the task never holds.
func newCodexHarness(t testing.TB, model *imagestest.ModelServer) *harness {
	t.Helper()
	return newHarness(t, codexConfig(t, model))
}

// codexConfig is the configuration of newCodexHarness.
func codexConfig(t testing.TB, model *imagestest.ModelServer) func(*Config) {
	ref := imagestest.Codex(t)
	return func(c *Config) {
		c.Image = images.Codex{Ref: ref, Version: images.DefaultCodexVersion}
		c.CodexArgs = model.CodexArgs()
		c.Routes = []ModelRoute{mockRoute(model)}
		c.Limits.MemoryBytes = 2 << 30
	}
}

// protectGitOf works out the binds that protect git for a workspace-write
// task in the work tree at root, from a scan before the run as a launch
// takes it.
func protectGitOf(t *testing.T, root string) (workspace.GitMounts, error) {
	t.Helper()
	ws, err := workspace.Begin(root)
	if err != nil {
		t.Fatal(err)
	}
	return workspace.ProtectGit(root, ws)
}
