package runner

import (
	"context"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/codex-connector/codex-connector/backend/docker"
	"github.com/codex-connector/codex-connector/internal/hostfs/hostfstest"
	"github.com/codex-connector/codex-connector/store"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/client"
	bolt "go.etcd.io/bbolt"
)

// panicky is the engine, except that inspecting one container panics: a
// stand-in for a record or a container state no code path expects.
type panicky struct {
	*client.Client
	name string
}

func (p panicky) ContainerInspect(ctx context.Context, id string) (container.InspectResponse, error) {
	if id == p.name {
		panic("test: a state no code path expects, for " + id)
	}
	return p.Client.ContainerInspect(ctx, id)
}

// putRaw writes a record into the database as bytes, as damage or a hand
// would, bypassing the store's checks.
func putRaw(t *testing.T, h *harness, key string, record any) {
	t.Helper()
	data, err := json.Marshal(record)
	hostfstest.Must(t, err)
	db, err := bolt.Open(h.store.Path(), 0o600, &bolt.Options{Timeout: 5 * time.Second})
	hostfstest.Must(t, err)
	defer db.Close()
	hostfstest.Must(t, db.Update(func(tx *bolt.Tx) error { return tx.Bucket([]byte("tasks")).Put([]byte(key), data) }))
}

// adoptable fills in what a running task's record holds, followed by a
// server that is gone.
func adoptable(t *testing.T, h *harness, repo string, task *store.Task) *store.Task {
	t.Helper()
	now := time.Now().UTC()
	user, err := containerUser(repo)
	hostfstest.Must(t, err)
	task.WorkingDirectory, task.RepoRoot, task.Sandbox, task.Image = repo, repo, DangerFullAccess, h.cfg.Image.Ref
	task.Status, task.CreatedAt, task.StartedAt = store.Running, now, now
	task.ContainerName, task.User, task.Follower, task.LeaseUntil = containerName(task.ID), user, deadFollower(t), now.Add(time.Hour)
	return task
}

// A damaged or hostile record must not put every server that adopts it into
// a crash loop: each fails with a reason, or is left alone as corrupt, and
// the server goes on running tasks.
func TestHostileRecordsDoNotCrashTheServer(t *testing.T) {
	explosive := store.NewID(time.Now())
	h := newHarnessOn(t, func(c *Config) { c.Retention = 24 * time.Hour }, func(cli *client.Client) docker.Engine {
		return panicky{cli, containerName(explosive)}
	})
	repo := newRepo(t)

	// A running record whose container makes the runner panic.
	hostfstest.Must(t, h.store.Create(adoptable(t, h, repo, &store.Task{ID: explosive, Prompt: "say never"})))
	// A running record with odd fields and no container.
	odd := adoptable(t, h, repo, &store.Task{ID: store.NewID(time.Now().Add(time.Second)), Prompt: "say odd"})
	odd.ContainerID, odd.TimeoutMs, odd.Deadline = "deadbeef", math.MaxInt64, time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC)
	odd.User, odd.LogBytes, odd.StopReason = "not:a:user", -1, strings.Repeat("r", 1<<20)
	odd.Summary = &store.Summary{ThreadID: strings.Repeat("t", 1<<20), FilesChanged: make([]string, 100000)}
	hostfstest.Must(t, h.store.Create(odd))
	// A record whose key and id differ, and one whose id climbs out of the
	// data directory: both would make paths elsewhere.
	victim := filepath.Join(filepath.Dir(h.home), "victim.log")
	hostfstest.Must(t, os.WriteFile(victim, []byte("keep"), 0o600))
	mismatched := store.NewID(time.Now().Add(2 * time.Second))
	putRaw(t, h, mismatched, map[string]any{"v": 1, "id": "../../victim", "status": "running", "createdAt": time.Now()})
	putRaw(t, h, "../../victim", map[string]any{"v": 1, "id": "../../victim", "status": "queued", "createdAt": time.Now()})
	putRaw(t, h, "../../victim2", map[string]any{"v": 1, "id": "../../victim2", "status": "failed", "createdAt": time.Now().Add(-48 * time.Hour)})
	// Written past the store, as an older server would: the hourly rebuild
	// of the index of live tasks brings them to the reconcile.
	hostfstest.Must(t, h.store.RebuildLive())

	h.reconcile(context.Background())

	t.Run("the record whose state panics fails with the reason", func(t *testing.T) {
		task := h.waitFinal(t, explosive)
		if task.Status != store.Failed || !strings.Contains(task.Error, "internal error") {
			t.Fatalf("%s: %q", task.Status, task.Error)
		}
	})
	t.Run("the record with odd fields fails with the reason", func(t *testing.T) {
		task := h.waitFinal(t, odd.ID)
		if task.Status != store.Failed || !strings.Contains(task.Error, "container is gone") {
			t.Fatalf("%s: %q", task.Status, task.Error)
		}
		if n := encodedSize(task); n > h.cfg.Limits.RecordBytes {
			t.Fatalf("its record holds %d bytes, more than its cap of %d", n, h.cfg.Limits.RecordBytes)
		}
	})
	t.Run("a record naming another id is corrupt and left alone", func(t *testing.T) {
		_, corrupt, err := h.store.List(store.Filter{})
		hostfstest.Must(t, err)
		if !contains(corrupt, mismatched) {
			t.Fatalf("corrupt records %q", corrupt)
		}
	})
	t.Run("a record whose id is no id is not run", func(t *testing.T) {
		task, err := h.store.Get("../../victim")
		if err != nil || task.Status != store.Failed || !strings.Contains(task.Error, "not run") {
			t.Fatalf("%v: %+v", err, task)
		}
	})
	t.Run("pruning touches nothing outside the data directory", func(t *testing.T) {
		h.housekeeping(context.Background())
		if readFile(t, victim) != "keep" {
			t.Fatal("the victim file changed")
		}
	})
	t.Run("another server adopting the same records does not panic", func(t *testing.T) {
		other := newHarnessOn(t, func(c *Config) { c.Home = h.home }, func(cli *client.Client) docker.Engine {
			return panicky{cli, containerName(explosive)}
		})
		other.reconcile(context.Background())
		if task, _ := other.Get(explosive); task.Status != store.Failed {
			t.Fatalf("the failed task is %s again", task.Status)
		}
	})
	t.Run("the server goes on running tasks", func(t *testing.T) {
		task := h.startAndWait(t, Spec{Prompt: "say still here", WorkingDirectory: repo})
		if task.Status != store.Completed || task.Result != "still here" {
			t.Fatalf("%s: %q", task.Status, task.Error)
		}
	})
}

// A task adopted after a restart whose log holds a line far longer than
// any buffer, and fake events with huge fields, is followed to its end.
func TestAdoptedTaskWithAHugeLogLine(t *testing.T) {
	h := newHarness(t, nil)
	repo := newRepo(t)
	task := adoptable(t, h, repo, &store.Task{ID: store.NewID(time.Now()), Prompt: "say adopted"})
	huge := strings.Repeat("x", 16<<20)
	fake, _ := json.Marshal(map[string]any{"type": "item.completed", "item": map[string]any{"type": "command_execution", "command": strings.Repeat("c", 2<<20), "exit_code": 0}})
	thread, _ := json.Marshal(map[string]any{"type": "thread.started", "thread_id": strings.Repeat("t", 2<<20)})
	hostfstest.Must(t, os.WriteFile(h.LogPath(task.ID), []byte(huge+"\n"+string(fake)+"\n"+string(thread)+"\n"+huge), 0o600))
	// The task's container, as a server that died left it, running.
	hostfstest.Must(t, os.MkdirAll(h.stateDir(task.ID), 0o700))
	created, err := h.engine.ContainerCreate(context.Background(), &container.Config{Image: h.cfg.Image.Ref,
		Cmd: []string{"codex", "exec", "--", "sleep 1s; say adopted"}, Labels: map[string]string{LabelTask: task.ID, LabelHome: homeLabel(h.home)}},
		nil, nil, nil, task.ContainerName)
	hostfstest.Must(t, err)
	hostfstest.Must(t, h.engine.ContainerStart(context.Background(), created.ID, container.StartOptions{}))
	task.ContainerID = created.ID
	hostfstest.Must(t, h.store.Create(task))
	h.reconcile(context.Background())
	final := h.waitFinal(t, task.ID)
	if final.Status != store.Completed {
		t.Fatalf("%s: %q", final.Status, final.Error)
	}
}
