package runner

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"syscall"

	"github.com/codex-connector/codex-connector/internal/hostfs"
	"github.com/codex-connector/codex-connector/workspace"
)

// What a run measures of the repository before its container starts is
// kept on disk for a process that takes the task over (the workspace's
// kept.go says why and encodes it); this file is where it is kept and how
// it is read: beside the task's log in the data directory, which no mount
// of the task reaches.

// preRunPath is the file of task id, beside its log.
func (r *Runner) preRunPath(id string) string {
	return filepath.Join(r.cfg.Home, "logs", id+".prerun")
}

// savePreRun writes what rn measured before the run, atomically, before
// the container starts. A file too large to keep holds why instead.
func (r *Runner) savePreRun(id string, rn *run) error {
	data, err := rn.ws.Keep()
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

// loadPreRun gives rn the workspace the launcher measured before the run,
// for an adopted task of a level that may write the repository.
func (r *Runner) loadPreRun(id, repoRoot string, rn *run) {
	data, err := r.readPreRun(id)
	rn.ws = workspace.Adopt(repoRoot, r.preRunPath(id), data, err)
}

// readPreRun reads the task's file: a regular file of at most
// workspace.MaxKeptBytes.
func (r *Runner) readPreRun(id string) ([]byte, error) {
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
	data, err := io.ReadAll(io.LimitReader(f, workspace.MaxKeptBytes+1))
	if err != nil {
		return nil, err
	}
	if len(data) > workspace.MaxKeptBytes {
		return nil, fmt.Errorf("%s is larger than %s", f.Name(), hostfs.HumanSize(workspace.MaxKeptBytes))
	}
	return data, nil
}
