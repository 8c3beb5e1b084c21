package runner

import (
	"fmt"
	"github.com/codex-connector/codex-connector/internal/hostfs"
	"time"
)

// The work tree is a bind mount: no quota holds what a task writes there,
// and a task that fills it fills the user's disk. So what a task adds to
// it is capped as the state directory is (limits.repoMB), counted from
// its disk use when the run began. Disk use is allocated blocks (Measure):
// a sparse file counts what it really holds, since that is what fills a
// disk; a 50 GB hole uses nothing until it is written.

// repoCheckShare bounds the time the watch spends measuring: after a
// measure that took d, the next waits at least d*repoCheckShare, so that
// a huge work tree costs at most a tenth of a core, and a small one is
// measured every stateCheckEvery.
const repoCheckShare = 9

// measured is a work tree whose disk use is capped: the user's (a
// workspace.Shared), or a branch task's own checkout.
type measured interface {
	Root() string
	Usage() int64
	Measure(cut int64) (int64, error)
}

// branchTree is a branch task's checkout, measured from its first
// measure: what the server checked out is not the task's to count.
type branchTree string

func (b branchTree) Root() string { return string(b) }
func (b branchTree) Usage() int64 { return -1 }
func (b branchTree) Measure(cut int64) (int64, error) {
	return hostfs.TreeUsage(string(b), cut)
}

// watchRepo stops the task when it has added more than RepoBytes on disk
// to its work tree over the tree's use when the run began (the base). A base
// below 0 is unknown (a task adopted with no record of it): the first
// measure is the base then, and the cap holds from there.
func (r *Runner) watchRepo(rn *run, id, containerID string, tree measured) func() {
	root, base := tree.Root(), tree.Usage()
	limit := r.cfg.Limits.RepoBytes
	var next time.Time
	return r.watch(rn.ctx, id, containerID, "work tree", stateCheckEvery, func(now time.Time) string {
		if now.Before(next) {
			return ""
		}
		cut := base + limit
		if base < 0 {
			cut = 0 // measured whole, to be the base
		}
		used, err := tree.Measure(cut)
		next = time.Now().Add(time.Since(now) * repoCheckShare)
		switch {
		case err != nil:
			return fmt.Sprintf("stopped: the work tree (%s) cannot be measured against limits.repoMB: %v", root, err)
		case base < 0:
			base = used
		case used-base > limit:
			return fmt.Sprintf("stopped: the task added more than %s on disk to the work tree (limits.repoMB) — remove what it wrote that you do not need, and raise limits.repoMB if the task needs more", hostfs.HumanSize(limit))
		}
		return ""
	})
}
