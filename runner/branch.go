package runner

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/codex-connector/codex-connector/backend"
	"github.com/codex-connector/codex-connector/internal/hostfs"
	"github.com/codex-connector/codex-connector/store"
	"github.com/codex-connector/codex-connector/workspace"
)

// A branch task runs in a workspace of its own (workspace/branch.go says
// what it holds), made when the task is claimed and collected into the
// branch codex/<id> of the user's repository when it ends, however it
// ends. Only the branch outlives the task: the workspace is removed once
// the record holds the branch. A server that takes a task over collects it
// as the launcher would have.

// branchObjectsMount is where a branch task sees the repository's objects,
// read-only: its own .git reaches them through alternates.
const branchObjectsMount = "/codex-connector-objects"

// workspaceDir is where task id's branch workspace is made: in the data
// directory, which no mount of a task reaches but its own tree.
func (r *Runner) workspaceDir(id string) string {
	return filepath.Join(r.cfg.Home, "workspaces", id)
}

// branchFor settles the workspace of a new task (spec.Workspace, from the
// request, the parent or the config) and returns the branch a branch task
// will have, its base resolved now so that a wrong one is said at once.
func (r *Runner) branchFor(ctx context.Context, spec *Spec, root string, parent *store.Task) (*store.Branch, error) {
	asked := spec.Workspace
	if parent != nil {
		if asked != "" && asked != kindOf(parent) {
			return nil, invalid("a reply runs in the workspace kind of the task it continues (%s): leave workspace out", kindOf(parent))
		}
		spec.Workspace = kindOf(parent)
		if spec.Workspace != workspace.KindBranch {
			return nil, nil
		}
		b := parent.Branch
		switch {
		case b == nil || b.Head == "":
			return nil, invalid("task %s has no branch yet (it has not ended, or its branch could not be made): reply once it has ended", parent.ID)
		case b.Discarded:
			return nil, invalid("the branch of task %s was discarded: start a new task with codex_agent", parent.ID)
		}
		// A reply continues on the parent's work: its own branch starts at
		// the parent's head, with nothing of the user's carried.
		return &store.Branch{BaseRef: b.Name, Base: b.Head}, nil
	}
	if asked == "" {
		asked = r.cfg.Workspace
		if asked == workspace.KindBranch && spec.Sandbox == ReadOnly {
			// The user's default; a read-only task changes nothing, so it
			// needs no branch of its own.
			asked = workspace.KindShared
		}
	}
	switch asked {
	case "", workspace.KindShared:
		spec.Workspace = workspace.KindShared
		if spec.Base != "" {
			return nil, invalid("base is for workspace branch: a shared task runs in the work tree as it is")
		}
		return nil, nil
	case workspace.KindBranch:
	default:
		return nil, invalid("workspace %q is not a workspace kind: use %s", asked, strings.Join(workspace.Kinds, " or "))
	}
	if rv := spec.Review; rv != nil && rv.Task != "" {
		// A review of a task's branch: a read-only checkout of its head.
		if root != spec.reviewed {
			return nil, invalid("task %s ran in %s, not in %s: review it with that workingDirectory", rv.Task, spec.reviewed, root)
		}
		return &store.Branch{BaseRef: workspace.BranchPrefix + rv.Task, Base: spec.Base}, nil
	}
	if spec.Review != nil || spec.Sandbox == ReadOnly {
		return nil, invalid("a read-only task changes nothing, so it needs no branch: use workspace shared, or sandbox workspace-write to have its changes come back as a branch")
	}
	spec.Workspace = workspace.KindBranch
	base, err := workspace.ResolveBase(ctx, root, spec.Base)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidTask, err)
	}
	// The user's uncommitted changes are carried onto HEAD only: onto
	// another base they would be changes to a different tree.
	carry := spec.Base == "" || spec.Base == "HEAD"
	return &store.Branch{BaseRef: spec.Base, Base: base, Carry: carry}, nil
}

// kindOf is the workspace kind of a task's record.
func kindOf(t *store.Task) string {
	if t.Workspace == "" {
		return workspace.KindShared
	}
	return t.Workspace
}

func isBranch(t *store.Task) bool { return t.Workspace == workspace.KindBranch }

// repoOwner is whom files written into the repository or a workspace of
// task t belong to: the uid:gid its container runs as.
func repoOwner(t *store.Task) workspace.Owner {
	uid, gid := splitUser(t.User)
	return workspace.Owner{UID: uid, GID: gid, Chown: os.Geteuid() == 0}
}

// prepareBranch makes the task's workspace, unless a launch before this
// one made it, and records where it starts.
func (r *Runner) prepareBranch(ctx context.Context, t *store.Task, rn *run) (*store.Task, error) {
	dir := r.workspaceDir(t.ID)
	if t.Branch.Start != "" {
		if _, err := os.Stat(filepath.Join(dir, "checkout")); err == nil {
			return t, nil
		}
	}
	if err := workspace.RemoveBranchWorkspace(dir); err != nil {
		return t, fmt.Errorf("remove what is left of the workspace %s: %w", dir, err)
	}
	if err := os.MkdirAll(filepath.Dir(dir), 0o700); err != nil {
		return t, fmt.Errorf("make the workspaces directory: %w", err)
	}
	limit := r.cfg.Limits.WorkspacesBytes
	if used, err := r.WorkspacesUsage(limit); err != nil {
		return t, err
	} else if used >= limit {
		return t, fmt.Errorf("the workspaces of running branch tasks use %s, the most limits.workspacesMB allows: wait for tasks to end, or raise it", hostfs.HumanSize(used))
	}
	p, err := workspace.PrepareBranch(ctx, workspace.BranchSpec{
		Repo: t.RepoRoot, Dir: dir, Base: t.Branch.Base, Carry: t.Branch.Carry,
		Branch: t.Branch.Name, Task: t.ID, Owner: repoOwner(t), ObjectsMount: branchObjectsMount,
	})
	if err != nil {
		return t, fmt.Errorf("make the task's workspace: %w%s", err, r.diskHint(err))
	}
	if used, err := r.WorkspacesUsage(limit); err == nil && used > limit {
		_ = workspace.RemoveBranchWorkspace(dir)
		return t, fmt.Errorf("its workspace would bring the workspaces of running branch tasks to %s, past limits.workspacesMB (%s): wait for tasks to end, or raise it", hostfs.HumanSize(used), hostfs.HumanSize(limit))
	}
	// The task starts where it was asked to, even in a directory the base
	// does not have.
	if rel, err := filepath.Rel(t.RepoRoot, t.WorkingDirectory); err == nil && rel != "." && !strings.HasPrefix(rel, "..") {
		o := repoOwner(t)
		if err := hostfs.EnsureDir(workspace.TreeDir(dir), rel, 0o755, o.Chown, o.UID, o.GID); err != nil {
			return t, fmt.Errorf("make the working directory %s in the task's workspace: %w", rel, err)
		}
	}
	return r.update(t.ID, func(t *store.Task) error {
		if !r.holds(t, rn) {
			return errNotHolder
		}
		t.Branch.Start, t.Branch.Carried, t.Branch.Left = p.Start, clipAll(p.Carried), clipAll(p.Left)
		return nil
	})
}

func clipAll(list []string) []string {
	list = list[:min(len(list), maxFiles)]
	for i, s := range list {
		list[i] = clipN(s, maxPath)
	}
	return list
}

// objectsDir is the repository's objects directory, the source of a
// branch task's read-only objects bind.
func objectsDir(root string) (string, error) {
	return workspace.ObjectsDir(root)
}

// branchMounts are what a branch task binds instead of the work tree: its
// workspace at the repository's own path, and the repository's objects,
// read-only.
func (r *Runner) branchMounts(t *store.Task) ([]backend.Mount, []workspace.Bound, error) {
	tree := workspace.TreeDir(r.workspaceDir(t.ID))
	objects, err := objectsDir(t.RepoRoot)
	if err != nil {
		return nil, nil, err
	}
	ms := []backend.Mount{
		{Source: tree, Target: t.RepoRoot, NonRecursive: true},
		{Source: objects, Target: branchObjectsMount, ReadOnly: true, NonRecursive: true},
	}
	var bound []workspace.Bound
	for _, m := range ms {
		b, err := workspace.Identify(m.Source)
		if err != nil {
			return nil, nil, err
		}
		b.Path = m.Target
		bound = append(bound, b)
	}
	return ms, bound, nil
}

// collectBranch turns the task's workspace into its branch, and returns
// the branch as the record keeps it with the files it changed. A task
// whose workspace is gone (collected by a server that died before it
// recorded the branch, then removed) keeps the branch it has.
func (r *Runner) collectBranch(t *store.Task, when time.Time) (*store.Branch, []string, error) {
	b := *t.Branch
	dir := r.workspaceDir(t.ID)
	if b.Start == "" {
		return &b, nil, nil // never made: the task did not run
	}
	if _, err := os.Stat(filepath.Join(dir, "checkout")); errors.Is(err, os.ErrNotExist) {
		return &b, nil, errors.New("its workspace is gone, so its branch could not be made")
	}
	ctx, cancel := context.WithTimeout(r.lifetime, collectTimeout)
	defer cancel()
	c, err := workspace.CollectBranch(ctx, workspace.CollectSpec{
		Repo: t.RepoRoot, Dir: dir, Branch: b.Name, Start: b.Start, Task: t.ID, Owner: repoOwner(t), When: when,
	})
	if err != nil {
		return &b, nil, fmt.Errorf("its branch could not be made (its work is still in %s): %w%s", workspace.TreeDir(dir), err, r.diskHint(err))
	}
	b.Head, b.Commits, b.Rest = c.Head, c.Commits, c.Rest
	b.Left = clipAll(append(b.Left, c.Left...))
	return &b, c.Files, nil
}

// collectTimeout bounds one collect: a task may leave a work tree of any
// size.
const collectTimeout = 5 * time.Minute

// removeWorkspace removes a branch task's workspace once its record holds
// the branch (or says why there is none).
func (r *Runner) removeWorkspace(id string) {
	if err := workspace.RemoveBranchWorkspace(r.workspaceDir(id)); err != nil {
		r.logf("task %s: remove its workspace: %v", id, err)
	}
	if t, err := r.store.Get(id); err == nil && isBranch(t) {
		if err := workspace.DropStart(t.RepoRoot, id); err != nil {
			r.logf("task %s: %v", id, err)
		}
	}
}

// endBranch collects the branch of a branch task that failed after its
// container was made (its work may be in the workspace), records it, and
// removes the workspace.
func (r *Runner) endBranch(id string) {
	t, err := r.store.Get(id)
	if err != nil || !isBranch(t) || t.Branch == nil {
		return
	}
	if t.Sandbox != ReadOnly && t.Branch.Start != "" && t.ContainerID != "" && t.Branch.Head == "" {
		b, _, err := r.collectBranch(t, t.FinishedAt)
		if err != nil {
			r.logf("task %s: %v", id, err)
			return // the workspace stays, with the task's work
		}
		if _, err := r.store.Update(id, func(t *store.Task) error { t.Branch = b; return nil }); err != nil {
			r.logf("task %s: record its branch: %v", id, err)
			return
		}
	}
	r.removeWorkspace(id)
}

// branchOf is the ended branch task id with its branch, or an error that
// says why it has none to show, apply or discard.
func (r *Runner) branchOf(id string) (*store.Task, error) {
	t, err := r.store.Get(id)
	if err != nil {
		return nil, err
	}
	switch {
	case !isBranch(t) || t.Branch == nil:
		return t, invalid("task %s ran in the shared work tree, not on a branch: its changes are in the work tree already (git diff shows them)", id)
	case !t.Status.Final():
		return t, invalid("task %s has not ended yet (%s): its branch is made when it ends — wait with codex_status", id, t.Status)
	case t.Branch.Discarded:
		return t, invalid("the branch of task %s was discarded", id)
	case t.Branch.Head == "":
		why := "the task ended before its workspace was made"
		if t.Branch.Start != "" {
			why = "its branch could not be made: " + t.Error
		}
		return t, invalid("task %s has no branch: %s", id, why)
	}
	return t, nil
}

// Diff is the changes of branch task id against where it started.
func (r *Runner) Diff(ctx context.Context, id string, paths []string, patch bool, max int) (*store.Task, workspace.Diff, error) {
	t, err := r.branchOf(id)
	if err != nil {
		return t, workspace.Diff{}, err
	}
	d, err := workspace.BranchDiff(ctx, t.RepoRoot, t.Branch.Start, t.Branch.Head, paths, patch, max)
	return t, d, err
}

// Apply writes the changes of branch task id into the user's work tree as
// uncommitted changes (workspace/apply.go).
func (r *Runner) Apply(ctx context.Context, id string) (*store.Task, workspace.Applied, error) {
	t, err := r.branchOf(id)
	if err != nil {
		return t, workspace.Applied{}, err
	}
	if err := workspace.CheckRoot(t.RepoRoot, t.RepoDev, t.RepoIno); err != nil {
		return t, workspace.Applied{}, err
	}
	a, err := workspace.ApplyBranch(ctx, t.RepoRoot, t.Branch.Start, t.Branch.Head, repoOwner(t))
	return t, a, err
}

// Discard removes the branch of task id and whatever is left of its
// workspace. A branch the user committed on since is kept.
func (r *Runner) Discard(ctx context.Context, id string) (*store.Task, error) {
	t, err := r.store.Get(id)
	if err != nil {
		return nil, err
	}
	switch {
	case !isBranch(t) || t.Branch == nil:
		return t, invalid("task %s ran in the shared work tree, not on a branch: there is no branch to discard (git restore and git clean undo its changes)", id)
	case !t.Status.Final():
		return t, invalid("task %s is still %s: cancel it with codex_cancel first", id, t.Status)
	case t.Branch.Discarded:
		return t, nil
	}
	if t.Branch.Head != "" {
		if err := workspace.DeleteBranch(t.RepoRoot, t.Branch.Name, t.Branch.Head); err != nil {
			return t, err
		}
	}
	r.removeWorkspace(id)
	return r.store.Update(id, func(t *store.Task) error {
		t.Branch.Discarded = true
		return nil
	})
}

// reviewOfBranch turns a review of task rv.Task into a review, in a
// read-only checkout of that task's branch head, of the changes against
// where the task started.
func (r *Runner) reviewOfBranch(spec *Spec) error {
	rv := spec.Review
	if rv.Task == "" {
		return nil
	}
	if rv.Base != "" {
		return invalid("a review of a task's branch is against where the task started: leave base out")
	}
	t, err := r.branchOf(rv.Task)
	if err != nil {
		return err
	}
	if spec.WorkingDirectory == "" {
		spec.WorkingDirectory = t.WorkingDirectory
	}
	spec.reviewed = t.RepoRoot
	spec.Workspace, spec.Base = workspace.KindBranch, t.Branch.Head
	rv.Base = t.Branch.Start
	return nil
}

// WorkspacesUsage is the disk the branch workspaces use now, measured
// until it passes cut.
func (r *Runner) WorkspacesUsage(cut int64) (int64, error) {
	dir := filepath.Join(r.cfg.Home, "workspaces")
	if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	used, err := hostfs.TreeUsage(dir, cut)
	if err != nil {
		return used, fmt.Errorf("measure the workspaces in %s: %w", dir, err)
	}
	return used, nil
}
