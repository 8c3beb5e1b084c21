package runner

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/codex-connector/codex-connector/backend"
	"github.com/codex-connector/codex-connector/store"
)

// Tasks outlive the server that started them: containers keep running when
// it stops, and several servers (one per Claude Code window) share one home.
// Each task has one follower at a time, named in its record with a lease the
// follower renews. Every server reconciles at start and then periodically:
// it takes over tasks whose lease lapsed (or whose follower process is gone
// from this machine) and picks them up where they are — queued ones are
// queued again, running ones followed again, exited ones finished from
// their container, vanished ones failed with the reason.

// DefaultLease is how long a follower's claim holds without renewal.
const DefaultLease = 30 * time.Second

// orphanGrace is how old a labelled container without a live record must be
// before it is removed: a server may be between creating it and recording it.
const orphanGrace = time.Minute

func newInstanceID() string {
	host, _ := os.Hostname()
	var b [4]byte
	_, _ = rand.Read(b[:])
	return fmt.Sprintf("%s/%d/%s", host, os.Getpid(), hex.EncodeToString(b[:]))
}

// HomeLabel is the value of LabelHome on the task containers of a data
// directory.
func HomeLabel(home string) string { return homeLabel(home) }

// homeLabel ties containers to one data directory, so that a server never
// touches the containers of another home on the same engine.
func homeLabel(home string) string {
	sum := sha256.Sum256([]byte(home))
	return hex.EncodeToString(sum[:6])
}

// followerGone reports whether the follower named in a record is a process
// of this machine that no longer exists, so its lease need not be waited out.
func followerGone(follower string) bool {
	parts := strings.Split(follower, "/")
	if len(parts) != 3 {
		return false
	}
	host, _ := os.Hostname()
	pid, err := strconv.Atoi(parts[1])
	if parts[0] != host || err != nil || pid <= 0 {
		return false
	}
	if syscall.Kill(pid, 0) == syscall.ESRCH {
		return true
	}
	// A process that exited but was not yet waited for by its parent (a
	// zombie) still answers kill; it follows nothing.
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	fields := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+1:]))
	return len(fields) > 0 && fields[0] == "Z"
}

// Supervise keeps this server's leases, reconciles and keeps house until the
// lifetime ends. Leases are renewed on their own goroutine and clock: a
// reconcile or a housekeeping pass stuck on the engine must not let them
// lapse while this server still follows its tasks.
func (r *Runner) Supervise() error {
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		r.keepLeases()
	}()
	// The wake file's time before the first reconcile: a handover that
	// lands during it is seen at the next look.
	_, seen := r.woken(time.Time{})
	r.safely("reconcile", func() { r.reconcile(r.lifetime) })
	r.safely("housekeeping", func() { r.housekeeping(r.lifetime) })
	sweep := time.NewTicker(r.cfg.Lease / 2)
	defer sweep.Stop()
	tidy := time.NewTicker(pruneEvery)
	defer tidy.Stop()
	wake := time.NewTicker(wakeEvery)
	defer wake.Stop()
	for {
		select {
		case <-r.lifetime.Done():
			return nil
		case <-sweep.C:
			r.safely("reconcile", func() { r.reconcile(r.lifetime) })
		case <-wake.C:
			var changed bool
			if changed, seen = r.woken(seen); changed {
				r.safely("reconcile", func() { r.reconcile(r.lifetime) })
			}
		case <-tidy.C:
			// A server of the schema before the index of live tasks, still
			// running since the database was migrated, writes records
			// without it: once an hour is soon enough to catch up.
			if err := r.store.RebuildLive(); err != nil {
				r.logf("rebuild the index of live tasks: %v", err)
			}
			r.safely("housekeeping", func() { r.housekeeping(r.lifetime) })
		}
	}
}

// KeepLeases renews the leases of the tasks this runner started, and does
// nothing else, until the lifetime ends: for a process that follows only
// its own tasks (`codex-connector run`), and leaves the rest of the home to
// the servers and the follower. A run that stops renewing, suspended or
// killed, loses its tasks to them when the leases lapse.
func (r *Runner) KeepLeases() error {
	r.keepLeases()
	return nil
}

// keepLeases renews this server's leases every third of a lease until the
// lifetime ends. It makes no engine call.
func (r *Runner) keepLeases() {
	tick := time.NewTicker(r.cfg.Lease / 3)
	defer tick.Stop()
	for {
		select {
		case <-r.lifetime.Done():
			return
		case <-tick.C:
			r.safely("renew leases", r.renewLeases)
		}
	}
}

// renewLeases extends the leases this server holds, and stops following at
// once the tasks whose lease it lost.
func (r *Runner) renewLeases() {
	r.mu.Lock()
	runs := make(map[string]*run, len(r.runs))
	ids := make([]string, 0, len(r.runs))
	for id, rn := range r.runs {
		runs[id] = rn
		ids = append(ids, id)
	}
	r.mu.Unlock()
	until := time.Now().Add(r.cfg.Lease)
	lost, err := r.store.Renew(r.instance, ids, until)
	if err != nil {
		// The leases lapse unless a later renewal gets through; the
		// follower's writes stop when they do (run.held).
		r.logf("renew task leases: %v", err)
		return
	}
	for _, id := range lost {
		if r.drop(id, runs[id]) {
			r.logf("task %s: this server no longer holds its lease (another server took it over, or it ended); no longer following it", id)
		}
		delete(runs, id)
	}
	for _, rn := range runs {
		rn.heldUntil.Store(until.UnixNano())
	}
}

// reconcile takes over the tasks no live server follows, and removes
// containers no task needs. Errors are logged; the next sweep tries again.
func (r *Runner) reconcile(ctx context.Context) {
	tasks, _, err := r.store.List(store.Filter{Statuses: []store.Status{store.Queued, store.Running}})
	if err != nil {
		r.logf("reconcile: %v", err)
		return
	}
	// Running tasks first, so that adopted ones hold their slots before
	// queued ones are dispatched; queued ones oldest first, to keep the
	// queue's order (List gives newest first).
	slices.SortStableFunc(tasks, func(a, b *store.Task) int {
		if (a.Status == store.Running) != (b.Status == store.Running) {
			if a.Status == store.Running {
				return -1
			}
			return 1
		}
		return a.CreatedAt.Compare(b.CreatedAt)
	})
	for _, t := range tasks {
		if !store.ValidID(t.ID) {
			r.refuseRecord(t.ID)
			continue
		}
		if r.local(t.ID) != nil {
			continue
		}
		taken, err := r.takeOver(t.ID)
		if err != nil {
			r.logf("reconcile: take over task %s: %v", t.ID, err)
			continue
		}
		if taken == nil {
			continue
		}
		r.logf("task %s: taken over from %q (%s)", t.ID, t.Follower, t.Status)
		if taken.Status == store.Queued {
			r.enqueue(taken.ID)
			continue
		}
		// An adopted task takes a slot like one this process started: the
		// limit holds across restarts.
		r.track(taken.ID).claimed(taken.LeaseUntil)
		r.mu.Lock()
		r.running++
		r.mu.Unlock()
		r.wg.Add(1)
		go func() {
			defer r.freeSlot()
			defer r.recoverTask(taken.ID)
			r.adopt(taken)
		}()
	}
	r.removeStrays(ctx)
}

// refuseRecord fails a queued or running record whose id is not one
// codex-connector makes: paths and container names are made of the id, so
// nothing is run or touched for it.
func (r *Runner) refuseRecord(id string) {
	_, err := r.update(id, func(t *store.Task) error {
		if t.Status.Final() {
			return nil
		}
		t.Status, t.FinishedAt = store.Failed, time.Now().UTC()
		t.Error = "not run: its record's id is not one codex-connector makes (a damaged or hand-made record)"
		return nil
	})
	if err != nil {
		r.logf("reconcile: refuse the record %.40q: %v", id, err)
	}
}

// takeOver claims a task whose follower is gone; nil if another holds it.
func (r *Runner) takeOver(id string) (*store.Task, error) {
	t, err := r.update(id, func(t *store.Task) error {
		// This process's own lapsed lease counts too: it gave the task up
		// (giveUp) and may take it again.
		if t.Status.Final() || (time.Now().Before(t.LeaseUntil) && !followerGone(t.Follower)) {
			return errNotRunnable
		}
		t.Follower, t.LeaseUntil = r.instance, time.Now().Add(r.cfg.Lease)
		return nil
	})
	if errors.Is(err, errNotRunnable) {
		return nil, nil
	}
	return t, err
}

func (r *Runner) track(id string) *run {
	r.mu.Lock()
	defer r.mu.Unlock()
	rn, ok := r.runs[id]
	if !ok {
		rn = &run{tracker: &eventTracker{}, done: make(chan struct{})}
		rn.ctx, rn.cancel = context.WithCancel(r.lifetime)
		r.runs[id] = rn
	}
	return rn
}

// adopt picks up a running task from its container, as it is now.
func (r *Runner) adopt(t *store.Task) {
	rn := r.local(t.ID)
	if rn == nil {
		return // lost before it began
	}
	ctx := rn.ctx
	var h backend.Handle
	find := func() (backend.State, error) {
		var st backend.State
		var err error
		h, st, err = r.backend.Recover(ctx, backend.Ref{Name: t.ContainerName})
		return st, err
	}
	st, err := find()
	if errors.Is(err, backend.ErrUnreachable) {
		// The engine is down (or restarting): this server holds the task
		// and picks it up when the engine answers.
		rn.engineLost = true
		rn.tracker.note("waiting for the Docker engine to come back")
		r.logf("task %s: the Docker engine does not answer; adopting the task when it does", t.ID)
		if st, err = r.awaitEngine(ctx, find); ctx.Err() != nil {
			r.drop(t.ID, rn)
			return
		}
	}
	switch {
	case errors.Is(err, backend.ErrNotFound) && t.ContainerID == "":
		// Claimed, but the server died before it made a container.
		r.requeue(t.ID)
		return
	case ctx.Err() != nil:
		r.drop(t.ID, rn)
		return
	case errors.Is(err, backend.ErrNotFound):
		r.fail(t.ID, errors.New("its container is gone: it was removed while no codex-connector followed it; the log holds what it printed until then"))
		return
	case err != nil:
		r.logf("task %s: inspect container to adopt: %v", t.ID, err)
		r.giveUp(t.ID)
		return
	}
	if st.Created || !r.gateOpened(ctx, t.ID, st) {
		// Made but never started, or started but held at its gate by a
		// server that died before it confirmed the mounts: nothing of the
		// task ran. Start it afresh: the record says so before the
		// container goes, so that a server that dies in between leaves a
		// queued task (whose launch replaces the container left of its
		// name), not a running one whose container is gone.
		r.requeueThen(t.ID, func() { _ = h.Remove(ctx) })
		return
	}
	if err := replayLog(r.LogPath(t.ID), rn.tracker); err != nil {
		r.logf("task %s: read its log so far: %v", t.ID, err)
	}
	if t.Sandbox != ReadOnly && !isBranch(t) {
		// What the launcher measured before the run, so that the end
		// is told as it would have told it (prerun.go).
		r.loadPreRun(t.ID, t.RepoRoot, rn)
	}
	r.follow(t, h, rn)
}

// requeue puts a task that never started back in the queue.
func (r *Runner) requeue(id string) { r.requeueThen(id, nil) }

// requeueThen records a task that never started as queued again, then
// clears what its attempt left (cleanup, if any), then queues it. A task
// this server no longer holds is left alone, and so is what it left.
func (r *Runner) requeueThen(id string, cleanup func()) {
	err := r.backToQueued(id)
	if err == nil && cleanup != nil {
		cleanup()
	}
	r.drop(id, nil)
	if errors.Is(err, errNotHolder) {
		return
	}
	if err != nil {
		r.logf("task %s: queue again: %v", id, err)
		return
	}
	r.enqueueFirst(id)
}

// giveUp gives up following a task for now; its lease lapses and a later
// sweep (of any server) takes it up again.
func (r *Runner) giveUp(id string) {
	r.drop(id, nil)
	// End the lease now rather than when it lapses.
	if _, err := r.update(id, func(t *store.Task) error {
		if t.Follower == r.instance {
			t.LeaseUntil = time.Time{}
		}
		return nil
	}); err != nil {
		r.logf("task %s: give up the lease: %v", id, err)
	}
}

// removeStrays removes this home's task containers whose record is final
// or missing (left by a crash between recording and removing, or by a
// deleted record).
func (r *Runner) removeStrays(ctx context.Context) {
	list, err := r.backend.List(ctx, map[string]string{LabelHome: homeLabel(r.cfg.Home), LabelTask: ""})
	if err != nil {
		r.logf("reconcile: list containers: %v", err)
		return
	}
	for _, c := range list {
		id := c.Labels[LabelTask]
		t, err := r.store.Get(id)
		switch {
		case err == nil && !t.Status.Final():
			continue
		case err != nil && !errors.Is(err, store.ErrNotFound):
			continue // unreadable record or locked database: leave it
		case time.Since(c.Created) < orphanGrace:
			continue
		}
		r.logf("reconcile: removing container %s of task %s, which no record needs", shortID(c.Ref.ID), id)
		_ = r.backend.Remove(ctx, c.Ref)
	}
	r.removeStrayHelpers(ctx)
}

// removeStrayHelpers removes this home's one-shot helpers (cache-readying,
// engine probes) that a server killed while one ran left behind: the
// server removes its helper when it ends, so one past orphanGrace is no
// one's. A probe held running (probe --hold) ends by itself within two
// minutes; one still running past orphanGrace goes too.
func (r *Runner) removeStrayHelpers(ctx context.Context) {
	for _, kind := range []struct{ component, what string }{{"cache-init", "cache helper"}, {"probe", "engine probe"}} {
		list, err := r.backend.List(ctx, map[string]string{LabelComponent: kind.component, LabelHomePath: r.cfg.Home})
		if err != nil {
			r.logf("reconcile: list %ss: %v", kind.what, err)
			return
		}
		for _, c := range list {
			if time.Since(c.Created) < orphanGrace || c.Running && kind.component != "probe" {
				continue
			}
			r.logf("reconcile: removing %s %s, which a server that ended left", kind.what, shortID(c.Ref.ID))
			_ = r.backend.Remove(ctx, c.Ref)
		}
	}
}
