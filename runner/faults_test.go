package runner

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/codex-connector/codex-connector/backend"
	"github.com/codex-connector/codex-connector/backend/docker"
	"github.com/codex-connector/codex-connector/internal/hostfs/hostfstest"
	"github.com/codex-connector/codex-connector/store"
	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/client"
)

// A log directory that runs out of space (here a 256 KiB tmpfs): the task's
// record says the log is incomplete and the result was not saved, no
// half-written result file is left, the record's byte count is what the file
// holds, and the runner goes on working once there is room again.
func TestFullLogDirectoryIsRecordedNotHidden(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("this test mounts a small tmpfs, which needs root")
	}
	var logs string
	h := newHarness(t, func(c *Config) {
		logs = filepath.Join(c.Home, "logs")
		if err := os.MkdirAll(logs, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := syscall.Mount("tmpfs", logs, "tmpfs", 0, "size=256k,mode=0700"); err != nil {
			t.Fatalf("mount a small tmpfs: %v", err)
		}
	})
	t.Cleanup(func() { _ = syscall.Unmount(logs, syscall.MNT_DETACH) })

	task := h.startAndWait(t, Spec{Prompt: "lines 50000; say all printed", WorkingDirectory: newRepo(t)})
	if !strings.Contains(task.Error, "the log is incomplete") || !strings.Contains(task.Error, "no space left on device") || !strings.Contains(task.Error, "free space on the disk") ||
		!strings.Contains(task.Error, "the result could not be saved") {
		t.Fatalf("record does not say what was lost: %s %q", task.Status, task.Error)
	}
	t.Logf("record: %s: %s", task.Status, task.Error)
	if task.Result != "all printed" {
		t.Errorf("the record lost the result it could keep: %q", task.Result)
	}
	fi, err := os.Stat(h.LogPath(task.ID))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Size() != task.LogBytes {
		t.Errorf("record says the log holds %d bytes, the file holds %d", task.LogBytes, fi.Size())
	}
	entries, _ := os.ReadDir(logs)
	for _, e := range entries {
		// The log and its checkpoint (see copyLogs), nothing half-written.
		if e.Name() != task.ID+".log" && e.Name() != task.ID+".log.ckpt" {
			t.Errorf("left in the full directory: %s", e.Name())
		}
	}

	if err := os.Remove(h.LogPath(task.ID)); err != nil {
		t.Fatal(err)
	}
	next := h.startAndWait(t, Spec{Prompt: "lines 10; say room again", WorkingDirectory: newRepo(t)})
	if next.Status != store.Completed || next.Error != "" || readFile(t, h.ResultPath(next.ID)) != "room again" {
		t.Fatalf("after making room: %s %q", next.Status, next.Error)
	}
}

// A server killed between claiming a task and creating its container leaves
// a running record with no container; the next server queues it again and
// runs it, once, and before a task that was queued behind it.
func TestKillBetweenClaimAndCreateRunsTheTaskOnce(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.MaxRunning = 1 })
	repo := newRepo(t)
	user, err := containerUser(repo)
	if err != nil {
		t.Fatal(err)
	}
	dead := deadFollower(t)
	now := time.Now().UTC()
	claimed, queued := store.NewID(now), store.NewID(now.Add(time.Second))
	// The records as a server leaves them when it dies right after claiming
	// the first task, with the second waiting behind it.
	for _, task := range []*store.Task{
		{ID: claimed, Prompt: "append once.txt ran; say ran", Status: store.Running, CreatedAt: now, StartedAt: now},
		{ID: queued, Prompt: "say second", Status: store.Queued, CreatedAt: now.Add(time.Second)},
	} {
		task.WorkingDirectory, task.RepoRoot, task.Sandbox, task.Image = repo, repo, DangerFullAccess, h.cfg.Image.Ref
		task.ContainerName, task.User, task.Follower, task.LeaseUntil = containerName(task.ID), user, dead, now.Add(time.Hour)
		if err := h.store.Create(task); err != nil {
			t.Fatal(err)
		}
	}
	h.reconcile(context.Background())
	first, second := h.waitFinal(t, claimed), h.waitFinal(t, queued)
	if first.Status != store.Completed || first.Result != "ran" || second.Status != store.Completed {
		t.Fatalf("after the takeover: %s %q; %s %q", first.Status, first.Error, second.Status, second.Error)
	}
	// Each run appends a line: one line is one run.
	if got := readFile(t, filepath.Join(repo, "once.txt")); got != "ran\n" {
		t.Fatalf("once.txt = %q: the task ran %d times", got, strings.Count(got, "\n"))
	}
	if second.StartedAt.Before(first.FinishedAt) {
		t.Errorf("the task queued behind started at %s, before the claimed one ended at %s", second.StartedAt, first.FinishedAt)
	}
}

// deadFollower names a process of this machine that has exited.
func deadFollower(t *testing.T) string {
	t.Helper()
	p, err := os.StartProcess("/bin/true", []string{"true"}, &os.ProcAttr{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Wait(); err != nil {
		t.Fatal(err)
	}
	host, _ := os.Hostname()
	return host + "/" + strconv.Itoa(p.Pid) + "/deadbeef"
}

// A server killed between creating a task's container and starting it
// leaves a created container; the next server removes it and runs the task
// afresh, once.
func TestKillBetweenCreateAndStartRunsTheTaskOnce(t *testing.T) {
	h := newHarness(t, nil)
	repo := newRepo(t)
	user, err := containerUser(repo)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC()
	id := store.NewID(now)
	created, err := h.engine.ContainerCreate(context.Background(), &container.Config{Image: h.cfg.Image.Ref, Cmd: []string{"codex"},
		Labels: map[string]string{LabelTask: id, LabelHome: homeLabel(h.home)}}, nil, nil, nil, containerName(id))
	if err != nil {
		t.Fatal(err)
	}
	if err := h.store.Create(&store.Task{ID: id, Prompt: "append once.txt ran; say ran", WorkingDirectory: repo, RepoRoot: repo,
		Sandbox: DangerFullAccess, Image: h.cfg.Image.Ref, Status: store.Running, CreatedAt: now, StartedAt: now,
		ContainerName: containerName(id), ContainerID: created.ID, User: user, Follower: deadFollower(t), LeaseUntil: now.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	h.reconcile(context.Background())
	ranOnceAfresh(t, h, repo, id, created.ID)
}

// ranOnceAfresh waits for a task the reconciler requeued and checks that
// it completed in a new container, having run once: each run of the
// task's script appends a line to once.txt.
func ranOnceAfresh(t *testing.T, h *harness, repo, id, leftover string) {
	t.Helper()
	task := h.waitFinal(t, id)
	if task.Status != store.Completed || task.Result != "ran" || task.ContainerID == leftover {
		t.Fatalf("requeued task: %s %q (container %s, the leftover was %s)", task.Status, task.Error, task.ContainerID, leftover)
	}
	if got := readFile(t, filepath.Join(repo, "once.txt")); got != "ran\n" {
		t.Fatalf("once.txt = %q: the task ran %d times", got, strings.Count(got, "\n"))
	}
	if _, err := h.engine.ContainerInspect(context.Background(), leftover); err == nil {
		t.Fatal("the leftover container was not removed")
	}
}

// A server killed after the start but before it confirmed the mounts
// leaves a container held at its gate: nothing of the task ran. The next
// server removes it and runs the task afresh, once.
func TestKillWhileHeldAtTheGateRunsTheTaskOnce(t *testing.T) {
	h := newHarness(t, nil)
	repo := newRepo(t)
	id, leftover := gatedLeftover(t, h, repo)
	h.reconcile(context.Background())
	ranOnceAfresh(t, h, repo, id, leftover)
}

// gatedLeftover makes what a server leaves when it dies after starting a
// task's container but before it confirmed the mounts: a running record
// that names a follower that is gone, and the container, held at its gate.
// Each run of the task appends a line to once.txt in repo.
func gatedLeftover(t *testing.T, h *harness, repo string) (id, containerID string) {
	t.Helper()
	user, err := containerUser(repo)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC()
	id = store.NewID(now)
	task := &store.Task{ID: id, Prompt: "append once.txt ran; say ran", WorkingDirectory: repo, RepoRoot: repo,
		Sandbox: DangerFullAccess, Image: h.cfg.Image.Ref, Status: store.Running, CreatedAt: now, StartedAt: now,
		ContainerName: containerName(id), User: user, Follower: deadFollower(t), LeaseUntil: now.Add(time.Hour)}
	// Made and started as a launch does, but the gate never opened.
	stateDir, err := h.prepareStateDir(context.Background(), task)
	if err != nil {
		t.Fatal(err)
	}
	p := policy{task: task, stateDir: stateDir, limits: h.cfg.Limits, version: "test", home: homeLabel(h.home), bridge: h.cfg.HelperBinary, gate: newGate()}
	// As a launch does: the engine looked at first, so the run's user can
	// be given as the engine's.
	if _, err := h.helpers.Look(context.Background(), ""); err != nil {
		t.Fatal(err)
	}
	run, err := h.backend.Launch(context.Background(), p.spec(), func(backend.Ref) error { return nil })
	if err != nil {
		t.Fatal(err)
	}
	task.ContainerID = run.Ref().ID
	if err := h.store.Create(task); err != nil {
		t.Fatal(err)
	}
	return id, task.ContainerID
}

// hangAfterRemove is an engine on which the removal of one container
// happens, and then the call never returns (until released): the server
// that made it is, for the test, dead from that moment.
type hangAfterRemove struct {
	*client.Client
	target  atomic.Value // the container id
	removed chan struct{}
	release chan struct{}
}

func (e *hangAfterRemove) ContainerRemove(ctx context.Context, id string, opts container.RemoveOptions) error {
	err := e.Client.ContainerRemove(ctx, id, opts)
	if target, _ := e.target.Load().(string); id == target {
		close(e.removed)
		<-e.release
	}
	return err
}

// A server that adopts a task held at its gate, and dies right after it
// removed the container, leaves a task the next server runs afresh, once:
// not one it fails because its container is gone.
func TestKillAfterRemovingAGatedContainerRunsTheTaskOnce(t *testing.T) {
	hang := &hangAfterRemove{removed: make(chan struct{}), release: make(chan struct{})}
	// A lease of an hour: this server makes no sweep or renewal of its own
	// while the test runs.
	h := newHarnessOn(t, func(c *Config) { c.Lease = time.Hour }, func(cli *client.Client) docker.Engine {
		hang.Client = cli
		return hang
	})
	t.Cleanup(func() { close(hang.release) })
	repo := newRepo(t)
	id, leftover := gatedLeftover(t, h, repo)
	hang.target.Store(leftover)
	h.reconcile(context.Background())
	select {
	case <-hang.removed:
	case <-time.After(time.Minute):
		t.Fatal("the adopting server never removed the container held at its gate")
	}
	// The server dies here: the next one finds its process gone.
	if _, err := h.store.Update(id, func(task *store.Task) error {
		task.Follower = deadFollower(t)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	next := newHarness(t, func(c *Config) { c.Home = h.home })
	ranOnceAfresh(t, next, repo, id, leftover)
}

// slowRemove is an engine whose removals wait a while, as on a busy
// engine, unless their context ends first; it keeps what each returned.
type slowRemove struct {
	*client.Client
	mu   sync.Mutex
	errs map[string][]error // by container
}

func (e *slowRemove) ContainerRemove(ctx context.Context, id string, opts container.RemoveOptions) error {
	select {
	case <-ctx.Done():
	case <-time.After(2 * time.Second):
	}
	err := e.Client.ContainerRemove(ctx, id, opts)
	e.mu.Lock()
	if e.errs == nil {
		e.errs = map[string][]error{}
	}
	e.errs[id] = append(e.errs[id], err)
	e.mu.Unlock()
	return err
}

// results are what the removals of container id returned (the engine's
// probe container is removed through it too).
func (e *slowRemove) results(id string) []error {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]error(nil), e.errs[id]...)
}

// A task's end is recorded, then its container removed. A lease renewal in
// between finds the task ended and lets the run go; the follower removes
// the container all the same, rather than leave it to a sweep.
func TestTheContainerGoesWhenARenewalSeesTheEndFirst(t *testing.T) {
	slow := &slowRemove{}
	h := newHarnessOn(t, func(c *Config) { c.Lease = time.Second }, func(cli *client.Client) docker.Engine {
		slow.Client = cli
		return slow
	})
	task := h.startAndWait(t, Spec{Prompt: "say done", WorkingDirectory: newRepo(t), Sandbox: DangerFullAccess})
	if task.Status != store.Completed {
		t.Fatalf("the task ended %s %q", task.Status, task.Error)
	}
	for i := 0; len(slow.results(task.ContainerID)) == 0; i++ {
		if i > 1500 {
			t.Fatal("the follower never removed the container")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if errs := slow.results(task.ContainerID); errs[0] != nil {
		t.Fatalf("the follower's removal of the container: %v", errs[0])
	}
	if _, err := h.engine.ContainerInspect(context.Background(), task.ContainerID); !cerrdefs.IsNotFound(err) {
		t.Fatalf("the container is still there: %v", err)
	}
}

// stuckList is an engine whose first container listing (the first
// reconcile's) hangs until released or its context ends, as a call to a
// stuck engine does.
type stuckList struct {
	*client.Client
	calls   atomic.Int32
	entered chan struct{}
	release chan struct{}
}

func (s *stuckList) ContainerList(ctx context.Context, opts container.ListOptions) ([]container.Summary, error) {
	if s.calls.Add(1) == 1 {
		close(s.entered)
		select {
		case <-s.release:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return s.Client.ContainerList(ctx, opts)
}

// A reconcile stuck on the engine does not hold up lease renewal: the
// running task's lease goes on being renewed, so no other server could take
// it over while this one follows it.
func TestLeasesAreRenewedWhileAnEngineCallHangs(t *testing.T) {
	stuck := &stuckList{entered: make(chan struct{}), release: make(chan struct{})}
	h := newHarnessOn(t, func(c *Config) { c.Lease = time.Second }, func(cli *client.Client) docker.Engine {
		stuck.Client = cli
		return stuck
	})
	var releaseOnce sync.Once
	release := func() { releaseOnce.Do(func() { close(stuck.release) }) }
	t.Cleanup(release)
	select {
	case <-stuck.entered:
	case <-time.After(time.Minute):
		t.Fatal("the first reconcile never listed containers")
	}

	repo := newRepo(t)
	task, err := h.Start(context.Background(), Spec{Prompt: "await go; say renewed", WorkingDirectory: repo, Sandbox: DangerFullAccess})
	if err != nil {
		t.Fatal(err)
	}
	h.waitStatus(t, task.ID, store.Running)
	claimed, err := h.store.Get(task.ID)
	if err != nil {
		t.Fatal(err)
	}
	// Renewed twice past the claim while the reconcile still hangs (it is
	// released only below).
	renewals, last := 0, claimed.LeaseUntil
	for i := 0; renewals < 2; i++ {
		if i > 1500 {
			t.Fatalf("the lease was renewed %d times in 30s while a reconcile hung on the engine", renewals)
		}
		time.Sleep(20 * time.Millisecond)
		now, err := h.store.Get(task.ID)
		if err != nil {
			t.Fatal(err)
		}
		if now.Status != store.Running || now.Follower != claimed.Follower {
			t.Fatalf("the task is %s, followed by %q, while its follower lives", now.Status, now.Follower)
		}
		if now.LeaseUntil.After(last) {
			renewals, last = renewals+1, now.LeaseUntil
		}
	}
	if stuck.calls.Load() != 1 {
		t.Fatalf("the engine was listed %d times: the hung call did not hold the reconcile", stuck.calls.Load())
	}
	hostfstest.Must(t, os.WriteFile(filepath.Join(repo, "go"), nil, 0o644))
	if final := h.waitFinal(t, task.ID); final.Status != store.Completed || final.Result != "renewed" {
		t.Fatalf("the task ended %s %q", final.Status, final.Error)
	}
	release()
}

// A process killed while it writes a task's log checkpoint, result or
// egress policy leaves its temporary file beside it, which no later write
// renames away. The task's end removes them; another task's stay.
func TestAnEndedTaskLeavesNoTemporaryFiles(t *testing.T) {
	h := newHarness(t, nil)
	repo := newRepo(t)
	task, err := h.Start(context.Background(), Spec{Prompt: "await go; say done", WorkingDirectory: repo, Sandbox: WorkspaceWrite})
	if err != nil {
		t.Fatal(err)
	}
	h.waitStatus(t, task.ID, store.Running)
	other := store.NewID(time.Now().Add(time.Hour))
	left := []string{checkpointPath(h.LogPath(task.ID)) + ".tmp-1", h.ResultPath(task.ID) + ".tmp-2", h.policyPath(task.ID) + ".tmp-3"}
	kept := checkpointPath(h.LogPath(other)) + ".tmp-4"
	for _, p := range append(left, kept) {
		hostfstest.Must(t, os.WriteFile(p, []byte("half"), 0o600))
	}
	hostfstest.Must(t, os.WriteFile(filepath.Join(repo, "go"), nil, 0o644))
	if final := h.waitFinal(t, task.ID); final.Status != store.Completed {
		t.Fatalf("the task ended %s %q", final.Status, final.Error)
	}
	// They go after the end is recorded.
	remaining := func() []string {
		var out []string
		for _, p := range left {
			if _, err := os.Lstat(p); !os.IsNotExist(err) {
				out = append(out, p)
			}
		}
		return out
	}
	for deadline := time.Now().Add(30 * time.Second); len(remaining()) > 0 && time.Now().Before(deadline); {
		time.Sleep(50 * time.Millisecond)
	}
	for _, p := range remaining() {
		t.Errorf("left after the task's end: %s", p)
	}
	if _, err := os.Lstat(kept); err != nil {
		t.Errorf("another task's temporary file went: %v", err)
	}
}

// removalUnderWay is an engine on which the removal of one container is
// already under way when the runner asks for it (a server killed as it
// removed the container left its request to the engine): the engine
// answers "already in progress" until that removal is done.
type removalUnderWay struct {
	*client.Client
	target atomic.Value // the container id
	once   sync.Once
	done   atomic.Bool
}

func (e *removalUnderWay) ContainerRemove(ctx context.Context, id string, opts container.RemoveOptions) error {
	if target, _ := e.target.Load().(string); id != target {
		return e.Client.ContainerRemove(ctx, id, opts)
	}
	e.once.Do(func() {
		go func() {
			time.Sleep(time.Second)
			_ = e.Client.ContainerRemove(context.Background(), id, opts)
			e.done.Store(true)
		}()
	})
	if !e.done.Load() {
		return fmt.Errorf("Error response from daemon: removal of container %s is already in progress: %w", id, cerrdefs.ErrConflict)
	}
	return e.Client.ContainerRemove(ctx, id, opts)
}

// A removal the engine already carries out is waited for, not an error:
// the next launch of a task replaces the container a killed server was
// removing, and must not fail for it.
func TestARemovalAlreadyUnderWayIsWaitedFor(t *testing.T) {
	under := &removalUnderWay{}
	h := newHarnessOn(t, nil, func(cli *client.Client) docker.Engine {
		under.Client = cli
		return under
	})
	created, err := h.engine.ContainerCreate(context.Background(), &container.Config{Image: h.cfg.Image.Ref, Cmd: []string{"codex"}}, nil, nil, nil, "")
	if err != nil {
		t.Fatal(err)
	}
	under.target.Store(created.ID)
	if err := h.remove(context.Background(), created.ID); err != nil {
		t.Fatalf("remove while a removal is under way: %v", err)
	}
	if _, err := h.engine.ContainerInspect(context.Background(), created.ID); !cerrdefs.IsNotFound(err) {
		t.Fatalf("the container is still there: %v", err)
	}
}
