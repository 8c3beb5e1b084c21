package runner

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"syscall"

	"github.com/codex-connector/codex-connector/internal/hostfs"
)

// What a run measures of the repository before its container starts — the
// git state of the work tree, the fingerprints of its host-run files, its
// disk use — is what its end is compared with. A task outlives the process
// that launched it (another server or the follower may take it over), so
// these go to disk before the container starts, beside the task's log in
// the data directory: no mount of the task reaches there. The process that
// adopts the task reads them back and finishes the task as the launcher
// would have; without them it says that the scans could not be done.

// preRunVersion is the layout of the file. Fields may be added without a
// new version (an older reader ignores them, a newer one finds them
// unset); a version no reader knows is not read.
const preRunVersion = 1

// maxPreRunBytes bounds the file: a work tree with very many changed files
// makes a large state, and what cannot be kept is said so, not cut.
const maxPreRunBytes = 64 << 20

// preRun is the file's content.
type preRun struct {
	Version int `json:"version"`
	// Worktree is the git state before the run; nil with SnapshotErr
	// saying why when it could not be taken.
	Worktree    worktreeState `json:"worktree,omitempty"`
	SnapshotErr string        `json:"snapshotErr,omitempty"`
	// GitPin is the git directories the scans read (gitpin.go); without
	// it an adopted task follows no .git.
	GitPin *gitPin `json:"gitPin,omitempty"`
	// HostRun fingerprints the host-run files before the run.
	HostRun *preRunHostRun `json:"hostRun,omitempty"`
	// RepoUsage is the work tree's disk use when the run began, the base
	// that limits.repoMB counts from.
	RepoUsage int64 `json:"repoUsage"`
	// Unkept says why Worktree and HostRun are not in the file (they
	// would pass maxPreRunBytes).
	Unkept string `json:"unkept,omitempty"`
}

// preRunHostRun is hostRunState as the file holds it.
type preRunHostRun struct {
	Files      map[string]string `json:"files"`
	Cut        bool              `json:"cut,omitempty"`
	Unreadable string            `json:"unreadable,omitempty"`
}

// preRunPath is the file of task id, beside its log.
func (r *Runner) preRunPath(id string) string {
	return filepath.Join(r.cfg.Home, "logs", id+".prerun")
}

// savePreRun writes what rn measured before the run, atomically, before
// the container starts. A file too large to keep holds why instead.
func (r *Runner) savePreRun(id string, rn *run) error {
	pr := preRun{Version: preRunVersion, Worktree: rn.before, GitPin: rn.gitPin, RepoUsage: rn.repoBase}
	if rn.snapshotErr != nil {
		pr.SnapshotErr = rn.snapshotErr.Error()
	}
	if h := rn.hostBefore; h != nil {
		pr.HostRun = &preRunHostRun{Files: h.files, Cut: h.cut, Unreadable: h.unreadable}
	}
	data, err := json.Marshal(pr)
	if err == nil && len(data) > maxPreRunBytes {
		unkept := preRun{Version: preRunVersion, GitPin: rn.gitPin, RepoUsage: rn.repoBase,
			Unkept: fmt.Sprintf("the state of the work tree before the run (%d changed or untracked files) is larger than the %s a server keeps of it", len(rn.before), humanBytes(maxPreRunBytes))}
		data, err = json.Marshal(unkept)
	}
	if err == nil {
		err = hostfs.WriteFileAtomic(r.preRunPath(id), data)
	}
	if err != nil {
		return fmt.Errorf("keep the state of the repository before the run, for a server that takes the task over: %w", err)
	}
	return nil
}

// keepPreRun saves what rn measured; a process that takes the task over
// without it says that it could not scan, so a failure costs only that.
func (r *Runner) keepPreRun(id string, rn *run) {
	if err := r.savePreRun(id, rn); err != nil {
		r.logf("task %s: %v", id, err)
	}
}

// loadPreRun fills rn with what the launcher measured before the run, for
// an adopted task of a level that may write the repository. What cannot be
// read leaves rn saying so: the files changed are then only those Codex
// reported, and the reason says that the scans could not be done.
func (r *Runner) loadPreRun(id, repoRoot string, rn *run) {
	rn.repoRoot, rn.repoBase = repoRoot, -1
	pr, err := r.readPreRun(id)
	if err == nil && pr.Unkept != "" {
		rn.repoBase = pr.RepoUsage
		err = errors.New(pr.Unkept)
	}
	if err != nil {
		rn.snapshotErr = fmt.Errorf("the scans of the files changed and of the host-run files could not be done: this server took the task over, and the state of the repository before the run cannot be read (%v) — review the work tree before running anything there", err)
		return
	}
	rn.repoBase = pr.RepoUsage
	rn.before, rn.gitPin = pr.Worktree, pr.GitPin
	if pr.SnapshotErr != "" {
		rn.snapshotErr = errors.New(pr.SnapshotErr)
	}
	if h := pr.HostRun; h != nil {
		files := h.Files
		if files == nil {
			files = map[string]string{}
		}
		rn.hostBefore = &hostRunState{files: files, cut: h.Cut, unreadable: h.Unreadable}
	} else if rn.snapshotErr == nil {
		rn.snapshotErr = errors.New("the host-run files could not be scanned: the state of the repository before the run holds no fingerprints of them")
	}
}

// readPreRun reads the task's file: a regular file of at most
// maxPreRunBytes, of a version this server knows.
func (r *Runner) readPreRun(id string) (*preRun, error) {
	f, err := os.OpenFile(r.preRunPath(id), os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK|syscall.O_CLOEXEC, 0)
	if errors.Is(err, os.ErrNotExist) {
		return nil, errors.New("it was not kept: the task was launched by a codex-connector that keeps none, or the file was removed")
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file", f.Name())
	}
	data, err := io.ReadAll(io.LimitReader(f, maxPreRunBytes+1))
	if err != nil {
		return nil, err
	}
	if len(data) > maxPreRunBytes {
		return nil, fmt.Errorf("%s is larger than %s", f.Name(), humanBytes(maxPreRunBytes))
	}
	var pr preRun
	if err := json.Unmarshal(data, &pr); err != nil {
		return nil, fmt.Errorf("%s is damaged: %v", f.Name(), err)
	}
	if pr.Version != preRunVersion {
		return nil, fmt.Errorf("%s is of version %d, which this codex-connector does not read (it reads %d)", f.Name(), pr.Version, preRunVersion)
	}
	return &pr, nil
}
