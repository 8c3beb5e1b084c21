package runner

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/codex-connector/codex-connector/backend"
	"github.com/codex-connector/codex-connector/internal/hostfs"
	"github.com/codex-connector/codex-connector/store"
	"github.com/codex-connector/codex-connector/workspace"
)

// maxResultInRecord bounds the result text kept in the record; the whole
// message is in the result file.
const maxResultInRecord = 8000

// errNotRunnable stops execute when another process claimed the task or it
// was cancelled while queued.
var errNotRunnable = errors.New("task is no longer queued")

// errNotHolder leaves a record unchanged when this process no longer holds
// the task's lease, or the task already ended: its end, its stop reason
// and its container are the holder's to record and remove.
var errNotHolder = errors.New("this server does not hold the task's lease")

// holds says, within the transaction that would change the record, whether
// the follower's writes for the task are this run's to make: the record
// names this process, the task has not ended, and the run was not given up.
func (r *Runner) holds(t *store.Task, rn *run) bool {
	return t.Follower == r.instance && !t.Status.Final() && (rn == nil || rn.ctx.Err() == nil)
}

// claimed notes the lease a claim recorded, unless a renewal already noted
// one: a renewal may have recorded an earlier end after the claim did, and
// what is noted must never be later than what is recorded.
func (rn *run) claimed(until time.Time) {
	rn.heldUntil.CompareAndSwap(0, until.UnixNano())
}

// held says whether the run's lease is still in force by its last recorded
// renewal; the log copy writes only while it is.
func (rn *run) held() bool {
	return rn.ctx.Err() == nil && time.Now().UnixNano() < rn.heldUntil.Load()
}

// execute claims a queued task, once the task dispatched before it is
// claimed (after; nil for none), says so (closes claimed), and runs the
// task to its end. It returns early, leaving the container running, when
// the runner's lifetime ends.
func (r *Runner) execute(id string, after <-chan struct{}, claimed chan struct{}) {
	closeClaimed := sync.OnceFunc(func() { close(claimed) })
	defer closeClaimed()
	if after != nil {
		<-after
	}
	t, err := r.update(id, func(t *store.Task) error {
		if t.Status != store.Queued || t.CancelRequested {
			return errNotRunnable
		}
		now := time.Now().UTC()
		t.Status = store.Running
		t.StartedAt = now
		t.Follower, t.LeaseUntil = r.instance, now.Add(r.cfg.Lease)
		if t.TimeoutMs > 0 {
			// The clock starts when the task runs, not while it waits for a
			// slot; stored absolute, so a restart keeps it.
			t.Deadline = now.Add(time.Duration(t.TimeoutMs) * time.Millisecond)
		}
		return nil
	})
	closeClaimed()
	if errors.Is(err, errNotRunnable) {
		r.drop(id, nil)
		return
	}
	if err != nil {
		r.logf("task %s: claim: %v", id, err)
		r.fail(id, fmt.Errorf("could not start: %w", err))
		return
	}
	rn := r.track(id)
	rn.claimed(t.LeaseUntil)
	switch {
	case isBranch(t):
		if t, err = r.prepareBranch(rn.ctx, t, rn); err != nil {
			r.fail(id, fmt.Errorf("could not start: %w", err))
			return
		}
	case t.Sandbox != ReadOnly:
		if rn.ws, err = workspace.Begin(t.RepoRoot); err != nil {
			r.fail(id, fmt.Errorf("could not start: %w", err))
			return
		}
		r.keepPreRun(id, rn)
	}
	h, err := r.launch(t, rn)
	for tries := 1; err != nil && rn.ctx.Err() == nil && engineTrouble(err, tries); tries++ {
		// The engine went away (or is shutting down) after the task was
		// accepted: it starts when the engine answers, rather than failing
		// for a Docker restart.
		rn.tracker.note("waiting for the Docker engine before starting")
		r.logf("task %s: %v; trying again when the engine answers", id, err)
		if !r.sleep(time.Duration(tries) * time.Second) {
			break
		}
		r.awaitEngine(rn.ctx, func() (backend.State, error) {
			return r.backend.Inspect(rn.ctx, backend.Ref{Name: t.ContainerName})
		})
		if rn.ctx.Err() != nil {
			break
		}
		if rn.ws != nil {
			// The work tree may have changed while the engine was away: the
			// repositories to protect are found anew.
			rn.ws.Rescan()
			r.keepPreRun(id, rn)
		}
		h, err = r.launch(t, rn)
	}
	if err != nil {
		if r.lifetime.Err() != nil {
			r.unclaim(t)
			return
		}
		if rn.ctx.Err() != nil {
			// Its lease was lost while it launched: the holder takes it
			// from here, from its record and container.
			r.drop(id, rn)
			return
		}
		r.logf("task %s: %v", id, err)
		r.fail(id, err)
		return
	}
	r.follow(t, h, rn)
}

// launch prepares the task's run and launches it: the backend starts it
// with the wait for its exit registered, the record names it before it
// starts, and the gate opens once the egress proxy serves the task and the
// mounts are what was checked.
func (r *Runner) launch(t *store.Task, rn *run) (backend.Handle, error) {
	ctx := rn.ctx
	t, p, spec, err := r.prepare(t, rn)
	if err != nil {
		return nil, err
	}
	h, err := r.backend.Launch(ctx, spec, func(ref backend.Ref) error {
		var err error
		t, err = r.update(t.ID, func(t *store.Task) error {
			if !r.holds(t, rn) {
				return errNotHolder // the run is not the task's: removed
			}
			t.ContainerID = ref.ID
			return nil
		})
		if err != nil {
			return fmt.Errorf("record container of task: %w", err)
		}
		if t.CancelRequested {
			return errCancelledBeforeStart
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if w := h.Warnings(); len(w) > 0 {
		r.noteWarnings(t.ID, rn, w)
	}
	if p.socketDir != "" {
		if err := r.awaitEgress(ctx, t); err != nil {
			_ = h.Remove(ctx)
			return nil, err
		}
	}
	if err := h.OpenGate(ctx); err != nil {
		_ = h.Remove(ctx)
		return nil, err
	}
	// A cancel that came between the check above and the start found nothing
	// running to stop; look once more now that something runs.
	if now, err := r.store.Get(t.ID); err == nil && now.CancelRequested {
		_ = h.Stop(ctx, r.cfg.StopGrace)
	}
	return h, nil
}

// prepare readies everything a task's run needs, as its level allows: an
// engine that enforces its limits (recorded), its image (recorded), its state directory, the checked mount sources, its
// caches, its login, its egress policy, the binary of its gate and its
// prompt. It returns the task as recorded then, the policy, and the run
// spec the policy makes.
func (r *Runner) prepare(t *store.Task, rn *run) (*store.Task, policy, backend.Spec, error) {
	ctx := rn.ctx
	t, err := r.checkEnforced(ctx, t, rn)
	if err != nil {
		return t, policy{}, backend.Spec{}, err
	}
	cimg, err := r.docker.Codex(ctx, r.cfg.Image)
	if err != nil {
		return t, policy{}, backend.Spec{}, err
	}
	img, err := r.taskImage(ctx, t, cimg)
	if err != nil {
		return t, policy{}, backend.Spec{}, err
	}
	if t.Image != img.Ref || t.ImageID != img.ID || !slices.Equal(t.ImageLacks, img.Lacks) || t.Ran == nil || t.Ran.CodexVersion != img.CodexVersion {
		t, err = r.update(t.ID, func(t *store.Task) error {
			if !r.holds(t, rn) {
				return errNotHolder
			}
			t.Image, t.ImageID = img.Ref, img.ID
			t.ImageLacks = img.Lacks
			if t.Ran == nil {
				t.Ran = &store.Ran{}
			}
			t.Ran.CodexVersion = img.CodexVersion
			return nil
		})
		if err != nil {
			return t, policy{}, backend.Spec{}, fmt.Errorf("record the image of task: %w", err)
		}
	}
	stateDir, err := r.prepareStateDir(ctx, t)
	if err != nil {
		return t, policy{}, backend.Spec{}, err
	}
	p := policy{task: t, stateDir: stateDir, limits: r.cfg.Limits, env: r.cfg.Env, args: r.cfg.CodexArgs, version: r.cfg.Version, home: homeLabel(r.cfg.Home)}
	if isBranch(t) {
		p.branch, p.git.Bound, err = r.checkBranchSources(t)
	} else {
		p.git, err = r.checkMountSources(t, rn.ws)
	}
	if err != nil {
		return t, policy{}, backend.Spec{}, err
	}
	mounted, caches, err := r.cacheMounts(ctx, t)
	if err != nil {
		return t, policy{}, backend.Spec{}, err
	}
	p.caches = caches
	p.env = withDefaults(cacheEnv(r.cfg.Caches, mounted), p.env)
	if r.cfg.AuthFile != "" {
		if err := r.placeLogin(ctx, t); err != nil {
			return t, policy{}, backend.Spec{}, err
		}
	}
	if r.needsEgress(t) {
		creds := credentialsFor(r.cfg.Routes)
		if err := r.prepareEgress(ctx, t, creds.routes); err != nil {
			return t, policy{}, backend.Spec{}, err
		}
		p.socketDir = r.socketDir(t.ID)
		p.env = append(append([]string(nil), p.env...), creds.env...)
		p.args = append(append([]string(nil), p.args...), creds.args...)
	}
	// Every launch is gated (gate.go), so every container gets the static
	// binary that holds the gate.
	if p.bridge, err = r.gateBinary(); err != nil {
		return t, policy{}, backend.Spec{}, err
	}
	p.gate = newGate()
	if promptText(t) != "" {
		if err := r.writePrompt(ctx, t); err != nil {
			return t, policy{}, backend.Spec{}, err
		}
		p.prompt = promptFile
	}
	spec := p.spec()
	if err := checkImageVolumes(img, spec); err != nil {
		return t, policy{}, backend.Spec{}, err
	}
	return t, p, spec, nil
}

var errCancelledBeforeStart = errors.New("cancelled before it started")

// unclaim hands a task whose launch was cut short by shutdown back to the
// queue, so that the next server runs it, and removes a container the
// launch may have created. It runs past the lifetime, briefly.
func (r *Runner) unclaim(t *store.Task) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if now, err := r.store.Get(t.ID); err != nil || now.Follower != r.instance || now.Status != store.Running {
		return // another server holds it now, or it ended: not ours to touch
	}
	if st, err := r.backend.Inspect(ctx, backend.Ref{Name: t.ContainerName}); err == nil && st.Running {
		return // it started after all: the next server adopts it
	}
	if err := r.remove(ctx, t.ContainerName); err != nil {
		r.logf("task %s: remove unstarted container: %v", t.ID, err)
		return
	}
	if err := r.backToQueued(t.ID); err != nil && !errors.Is(err, errNotHolder) {
		r.logf("task %s: hand back to the queue: %v", t.ID, err)
	}
}

// backToQueued records a claimed task that never ran as queued again; a
// task this server does not hold is not its to hand back (errNotHolder).
func (r *Runner) backToQueued(id string) error {
	_, err := r.update(id, func(t *store.Task) error {
		if t.Status != store.Running || t.Follower != r.instance {
			return errNotHolder
		}
		t.Status, t.StartedAt, t.Deadline, t.ContainerID = store.Queued, time.Time{}, time.Time{}, ""
		return nil
	})
	return err
}

// prepareStateDir makes the task's private directory for CODEX_HOME and the
// last-message file, owned by the container's user. An earlier attempt's
// container may have planted symlinks, pipes or locked directories there
// (a requeued task runs again in the same directory): they are replaced,
// never followed, so no chown, chmod or removal lands outside it.
func (r *Runner) prepareStateDir(ctx context.Context, t *store.Task) (string, error) {
	files, err := r.files(t.ID)
	if err != nil {
		return "", fmt.Errorf("prepare the state directory of task %s: %w", t.ID, err)
	}
	owner := ownerOf(t.User)
	for _, rel := range []string{"", "codex-home", "out"} {
		if err := files.MakeDir(ctx, rel, owner); err != nil {
			return "", fmt.Errorf("prepare the state directory of task %s (as %s): %w", t.ID, t.User, err)
		}
	}
	// A stale last message from an earlier attempt must not become this
	// attempt's result.
	if err := files.Remove(ctx, "out/last-message.txt"); err != nil {
		return "", fmt.Errorf("prepare the state directory of task %s: %w", t.ID, err)
	}
	// Gates of earlier launches: each launch has its own name, so they
	// open nothing, but they would pile up.
	entries, _ := files.ReadDir(ctx, "", nil)
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), "gate-") {
			if err := files.Remove(ctx, e.Name()); err != nil {
				return "", fmt.Errorf("prepare the state directory of task %s: %w", t.ID, err)
			}
		}
	}
	return r.stateDir(t.ID), nil
}

// ownerOf is whose a task's state is: the uid:gid it runs as.
func ownerOf(user string) backend.Owner {
	uid, gid := splitUser(user)
	return backend.Owner{UID: uid, GID: gid}
}

func splitUser(user string) (int, int) {
	u, g, _ := strings.Cut(user, ":")
	uid, _ := strconv.Atoi(u)
	gid, _ := strconv.Atoi(g)
	return uid, gid
}

// follow copies the container's logs, enforces the deadline, waits for the
// exit and finishes the task. When the engine goes away under it (a Docker
// restart), it waits for the engine to come back and follows the container
// again from where the log file ends: with live-restore the task goes on,
// without it the task ends with the reason.
func (r *Runner) follow(t *store.Task, h backend.Handle, rn *run) {
	ctx := rn.ctx
	containerID := h.Ref().ID
	for {
		logs, lost := r.followOnce(t, h, rn)
		if ctx.Err() != nil {
			// The lifetime ended (the container runs on), or the lease
			// was lost: nothing more is written for the task here.
			r.drop(t.ID, rn)
			return
		}
		if !lost {
			st, err := h.State(ctx)
			switch {
			case ctx.Err() != nil:
				r.drop(t.ID, rn)
				return
			case err == nil:
				r.finish(t.ID, h, st, rn, logs.size, logs.err)
				return
			case !errors.Is(err, backend.ErrUnreachable):
				r.fail(t.ID, engineError("inspect exited container", err))
				return
			}
		}
		rn.engineLost = true
		rn.tracker.note("waiting for the Docker engine to come back")
		r.logf("task %s: lost the Docker engine while following container %s; following it again when the engine answers", t.ID, shortID(containerID))
		st, err := r.awaitEngine(ctx, func() (backend.State, error) { return h.Reattach(ctx) })
		switch {
		case ctx.Err() != nil:
			r.drop(t.ID, rn)
			return
		case errors.Is(err, backend.ErrNotFound):
			r.fail(t.ID, errors.New("its container is gone: it was removed while the Docker engine was away; the log holds what it printed until then"))
			return
		case err != nil:
			r.fail(t.ID, engineError("inspect container after the engine came back", err))
			return
		}
		r.logf("task %s: the Docker engine answers again; the container is %s", t.ID, st.Status)
	}
}

type copiedLog struct {
	size int64
	err  error
}

// followOnce follows the container until it exits, the engine stops
// answering (lost), or the lifetime ends.
func (r *Runner) followOnce(t *store.Task, h backend.Handle, rn *run) (logs copiedLog, lost bool) {
	ctx := rn.ctx
	containerID := h.Ref().ID
	// A cancel that could not reach the engine (it was down, or no server
	// followed the task) is in the record: carry it out now.
	if now, err := r.store.Get(t.ID); err == nil && now.CancelRequested {
		if err := r.stop(ctx, containerID); err != nil {
			r.logf("task %s: stop on a recorded cancel: %v", t.ID, err)
		}
	}
	logDone := make(chan copiedLog, 1)
	go func() {
		defer func() {
			// What a task prints must not take the server down: the copy
			// ends, the task is stopped, and the record says why.
			if p := recover(); p != nil {
				r.logf("task %s: internal error while copying the log: %v\n%s", t.ID, p, debug.Stack())
				size := int64(0)
				if fi, err := os.Stat(r.LogPath(t.ID)); err == nil {
					size = fi.Size()
				}
				err := fmt.Errorf("internal error while copying it: %v", p)
				r.stopFor(ctx, t.ID, containerID, "stopped: codex-connector could not copy its log ("+err.Error()+")")
				logDone <- copiedLog{size, err}
			}
		}()
		size, err := copyLogs(ctx, h, r.LogPath(t.ID), rn.tracker, r.cfg.Limits.LogBytes, rn.held, func() {
			r.stopFor(ctx, t.ID, containerID, fmt.Sprintf("stopped: its output passed the log cap of %s (limits.logMB); the log ends where it was cut — raise limits.logMB, or ask for less output", hostfs.HumanSize(r.cfg.Limits.LogBytes)))
		})
		if errors.Is(err, errLeaseLost) {
			// The lease lapsed unrenewed (this process was stopped, or
			// the database stayed locked): another server may follow the
			// task now, so this one stops.
			r.logf("task %s: its lease lapsed; no longer following it", t.ID)
			rn.cancel()
		}
		logDone <- copiedLog{size, err}
	}()
	rn.tracker.startOrResumeClock(time.Now())
	if r.cfg.StallTimeout > 0 {
		stopWatchdog := r.watchStall(ctx, t.ID, containerID, rn.tracker)
		defer stopWatchdog()
	}
	defer r.watchState(ctx, t.ID, containerID)()
	switch {
	case isBranch(t):
		defer r.watchRepo(rn, t.ID, containerID, branchTree(workspace.TreeDir(r.workspaceDir(t.ID))))()
	case rn.ws != nil:
		defer r.watchRepo(rn, t.ID, containerID, rn.ws)()
	}
	if !t.Deadline.IsZero() {
		timer := time.AfterFunc(time.Until(t.Deadline), func() {
			defer func() {
				if p := recover(); p != nil {
					r.logf("task %s: internal error at the deadline: %v\n%s", t.ID, p, debug.Stack())
				}
			}()
			if err := r.stop(ctx, containerID); err != nil {
				r.logf("task %s: stop at deadline: %v", t.ID, err)
			}
		})
		defer timer.Stop()
	}
	waitErr := h.Wait(ctx)
	if ctx.Err() != nil {
		// The copy ends with the context; it is waited for, so that no
		// write of this process lands after it handed the task over.
		<-logDone
		return logs, false
	}
	// The log stream ends when the container stops (or the engine goes);
	// what it still holds is drained before anything is recorded, and no
	// second copy starts while this one writes.
	select {
	case logs = <-logDone:
	case <-ctx.Done():
		<-logDone
		return logs, false
	}
	if waitErr != nil && ctx.Err() == nil {
		r.logf("task %s: wait for container: %v", t.ID, waitErr)
		return logs, true
	}
	return logs, false
}

func shortID(id string) string { return id[:min(12, len(id))] }

// finish records the end of a task from its exited container, then removes
// the container. Each step may run again after a crash without harm.
//
// Finishing is the holder's: a task another server took over, or one that
// already ended, is left as its record says, and its container too.
func (r *Runner) finish(id string, h backend.Handle, st backend.State, rn *run, logBytes int64, logErr error) {
	ctx := rn.ctx
	if !rn.held() {
		// The result file is written before the record: not by a
		// follower whose lease may be another's by now.
		r.logf("task %s: not recording its end: its lease lapsed; no longer following it", id)
		r.drop(id, rn)
		return
	}
	code := st.Exit.Code
	oom := st.Exit.OOMKilled
	result, resultErr := r.copyResult(r.lifetime, id)
	sum := rn.tracker.summary()
	turnErr := rn.tracker.failure()
	branch, branchErr, changesErr := r.changesOf(id, rn, &sum)
	var ran store.Ran
	var findings []store.Finding
	if t, err := r.store.Get(id); err == nil {
		ran = r.readRan(r.lifetime, id, sum.ThreadID, t.ResumeFrom)
		if t.Review != nil {
			findings = parseFindings(result, t.RepoRoot)
		}
	}
	_, err := r.update(id, func(t *store.Task) error {
		if !r.holds(t, rn) {
			return errNotHolder
		}
		if ran != (store.Ran{}) {
			if t.Ran != nil {
				ran.CodexVersion = t.Ran.CodexVersion
			}
			t.Ran = &ran
		}
		now := time.Now().UTC()
		t.FinishedAt = now
		t.ExitCode = &code
		sum.Findings = findings
		t.Summary = &sum
		t.LogBytes = logBytes
		t.Result = clipN(result, maxResultInRecord)
		status, reason := outcome(ending{
			Code: code, OOMKilled: oom, EngineLost: rn.engineLost,
			Cancelled: t.CancelRequested, StopReason: t.StopReason,
			Deadline: t.Deadline, Timeout: time.Duration(t.TimeoutMs) * time.Millisecond, Now: now,
			MemoryLimit: r.cfg.Limits.MemoryBytes, TurnFailure: turnErr,
		})
		if t.Status = status; status != store.Completed {
			t.Error = reason
		}
		if logErr != nil {
			t.Error = joinReason(t.Error, fmt.Sprintf("the log is incomplete: %v", logErr)+r.diskHint(logErr))
		}
		if resultErr != nil {
			t.Error = joinReason(t.Error, resultErr.Error()+r.diskHint(resultErr))
		}
		if changesErr != nil {
			t.Error = joinReason(t.Error, clipN("the files changed are only those Codex reported: "+changesErr.Error(), maxReason))
		}
		if branch != nil {
			t.Branch = branch
		}
		if branchErr != nil {
			t.Error = joinReason(t.Error, clipN(branchErr.Error(), maxReason))
			if t.Status == store.Completed {
				t.Status = store.Failed
			}
		}
		return nil
	})
	if errors.Is(err, errNotHolder) {
		r.logf("task %s: not recording its end: this server no longer follows it", id)
		r.drop(id, rn)
		return
	}
	if err != nil {
		// Keep the container: the next reconcile finishes the task from it.
		r.logf("task %s: record the end: %v", id, err)
		return
	}
	// The end is recorded, so the container goes, even if the run is let
	// go meanwhile: a lease renewal that finds the task ended cancels it.
	if err := h.Remove(context.WithoutCancel(ctx)); err != nil {
		r.logf("task %s: %v", id, err)
	}
	r.endEgress(id)
	r.removeTemps(id)
	if branch != nil && branchErr == nil {
		r.removeWorkspace(id)
	}
	r.drop(id, nil)
}

// changesOf takes what the run changed into sum: a branch task's branch
// (collected now; nil for a review, whose read-only checkout goes), or the
// files changed in the shared work tree. The errors say why the branch
// could not be made, or why the files changed are only those Codex
// reported.
func (r *Runner) changesOf(id string, rn *run, sum *store.Summary) (branch *store.Branch, branchErr, changesErr error) {
	t, err := r.store.Get(id)
	switch {
	case err == nil && isBranch(t) && t.Branch != nil && t.Sandbox == ReadOnly:
		r.removeWorkspace(id)
		return nil, nil, nil
	case err == nil && isBranch(t) && t.Branch != nil:
		// The branch holds what the task changed, and nothing else did.
		var files []string
		branch, files, branchErr = r.collectBranch(t, time.Now())
		sum.FilesChanged = nil
		for _, p := range files {
			sum.FilesChanged = appendBounded(sum.FilesChanged, clipN(p, maxPath), maxFiles)
		}
		sum.HostRunFiles = workspace.HostRunOf(sum.FilesChanged)
		return branch, branchErr, nil
	}
	return nil, nil, collectChanges(rn.ws, sum)
}

// collectChanges adds to sum the files the run changed in its workspace
// (ws; nil for a task that may not write it) beyond those Codex reported,
// and the host-run files among them, within the record's bounds. The error
// says why the files changed may be only those Codex reported.
func collectChanges(ws *workspace.Shared, sum *store.Summary) error {
	var err error
	if ws != nil {
		var changed []string
		changed, err = ws.Changed()
		for _, p := range changed {
			if !contains(sum.FilesChanged, p) {
				sum.FilesChanged = appendBounded(sum.FilesChanged, clipN(p, maxPath), maxFiles)
			}
		}
	}
	hostRun := ws.HostRunChanged(sum.FilesChanged)
	for i, p := range hostRun {
		hostRun[i] = clip(p)
	}
	sum.HostRunFiles = hostRun[:min(len(hostRun), maxFiles)]
	return err
}

// watch calls check every period while the task runs, and stops the task
// with the reason check returns, if any. A panic in check ends the watch,
// never the server. It returns a function that ends the watch.
func (r *Runner) watch(ctx context.Context, id, containerID, what string, every time.Duration, check func(now time.Time) string) func() {
	tick := time.NewTicker(every)
	quit := make(chan struct{})
	go func() {
		defer tick.Stop()
		defer func() {
			if p := recover(); p != nil {
				r.logf("task %s: internal error in the %s watch, which ends: %v\n%s", id, what, p, debug.Stack())
			}
		}()
		for {
			select {
			case <-quit:
				return
			case <-ctx.Done():
				return
			case now := <-tick.C:
				if reason := check(now); reason != "" {
					r.stopFor(ctx, id, containerID, reason)
					return
				}
			}
		}
	}()
	return func() { close(quit) }
}

// watchStall stops the container when Codex makes no progress for
// StallTimeout, recording why first.
func (r *Runner) watchStall(ctx context.Context, id, containerID string, tr *eventTracker) func() {
	every := min(r.cfg.StallTimeout/4, 5*time.Second)
	return r.watch(ctx, id, containerID, "stall", every, func(now time.Time) string {
		stalled := tr.stalledFor(now)
		if stalled < r.cfg.StallTimeout {
			return ""
		}
		return fmt.Sprintf("stalled: Codex made no progress for %s (last: %s) — check that the model API is reachable from the container and the credentials work, or raise stallTimeout",
			stalled.Round(time.Second), clip(tr.lastWord()))
	})
}

// maxResultBytes caps how much of Codex's last message becomes the result:
// the file is the task's to write, as large as it likes.
const maxResultBytes = 1 << 20

// stateCheckEvery is how often a running task's state directory is
// measured. A task writing at disk speed passes the cap by what it writes
// in this time.
const stateCheckEvery = 2 * time.Second

// watchState stops the task when its state directory (a bind mount: no
// quota holds it) uses more than StateBytes on disk, measured without
// following anything a task made. It is the task's only writable mount
// outside the repository: its egress socket directory is read-only to it.
func (r *Runner) watchState(ctx context.Context, id, containerID string) func() {
	limit := r.cfg.Limits.StateBytes
	files, filesErr := r.files(id)
	return r.watch(ctx, id, containerID, "state", stateCheckEvery, func(time.Time) string {
		used, err := int64(0), filesErr
		if err == nil {
			used, err = files.Usage(ctx, limit)
		}
		switch {
		case err != nil:
			return fmt.Sprintf("stopped: its state directory (%s) cannot be measured against limits.stateMB: %v", stateMount, err)
		case used > limit:
			return fmt.Sprintf("stopped: its state directory (%s) uses more than %s on disk (limits.stateMB) — Codex keeps its sessions there; raise limits.stateMB if the task needs more", stateMount, hostfs.HumanSize(limit))
		}
		return ""
	})
}

// stopFor stops a task on the runner's own account, recording why first so
// that whichever process sees the exit records the reason. The first reason
// stays. Only the holder of the lease records and stops.
func (r *Runner) stopFor(ctx context.Context, id, containerID, reason string) {
	if _, err := r.update(id, func(t *store.Task) error {
		// A watch that fires as this process stops following records
		// nothing: the stop would not reach the engine, and the next
		// follower would read a reason for an exit it did not cause.
		if ctx.Err() != nil || !r.holds(t, nil) {
			return errNotHolder
		}
		if t.StopReason == "" {
			t.StopReason = clipN(reason, maxReason)
		}
		return nil
	}); errors.Is(err, errNotHolder) {
		return
	} else if err != nil {
		r.logf("task %s: record why it is stopped (%s): %v", id, reason, err)
	}
	if err := r.stop(ctx, containerID); err != nil {
		r.logf("task %s: stop (%s): %v", id, reason, err)
	}
}

// copyResult copies Codex's last message from the task's state directory to
// the result file, atomically: a reader never sees half a result. The task
// can write that file, so it is read as hostfs.ReadRegular reads: a symlink, a
// pipe or anything but a regular file is refused, and a huge one is cut.
// The error says what went wrong, as a reason for the record.
func (r *Runner) copyResult(ctx context.Context, id string) (string, error) {
	files, err := r.files(id)
	if err != nil {
		return "", fmt.Errorf("the result could not be read: %w", err)
	}
	data, size, err := files.ReadFile(ctx, "out/last-message.txt", maxResultBytes)
	var unsafe *hostfs.UnsafeFile
	switch {
	case errors.Is(err, os.ErrNotExist):
		return "", nil // Codex ended before it had a last message
	case errors.As(err, &unsafe):
		return "", fmt.Errorf("the result was refused: %w (the task made it so)", err)
	case err != nil:
		return "", fmt.Errorf("the result could not be saved: %w", err)
	}
	if err := hostfs.WriteFileAtomic(r.ResultPath(id), data); err != nil {
		return string(data), fmt.Errorf("the result could not be saved: %w", err)
	}
	if size > int64(len(data)) {
		return string(data), fmt.Errorf("the result was cut: Codex's last message is %s; the result keeps its first %s", hostfs.HumanSize(size), hostfs.HumanSize(maxResultBytes))
	}
	return string(data), nil
}

// removeTemps removes what WriteFileAtomic left of an ended task's log
// checkpoint and result: a process killed between making its temporary
// file and renaming it leaves the file, and no later write of the task
// renames it away. Nobody writes an ended task's files any more.
//
// The state before the run goes too: only a follower of a task that has
// not ended reads it.
func (r *Runner) removeTemps(id string) {
	if err := hostfs.RemoveTemps(checkpointPath(r.LogPath(id)), r.ResultPath(id), r.preRunPath(id)); err != nil {
		r.logf("task %s: %v", id, err)
	}
	if err := os.Remove(r.preRunPath(id)); err != nil && !errors.Is(err, os.ErrNotExist) {
		r.logf("task %s: remove the state of the repository before the run: %v", id, err)
	}
}

// fail records that a task could not run to its end, with the reason. A
// task that already ended, or that another server follows now, is left as
// its record says.
func (r *Runner) fail(id string, cause error) {
	_, err := r.update(id, func(t *store.Task) error {
		if t.Status.Final() {
			return errNotHolder
		}
		if t.Status == store.Running && t.Follower != r.instance {
			return errNotHolder
		}
		t.FinishedAt = time.Now().UTC()
		if t.CancelRequested || errors.Is(cause, errCancelledBeforeStart) {
			t.Status, t.Error = store.Cancelled, "cancelled before it started"
			return nil
		}
		if errors.Is(cause, errTimedOutBeforeStart) {
			t.Status, t.Error = store.TimedOut, "timed out: "+cause.Error()
			return nil
		}
		t.Status, t.Error = store.Failed, cause.Error()
		return nil
	})
	if errors.Is(err, errNotHolder) {
		// Said when this server was following it: a follower that resumes
		// past its lease may see the container gone before its renewal
		// tells it that another server took the task over.
		if r.drop(id, nil) {
			r.logf("task %s: not recording its failure (%v): it ended, or another server follows it now; no longer following it", id, cause)
		}
		return
	}
	if err != nil {
		r.logf("task %s: record failure %q: %v", id, cause, err)
	}
	r.endEgress(id)
	r.removeTemps(id)
	r.endBranch(id)
	r.drop(id, nil)
}

// stop asks the run named or numbered nameOrID to stop: SIGTERM, then
// SIGKILL after the grace. One that is gone or stopped is no error.
func (r *Runner) stop(ctx context.Context, nameOrID string) error {
	return r.backend.Stop(ctx, backend.Ref{Name: nameOrID}, r.cfg.StopGrace)
}

// remove removes the run or helper container named or numbered nameOrID;
// one that is already gone is success.
func (r *Runner) remove(ctx context.Context, nameOrID string) error {
	return r.backend.Remove(ctx, backend.Ref{Name: nameOrID})
}

// diskHint says what to do about a full disk.
func (r *Runner) diskHint(err error) string {
	if errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) {
		return fmt.Sprintf(" — free space on the disk that holds %s (old logs can go: see retention in the README)", filepath.Join(r.cfg.Home, "logs"))
	}
	return ""
}

func joinReason(a, b string) string {
	if a == "" {
		return b
	}
	return a + "; " + b
}
