package runner

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/codex-connector/codex-connector/images"
	"github.com/codex-connector/codex-connector/images/imagestest"
	"github.com/codex-connector/codex-connector/store"
)

const testUID, testGID = imagestest.RepoUID, imagestest.RepoGID

type harness struct {
	*Runner
	store *store.Store
	home  string
}

func newHarness(t testing.TB, mod func(*Config)) *harness {
	t.Helper()
	eng := imagestest.Engine(t)
	ref := imagestest.FakeCodex(t)
	home := t.TempDir()
	st, err := store.Open(filepath.Join(home, "tasks.db"), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{
		Home:       home,
		Image:      images.Codex{Ref: ref, Version: images.DefaultCodexVersion},
		MaxRunning: 4,
		StopGrace:  time.Second,
		Limits:     Limits{MemoryBytes: 256 << 20, NanoCPUs: 1e9, Pids: 256, TmpBytes: 64 << 20},
		Version:    "test",
		// Test repositories live in temporary directories.
		AllowedRoots: []string{os.TempDir()},
		Egress:       Egress{Binary: imagestest.StaticBinary(t), ModelHosts: DefaultModelHosts},
	}
	if mod != nil {
		mod(&cfg)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r, err := New(ctx, cfg, eng, st, t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	go r.Run()
	t.Cleanup(func() {
		cancel()
		r.Drain()
		removeTestContainers(t, r)
		_ = r.remove(context.Background(), r.proxyName())
	})
	return &harness{Runner: r, store: st, home: home}
}

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
