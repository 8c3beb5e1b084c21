package runner

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"time"

	"github.com/codex-connector/codex-connector/internal/hostfs"
	"github.com/codex-connector/codex-connector/runner/egress"
	"github.com/codex-connector/codex-connector/store"
	"github.com/codex-connector/codex-connector/workspace"
)

// Housekeeping: what a crash, an upgrade or a deleted data directory leaves
// behind, and — when the user sets a retention — tasks that ended long ago.
// Task containers a crash left are removed by the reconciler (removeStrays);
// the runner makes no networks or volumes (containers are removed with
// theirs), so there are none to sweep.

// LabelHomePath on the egress proxy names its data directory, so that the
// proxy of a directory that no longer exists can be removed.
const LabelHomePath = "codex-connector.home-path"

// LabelProxyImageHome on an egress proxy image names the home it was built
// for, as LabelHome does on task containers.
const LabelProxyImageHome = "codex-connector.proxy-image-home"

// pruneEvery is how often a server applies the retention.
const pruneEvery = time.Hour

// oldImageAge is how old an unused egress proxy image of another binary must
// be before it is removed: a server of that binary may be about to use it.
const oldImageAge = time.Hour

// Prune removes the tasks that ended before cutoff: their log, result,
// state and egress directories, then their record, so that a crash half-way
// leaves a record to prune again, never files without a record. It returns
// how many it removed. Queued and running tasks are never touched.
//
// A task's directories hold what its container made; removing them never
// follows a symlink and unlocks directories the task locked. What still
// cannot be removed keeps its record, with the reason in the record's error,
// and the other tasks are pruned all the same; the error lists such tasks.
func (r *Runner) Prune(cutoff time.Time) (int, error) {
	ended, err := r.store.EndedBefore(cutoff)
	if err != nil {
		return 0, fmt.Errorf("prune: %w", err)
	}
	// A reply that has not ended was accepted with its own copy of the
	// session it continues; its parent is kept all the same while it runs,
	// for a reader who follows the chain.
	live, _, err := r.store.List(store.Filter{Statuses: []store.Status{store.Queued, store.Running}})
	if err != nil {
		return 0, fmt.Errorf("prune: %w", err)
	}
	continued := map[string]bool{}
	for _, t := range live {
		continued[t.Parent] = true
	}
	n := 0
	var problems []error
	for _, id := range ended {
		if continued[id] {
			continue
		}
		if err := r.pruneTask(id); err != nil {
			problems = append(problems, err)
			continue
		}
		n++
	}
	return n, errors.Join(problems...)
}

// pruneNote starts the reason a task that could not be pruned keeps.
const pruneNote = "retention could not remove all its files: "

// pruneTask removes one ended task's files, then its record. A panic (a
// record no code path expected) is this task's problem, not the sweep's.
func (r *Runner) pruneTask(id string) (err error) {
	defer func() {
		if p := recover(); p != nil {
			r.logf("prune task %s: internal error: %v\n%s", id, p, debug.Stack())
			err = fmt.Errorf("prune task %s: internal error: %v", id, p)
		}
	}()
	if !store.ValidID(id) {
		// Never a path made of what a damaged record says.
		return fmt.Errorf("prune task %q: not a task id; its record is left alone", id)
	}
	var errs []error
	for _, p := range []string{r.LogPath(id), checkpointPath(r.LogPath(id)), r.ResultPath(id), r.preRunPath(id)} {
		if err := hostfs.RemoveTree(p); err != nil {
			errs = append(errs, err)
		}
	}
	files, err := r.files(id)
	if err == nil {
		err = files.Remove(r.lifetime, "")
	}
	if err != nil {
		errs = append(errs, err)
	}
	if err := hostfs.RemoveTemps(checkpointPath(r.LogPath(id)), r.ResultPath(id), r.preRunPath(id)); err != nil {
		errs = append(errs, err)
	}
	if err := r.removeEgress(id); err != nil {
		errs = append(errs, err)
	}
	// The workspace of a branch task whose branch could not be made; the
	// branch itself stays (codex_discard removes it).
	if err := workspace.RemoveBranchWorkspace(r.workspaceDir(id)); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		if _, uerr := r.update(id, func(t *store.Task) error {
			if !strings.Contains(t.Error, pruneNote) {
				t.Error = joinReason(t.Error, clipN(pruneNote+err.Error(), maxReason))
			}
			return nil
		}); uerr != nil {
			r.logf("prune task %s: record why it stays: %v", id, uerr)
		}
		return fmt.Errorf("prune task %s: %w", id, err)
	}
	if err := r.store.DeleteFinished(id); err != nil {
		return fmt.Errorf("prune task %s: %w", id, err)
	}
	return nil
}

// housekeeping applies the retention, if any, and removes helper
// containers and images nothing needs any more. Errors are logged; the next
// round tries again.
func (r *Runner) housekeeping(ctx context.Context) {
	if r.cfg.Retention > 0 {
		cutoff := time.Now().Add(-r.cfg.Retention)
		if n, err := r.Prune(cutoff); err != nil {
			r.logf("retention: %v", err)
		} else if n > 0 {
			r.logf("retention: removed %d tasks that ended before %s", n, cutoff.Format(time.RFC3339))
		}
	}
	r.removeStaleEgress()
	r.removeStaleWorkspaces()
	r.removeOrphanProxies(ctx)
	r.removeOldProxyImages(ctx)
	r.removeOrphanCaches(ctx)
}

// removeStaleEgress removes the egress pieces (policy, socket directory, or
// an earlier version's per-task directory) of tasks that have ended or have
// no record: a crash between a task's end and endEgress leaves them, and
// the proxy would go on serving such a policy.
func (r *Runner) removeStaleEgress() {
	root := r.egressRoot()
	ids := map[string]bool{}
	for _, dir := range []string{filepath.Join(root, egress.PoliciesDir), filepath.Join(root, egress.SocketsDir), root} {
		entries, _ := os.ReadDir(dir)
		for _, e := range entries {
			ids[strings.TrimSuffix(e.Name(), ".json")] = true
		}
	}
	for id := range ids {
		if !store.ValidID(id) {
			continue // policies, sockets, temporary files
		}
		t, err := r.store.Get(id)
		if err == nil && !t.Status.Final() || err != nil && !errors.Is(err, store.ErrNotFound) {
			continue // live, or unknown while the store is unreadable
		}
		if err := r.removeEgress(id); err != nil {
			r.logf("housekeeping: %v", err)
		}
	}
}

// removeStaleWorkspaces removes the branch workspaces that outlived their
// use: a crash between a task's recorded end and the removal, or a task
// whose record is gone. The workspace of an ended task whose branch could
// not be made holds its work: it stays until the task is pruned.
func (r *Runner) removeStaleWorkspaces() {
	entries, _ := os.ReadDir(filepath.Join(r.cfg.Home, "workspaces"))
	for _, e := range entries {
		id := e.Name()
		if !store.ValidID(id) {
			continue
		}
		t, err := r.store.Get(id)
		switch {
		case err != nil && !errors.Is(err, store.ErrNotFound):
			continue // unknown while the store is unreadable
		case err == nil && !t.Status.Final():
			continue // live
		case err == nil && t.Branch != nil && t.Sandbox != ReadOnly && t.Branch.Start != "" && t.Branch.Head == "" && !t.Branch.Discarded:
			continue // its work is there, and nowhere else
		}
		r.logf("housekeeping: removing the workspace of task %s, which has ended", id)
		r.removeWorkspace(id)
	}
}

// removeOrphanProxies removes egress proxies whose data directory is gone:
// no server can use them again.
func (r *Runner) removeOrphanProxies(ctx context.Context) {
	list, err := r.backend.List(ctx, map[string]string{LabelComponent: "egress", LabelHomePath: ""})
	if err != nil {
		r.logf("housekeeping: list egress proxies: %v", err)
		return
	}
	for _, c := range list {
		home := c.Labels[LabelHomePath]
		if _, err := os.Stat(home); !errors.Is(err, os.ErrNotExist) {
			continue
		}
		r.logf("housekeeping: removing egress proxy %s of %s, which no longer exists", c.Ref.Name, home)
		if err := r.backend.Remove(ctx, c.Ref); err != nil {
			r.logf("housekeeping: %v", err)
		}
	}
}

// removeOldProxyImages removes egress proxy images of other binaries (left
// by upgrades and rebuilds) that no container uses, of this home alone: the
// engine may be shared, and another user's server may be about to use its
// own. An image without a home label (an earlier version's) is left alone.
func (r *Runner) removeOldProxyImages(ctx context.Context) {
	removed, err := r.helpers.RemoveOldImages(ctx, oldImageAge)
	if err != nil {
		r.logf("housekeeping: %v", err)
	}
	for _, tag := range removed {
		r.logf("housekeeping: removed egress proxy image %s of another codex-connector binary of this home", tag)
	}
}
