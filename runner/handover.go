package runner

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/codex-connector/codex-connector/store"
)

// Handover between the processes of one home. A process that stops
// following its tasks (a server that exits, the detached follower that
// hands them back to a server) ends its leases at once and wakes the
// others, so that one of them takes the tasks over within wakeEvery rather
// than when the leases would have lapsed. A process that dies without
// handing over is noticed by followerGone, or its leases lapse.

// wakeEvery is how often a runner looks whether another process of its home
// gave up tasks.
const wakeEvery = time.Second

// wakePath is touched by a process that gave up tasks; the others reconcile
// when its time changes.
func (r *Runner) wakePath() string { return wakePath(r.cfg.Home) }

func wakePath(home string) string { return filepath.Join(home, "wake") }

// Wake tells the other processes of the home that tasks are free to take.
func (r *Runner) Wake() {
	if err := WakeHome(r.cfg.Home); err != nil {
		r.logf("%v", err)
	}
}

// WakeHome tells the runners of home that tasks are free to take.
func WakeHome(home string) error {
	path := wakePath(home)
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return fmt.Errorf("wake the home's other processes: %w", err)
	}
	f.Close()
	now := time.Now()
	if err := os.Chtimes(path, now, now); err != nil {
		return fmt.Errorf("wake the home's other processes: %w", err)
	}
	return nil
}

// woken says whether the wake file changed since last, and its time now.
func (r *Runner) woken(last time.Time) (bool, time.Time) {
	info, err := os.Stat(r.wakePath())
	if err != nil {
		return false, last
	}
	return !info.ModTime().Equal(last), info.ModTime()
}

// HandOver ends the leases this runner still holds, once its lifetime has
// ended and Drain has returned, and wakes the home's other processes. It
// returns how many tasks it handed over.
func (r *Runner) HandOver() (int, error) {
	if r.lifetime.Err() == nil {
		return 0, fmt.Errorf("hand over the leases: the runner still follows its tasks")
	}
	handed, err := r.store.HandOver(r.instance)
	if err != nil {
		return 0, fmt.Errorf("hand over the leases: %w", err)
	}
	if len(handed) > 0 {
		r.logf("handed over %d tasks: %s", len(handed), strings.Join(handed, " "))
		r.Wake()
	}
	return len(handed), nil
}

// Live counts the home's tasks that have not ended: queued or running,
// whoever follows them.
func (r *Runner) Live() (int, error) {
	tasks, _, err := r.store.List(store.Filter{Statuses: []store.Status{store.Queued, store.Running}})
	if err != nil {
		return 0, err
	}
	return len(tasks), nil
}

// RemoveProxy removes the home's egress proxy container. It is for when no
// task is live and no server runs: any runner starts it again when a
// restricted task needs it.
func (r *Runner) RemoveProxy(ctx context.Context) error {
	return r.helpers.RemoveProxy(ctx)
}

// ProxyRunning says whether the home's egress proxy container runs.
func (r *Runner) ProxyRunning(ctx context.Context) (bool, error) {
	return r.helpers.ProxyRunning(ctx)
}

// Idle says whether this runner follows, runs and queues nothing: no task's
// end is still being recorded or cleaned up here.
func (r *Runner) Idle() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.runs) == 0 && r.running == 0 && len(r.queue) == 0
}
