package runner

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/codex-connector/codex-connector/backend"
	"github.com/codex-connector/codex-connector/backend/docker"
	"github.com/codex-connector/codex-connector/images"
	"github.com/codex-connector/codex-connector/store"
	"github.com/codex-connector/codex-connector/workspace"
)

// Config is what the runner needs to know; cmd builds it from flags, the
// environment and the config file.
type Config struct {
	// Home holds logs/ and runs/ (per-task state), beside tasks.db.
	Home  string
	Image images.Codex
	// Toolchains choose the base image each repository's tasks run on,
	// with Codex put onto it (toolchain.go); none runs them in Image.
	Toolchains Toolchains
	// Caches are the package caches mounted into tasks that may write
	// (caches.go): names of KnownCaches.
	Caches []string
	// MaxRunning caps the tasks this process runs at once; more wait queued.
	MaxRunning int
	// StopGrace is how long Codex gets between SIGTERM and SIGKILL.
	StopGrace time.Duration
	// StallTimeout ends a task as failed when Codex has made no progress for
	// this long outside a running command (it retries an unreachable model
	// API forever); 0 disables the watchdog.
	StallTimeout time.Duration
	Limits       Limits
	// Env is extra environment for Codex (NAME=value). Never a secret: a
	// task can read it; secrets go in Routes.
	Env []string
	// Routes are the model providers tasks reach through the egress proxy,
	// which holds their keys (credentials.go). With routes, every level
	// gets the proxy, danger-full-access too, for the model route alone.
	Routes []ModelRoute
	// CodexArgs are extra `codex exec` arguments, e.g. -c overrides.
	CodexArgs []string
	// AuthFile is the user's ChatGPT login (auth.json), used when no API
	// key is given: each task gets a copy without its refresh token
	// (login.go). The cost: when the access token expires, tasks fail
	// until the user runs codex on the host once to refresh it.
	AuthFile string
	// Version of codex-connector, written on every container's labels.
	Version string
	// Egress is the network of restricted sandboxes.
	Egress Egress
	// HelperBinary is a static codex-connector binary, the program of
	// every helper that runs inside a container: the egress proxy (in its
	// own FROM scratch container), and the bridge and the gate inside task
	// containers.
	HelperBinary string
	// AllowedRoots are the directories tasks may run under (resolved
	// through symlinks); the roots themselves and / are refused.
	AllowedRoots []string
	// Lease is how long this server's claim on a task holds without renewal.
	Lease time.Duration
	// Workspace is the workspace kind of a task that asks for none
	// (workspace.KindShared when empty).
	Workspace string
	// MaxSandbox is the highest level a caller may ask for (the user's
	// ceiling); "" is no ceiling below danger-full-access.
	MaxSandbox string
	// Retention removes tasks (record, log, result, state) that ended this
	// long ago; 0 keeps them forever.
	Retention time.Duration
}

// Spec is a request to run a task.
type Spec struct {
	Prompt           string
	WorkingDirectory string
	Sandbox          string
	Model            string
	// Timeout ends the task as timed_out once it has run this long; 0 is none.
	Timeout time.Duration
	// Effort is the reasoning effort (one of ReasoningEfforts); "" leaves
	// Codex's default.
	Effort string
	// Parent makes the task a reply: it continues that task's Codex
	// session, in its repository and at its sandbox level (reply.go).
	Parent string
	thread string // the parent's session, set by replyTo
	// Review makes the task Codex's own review of the repository's changes,
	// always read-only (review.go).
	Review *store.Review
	// Workspace is where the task's files are: workspace.KindShared (the
	// user's work tree) or workspace.KindBranch (a checkout of its own,
	// collected into a branch); "" is the config's default. Base is a
	// branch task's base: a branch, tag or commit, "" for HEAD
	// (branch.go).
	Workspace string
	Base      string
	// reviewed is the repository of the task a review of a branch reviews.
	reviewed string
}

// ErrInvalidTask marks a request the caller can fix: a bad path, a non-repo,
// an empty task, an unknown sandbox level.
var ErrInvalidTask = errors.New("invalid task")

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalidTask, fmt.Sprintf(format, args...))
}

// Runner runs tasks. Its goroutines live as long as the lifetime context it
// was made with — the server's, never an MCP request's — and when that ends
// the containers keep running, to be picked up by the next server.
type Runner struct {
	cfg Config
	// backend runs the tasks' runs.
	backend backend.Backend
	// helpers are the containers of this binary beside the tasks: the
	// egress proxy, and the helper that readies cache volumes; docker is
	// the backend's engine as the rest uses it: the images tasks run on,
	// and the cache volumes.
	helpers *docker.Helpers
	docker  *docker.Backend
	// images keeps launches from building one toolchain image twice.
	images imageLocks
	// cachesMu serialises readying cache volumes (caches.go).
	cachesMu sync.Mutex
	store    *store.Store
	logf     func(format string, args ...any)
	lifetime context.Context
	wg       sync.WaitGroup
	// instance names this process as the follower of its tasks.
	instance string

	mu      sync.Mutex
	queue   []string
	running int
	runs    map[string]*run
	// claimed is closed once the task dispatched last has been claimed:
	// the next one claims after it, so that tasks start (and their
	// records say they started) in the order they were queued, however
	// their goroutines are scheduled.
	claimed chan struct{}
}

// run is what this process knows of a task it executes or follows.
type run struct {
	tracker *eventTracker
	done    chan struct{}
	// ctx ends when this process stops following the task: it lost the
	// lease (another follower took the task over, or it ended elsewhere),
	// the lease lapsed, or the lifetime ended. Engine calls and the log
	// copy of the task run under it.
	ctx    context.Context
	cancel context.CancelFunc
	// heldUntil is when this process's lease on the task ends as last
	// recorded (Unix nanoseconds; 0 before it claims the task). Writes that
	// belong to the follower happen only before it: another server takes
	// the task over only after it.
	heldUntil atomic.Int64
	// ws is the task's workspace as measured before the run, kept on disk
	// for a process that takes the task over (prerun.go); nil when the
	// task may not write the repository.
	ws *workspace.Shared
	// engineLost is set when the engine went away while this process
	// followed the task, to explain an exit the restart caused.
	engineLost bool
}

// New makes a runner whose tasks run on be and live within lifetime. logf
// receives diagnostics; it must not write to stdout (stdout is the MCP
// protocol).
func New(lifetime context.Context, cfg Config, be *docker.Backend, st *store.Store, logf func(string, ...any)) (*Runner, error) {
	if cfg.MaxRunning < 1 {
		cfg.MaxRunning = 1
	}
	if cfg.StopGrace <= 0 {
		cfg.StopGrace = 10 * time.Second
	}
	cfg.Limits = cfg.Limits.withDefaults()
	if cfg.Lease <= 0 {
		cfg.Lease = DefaultLease
	}
	if cfg.MaxSandbox == "" {
		cfg.MaxSandbox = DangerFullAccess
	}
	if !validSandbox(cfg.MaxSandbox) {
		return nil, fmt.Errorf("maxSandbox %q is not a level: use one of %s", cfg.MaxSandbox, strings.Join(SandboxLevels, ", "))
	}
	for _, dir := range []string{cfg.Home, filepath.Join(cfg.Home, "logs"), filepath.Join(cfg.Home, "runs")} {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("create data directory: %w", err)
		}
	}
	r := &Runner{cfg: cfg, backend: be, docker: be, store: st, logf: logf, lifetime: lifetime, runs: map[string]*run{}, instance: newInstanceID()}
	r.helpers = be.Helpers(docker.HelperConfig{
		Binary:      cfg.HelperBinary,
		ImageLabels: helperImageLabels(cfg.Home),
		ProbeLabels: map[string]string{LabelComponent: "probe", LabelHomePath: cfg.Home},
		FactsFile:   filepath.Join(cfg.Home, "engine.json"),
		ProxyName:   ProxyName(cfg.Home),
		ProxyDir:    r.egressRoot(),
		ProxyUser:   fmt.Sprintf("%d:%d", os.Geteuid(), os.Getegid()),
		ProxyLabels: map[string]string{LabelComponent: "egress", LabelVersion: cfg.Version, LabelHomePath: cfg.Home},
		CABundle:    cfg.Egress.CABundle,
	})
	return r, nil
}

// Drain blocks until every goroutine of the runner has returned, after the
// lifetime context ended. Containers are left running.
func (r *Runner) Drain() { r.wg.Wait() }

// LogPath is where the task's container output is copied.
func (r *Runner) LogPath(id string) string { return filepath.Join(r.cfg.Home, "logs", id+".log") }

// ResultPath is where Codex's last message is copied when the task ends.
func (r *Runner) ResultPath(id string) string {
	return filepath.Join(r.cfg.Home, "logs", id+".result")
}

func (r *Runner) stateDir(id string) string { return filepath.Join(r.cfg.Home, "runs", id) }

// files are the task's state as the backend reads it: what the task wrote
// there, read as backend.Files say.
func (r *Runner) files(id string) (backend.Files, error) {
	return r.backend.Files(backend.Mount{Kind: backend.Bind, Source: r.stateDir(id), Target: stateMount})
}

// Start checks the request, records the task as queued and runs it as soon
// as a slot is free. Problems the caller can fix wrap ErrInvalidTask.
func (r *Runner) Start(ctx context.Context, spec Spec) (*store.Task, error) {
	if spec.Review != nil {
		if err := r.reviewOfBranch(&spec); err != nil {
			return nil, err
		}
		if err := checkReview(spec.Review); err != nil {
			return nil, err
		}
		spec.Prompt, spec.Sandbox = reviewPrompt(spec.Review), ReadOnly
	}
	if strings.TrimSpace(spec.Prompt) == "" {
		return nil, invalid("task is empty: say what Codex should do")
	}
	if err := r.checkPrompt(spec.Prompt); err != nil {
		return nil, err
	}
	if err := checkEffort(spec.Effort); err != nil {
		return nil, err
	}
	var parent *store.Task
	if spec.Parent != "" {
		var err error
		if parent, err = r.replyTo(ctx, &spec); err != nil {
			return nil, err
		}
	}
	sandbox, err := r.sandboxFor(spec.Sandbox)
	if err != nil {
		if parent != nil {
			return nil, invalid("task %s ran at %s, and a reply runs at the level of the task it continues; the ceiling is now %s (maxSandbox), so start a new task with codex_agent instead", parent.ID, parent.Sandbox, r.cfg.MaxSandbox)
		}
		return nil, err
	}
	spec.Sandbox = sandbox
	if spec.Timeout < 0 {
		return nil, invalid("timeout must not be negative (0 means none)")
	}
	workdir, root, err := workspace.Resolve(spec.WorkingDirectory, r.cfg.AllowedRoots)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidTask, err)
	}
	user, err := containerUser(root)
	if err != nil {
		return nil, err
	}
	dev, ino, err := workspace.Identity(root)
	if err != nil {
		return nil, fmt.Errorf("stat the repository %s: %w", root, err)
	}
	if parent != nil && parent.RepoDev != 0 && (parent.RepoDev != dev || parent.RepoIno != ino) {
		return nil, invalid("%s is no longer the repository task %s ran in (it was moved or replaced since): start a new task with codex_agent", root, parent.ID)
	}
	br, err := r.branchFor(ctx, &spec, root, parent)
	if err != nil {
		return nil, err
	}
	if _, err := r.docker.Codex(ctx, r.cfg.Image); err != nil {
		return nil, err
	}
	choice, err := r.cfg.Toolchains.choose(root)
	if err != nil {
		return nil, err
	}
	now := time.Now().UTC()
	id := store.NewID(now)
	t := &store.Task{
		ID: id, Prompt: spec.Prompt, WorkingDirectory: workdir, RepoRoot: root,
		Sandbox: spec.Sandbox, Workspace: spec.Workspace, Model: spec.Model, Effort: spec.Effort, Parent: spec.Parent, ResumeThread: spec.thread, Review: spec.Review,
		Image:     r.cfg.Image.Ref,
		BaseImage: choice.base, ImageSource: choice.source, ImageBuild: choice.build, ImageNotes: choice.notes,
		TimeoutMs: spec.Timeout.Milliseconds(), Status: store.Queued, CreatedAt: now,
		ContainerName: containerName(id), User: user, RepoDev: dev, RepoIno: ino,
		Follower: r.instance, LeaseUntil: now.Add(r.cfg.Lease),
	}
	if br != nil {
		br.Name = workspace.BranchPrefix + id
		t.Branch = br
	}
	if choice.base != "" || choice.build != nil {
		t.Image = "" // the task image, made at launch
	}
	if parent != nil {
		if t.ResumeFrom, err = r.copySession(ctx, parent, id, user, r.cfg.Limits.StateBytes); err != nil {
			return nil, err
		}
	}
	if err := r.store.Create(t); err != nil {
		if parent != nil {
			if files, ferr := r.files(id); ferr == nil {
				_ = files.Remove(ctx, "") // its copy of the session
			}
		}
		return nil, err
	}
	r.enqueue(id)
	return t, nil
}

func (r *Runner) enqueue(id string) {
	r.track(id)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.queue = append(r.queue, id)
	r.dispatchLocked()
}

// enqueueFirst queues a task that was dispatched before and must start
// again (its launch never happened) ahead of those that waited behind it.
func (r *Runner) enqueueFirst(id string) {
	r.track(id)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.queue = append([]string{id}, r.queue...)
	r.dispatchLocked()
}

// dispatchLocked starts queued tasks, oldest first, while slots are free.
func (r *Runner) dispatchLocked() {
	for r.running < r.cfg.MaxRunning && len(r.queue) > 0 && r.lifetime.Err() == nil {
		id := r.queue[0]
		r.queue = r.queue[1:]
		r.running++
		r.wg.Add(1)
		after, mine := r.claimed, make(chan struct{})
		r.claimed = mine
		go func() {
			defer r.freeSlot()
			defer r.recoverTask(id)
			r.execute(id, after, mine)
		}()
	}
}

func (r *Runner) freeSlot() {
	r.mu.Lock()
	r.running--
	r.dispatchLocked()
	r.mu.Unlock()
	r.wg.Done()
}

func (r *Runner) dequeue(id string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i, q := range r.queue {
		if q == id {
			r.queue = append(r.queue[:i], r.queue[i+1:]...)
			return
		}
	}
}

// recoverTask, deferred at the top of every goroutine that runs or follows a
// task, ends a task whose goroutine panicked: a record or an output no code
// path expected fails that task, with the reason, and stops its container —
// it never takes the server down, nor, at their next start, every server
// that would adopt the task again.
func (r *Runner) recoverTask(id string) {
	p := recover()
	if p == nil {
		return
	}
	r.logf("task %s: internal error: %v\n%s", id, p, debug.Stack())
	defer func() {
		if p := recover(); p != nil {
			r.logf("task %s: record the internal error: %v", id, p)
			r.drop(id, nil)
		}
	}()
	if t, err := r.store.Get(id); err == nil && !t.Status.Final() && t.Follower == r.instance && t.ContainerName != "" {
		ctx, cancel := context.WithTimeout(context.Background(), r.cfg.StopGrace+30*time.Second)
		if err := r.stop(ctx, t.ContainerName); err != nil {
			r.logf("task %s: stop after an internal error: %v", id, err)
		}
		cancel()
	}
	r.fail(id, fmt.Errorf("internal error in codex-connector: %v — the task was stopped; please report this, with the server's log", p))
}

// safely runs one round of the runner's own work (a reconcile, a sweep);
// a panic there is logged and the next round runs all the same.
func (r *Runner) safely(what string, fn func()) {
	defer func() {
		if p := recover(); p != nil {
			r.logf("%s: internal error: %v\n%s", what, p, debug.Stack())
		}
	}()
	fn()
}

// drop ends this process's following of a task, however it ends: the
// task reached a final status, this server lost or gave up its lease, or
// the run is to be queued again. What runs under the run stops (its log
// copy, its engine calls), the run leaves the table, and waiters in this
// process wake to read the record. rn is the run to drop, nil for whatever
// run the task has here; a run that is no longer the task's is only
// cancelled, so a late drop never ends the next run of the task. It says
// whether the run dropped was the task's.
func (r *Runner) drop(id string, rn *run) bool {
	r.mu.Lock()
	cur := r.runs[id]
	if rn == nil {
		rn = cur
	}
	mine := rn != nil && rn == cur
	if mine {
		delete(r.runs, id)
		close(rn.done)
	}
	r.mu.Unlock()
	if rn != nil {
		rn.cancel()
	}
	return mine
}

func (r *Runner) local(id string) *run {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.runs[id]
}

// Get returns the task's record; an unknown id wraps store.ErrNotFound.
func (r *Runner) Get(id string) (*store.Task, error) {
	if !store.ValidID(id) {
		return nil, fmt.Errorf("task %q: %w — task ids look like 20261125-061025-3f9a1c; list tasks to find one", id, store.ErrNotFound)
	}
	t, err := r.store.Get(id)
	if errors.Is(err, store.ErrNotFound) {
		return nil, fmt.Errorf("%w — list tasks to see the ids there are", err)
	}
	return t, err
}

// List returns tasks newest first, and the ids of records that could not be
// read.
func (r *Runner) List(f store.Filter) ([]*store.Task, []string, error) { return r.store.List(f) }

// Progress says what Codex is doing in a task this process runs; ok is false
// for tasks it does not follow.
func (r *Runner) Progress(id string) (Progress, bool) {
	if rn := r.local(id); rn != nil {
		return rn.tracker.progress(), true
	}
	return Progress{}, false
}

// Tail returns up to n of the last lines of the task's log, rendered for a
// reader, and whether earlier lines were left out.
func (r *Runner) Tail(id string, n int) ([]string, bool, error) {
	return tailLog(r.LogPath(id), n)
}

// Done returns a channel closed when this process has finished following
// task id, its end recorded; nil (never ready) when this process does not
// follow it now. A watcher of the record wakes on it instead of waiting for
// its next look.
func (r *Runner) Done(id string) <-chan struct{} {
	if rn := r.local(id); rn != nil {
		return rn.done
	}
	return nil
}

// Wait blocks until the task reaches a final status or ctx ends, and returns
// the task as it is then.
func (r *Runner) Wait(ctx context.Context, id string) (*store.Task, error) {
	for {
		t, err := r.Get(id)
		if err != nil || t.Status.Final() {
			return t, err
		}
		select {
		case <-r.Done(id):
		case <-time.After(500 * time.Millisecond):
			// Tasks run by another process are only seen in the store.
		case <-ctx.Done():
			return t, ctx.Err()
		}
	}
}

// Cancel stops a queued or running task and returns its final record.
// Cancelling a finished task changes nothing and is not an error.
func (r *Runner) Cancel(ctx context.Context, id string) (*store.Task, error) {
	t, err := r.Get(id)
	if err != nil || t.Status.Final() {
		return t, err
	}
	t, err = r.update(id, func(t *store.Task) error {
		if t.Status.Final() {
			return nil
		}
		t.CancelRequested = true
		if t.Status == store.Queued {
			t.Status = store.Cancelled
			t.FinishedAt = time.Now().UTC()
			t.Error = "cancelled before it started"
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("cancel task %s: %w", id, err)
	}
	if t.Status == store.Cancelled {
		r.dequeue(id)
		r.drop(id, nil)
		return t, nil
	}
	if t.Status.Final() {
		return t, nil
	}
	// Running: stop the container. If it is not created yet, the executing
	// goroutine sees CancelRequested before it starts one.
	if err := r.stop(ctx, t.ContainerName); err != nil {
		if errors.Is(err, backend.ErrUnreachable) {
			return t, fmt.Errorf("%w; the cancel is recorded, and the task stops as soon as the engine answers", err)
		}
		return t, err
	}
	wctx, cancel := context.WithTimeout(ctx, r.cfg.StopGrace+30*time.Second)
	defer cancel()
	return r.Wait(wctx, id)
}
