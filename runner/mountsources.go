package runner

import (
	"github.com/codex-connector/codex-connector/backend"
	"github.com/codex-connector/codex-connector/store"
	"github.com/codex-connector/codex-connector/workspace"
)

// checkMountSources is the launch step that checks what the container will
// bind of the repository, and the ceiling, which may have been lowered
// since the task was accepted. Its errors end the task: they are not the
// engine's trouble, and trying again would not help.
//
// Mount sources are checked at launch, not only when the task is accepted:
// a task that ran before (or runs beside) this one can have swapped a path
// for a symlink, and the engine binds whatever a path leads to when the
// container starts. Every bind source is the repository root itself (the
// same directory, by device and inode, that was accepted), a real file or
// directory below it with no symlink on the way, or a path codex-connector
// made.
func (r *Runner) checkMountSources(t *store.Task, ws *workspace.Shared) (workspace.GitMounts, error) {
	if err := r.underCeiling(t.Sandbox); err != nil {
		return workspace.GitMounts{}, err
	}
	if err := workspace.CheckRoot(t.RepoRoot, t.RepoDev, t.RepoIno); err != nil {
		return workspace.GitMounts{}, err
	}
	var m workspace.GitMounts
	if t.Sandbox == WorkspaceWrite {
		var err error
		if m, err = workspace.ProtectGit(t.RepoRoot, ws); err != nil {
			return m, err
		}
	}
	// Only where the launch is gated: the common directory's parent is
	// another work tree, which a task beside this one may write.
	if restricted(t.Sandbox) {
		m.Linked = workspace.LinkedGitDir(t.RepoRoot)
	}
	for _, p := range []string{t.RepoRoot, m.Linked} {
		if p == "" {
			continue
		}
		b, err := workspace.Identify(p)
		if err != nil {
			return m, err
		}
		m.Bound = append(m.Bound, b)
	}
	return m, nil
}

// checkBranchSources is checkMountSources for a branch task: the ceiling,
// the repository still the one accepted, and the workspace's binds with
// the identity each has now, for the gate to check.
func (r *Runner) checkBranchSources(t *store.Task) ([]backend.Mount, []workspace.Bound, error) {
	if err := r.underCeiling(t.Sandbox); err != nil {
		return nil, nil, err
	}
	if err := workspace.CheckRoot(t.RepoRoot, t.RepoDev, t.RepoIno); err != nil {
		return nil, nil, err
	}
	return r.branchMounts(t)
}
