package workspace

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"sort"
	"time"

	"github.com/codex-connector/codex-connector/internal/hostfs"
	"golang.org/x/sys/unix"
)

// Codex reports file changes only for its patch tool; edits made through
// shell commands (all of them, for models without that tool) show up only in
// git. So the runner also compares the work tree's git status before and
// after a run.

// statusTimeout bounds a status scan: the files whose lstat changed are
// hashed, which on a very large repository takes long, and a missing list
// is better than a late task.
const statusTimeout = 15 * time.Second

// maxHashBytes: larger changed files are compared by size and time only.
const maxHashBytes = 64 << 20

// worktreeState maps each path git sees as changed or untracked to its
// status and a fingerprint of its content.
type worktreeState map[string]string

// snapshotWorktree returns the state of the repository at root, or an
// error that says why there is none: git status took too long, or a task
// left something in the work tree or .git that codex-connector does not
// read (a named pipe, a symlink where git wants a file), or .git no longer
// leads to the git directories pin holds (gitpin.go). It leaves no work
// behind: when the time is up, the scan stops at its next file operation.
func snapshotWorktree(root string, pin *gitPin, timeout time.Duration) (worktreeState, error) {
	_, state, err := scanShared(root, pin, true, timeout, scanWant{}, nil)
	return state, err
}

// scanShared walks the work tree at root once for its git state (when
// status is set, within timeout; from prev, the base of an earlier
// status, if it still holds) and for the other scans want asks. The walk
// is nil when it could not be made at all.
func scanShared(root string, pin *gitPin, status bool, timeout time.Duration, want scanWant, prev *statusBase) (t *treeScan, state worktreeState, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	defer func() {
		// go-git parses what a task may have written into .git.
		if p := recover(); p != nil {
			state, err = nil, fmt.Errorf("git status failed: internal error: %v", p)
		}
	}()
	refused := &hostfs.Refusal{}
	var s *statusWalk
	if status {
		s, err = readyStatus(ctx, root, pin, refused, prev)
		want.status = s
	}
	t = scanTree(ctx, root, want)
	if !status {
		return t, nil, nil
	}
	if err != nil {
		return t, nil, err
	}
	st, err := s.result(t)
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return t, nil, fmt.Errorf("git status took longer than %s", timeout)
	case refused.First() != nil:
		// A refused file explains go-git's error better than go-git
		// does, and makes a status made without it worthless.
		return t, nil, refused.First()
	case err != nil:
		return t, nil, err
	}
	state = worktreeState{}
	for path, fs := range st {
		state[path] = string([]byte{byte(fs.staging), byte(fs.worktree)}) + fingerprint(ctx, root, path)
	}
	if ctx.Err() != nil {
		return t, nil, fmt.Errorf("git status took longer than %s", timeout)
	}
	return t, state, nil
}

// readyStatus opens the repository of the work tree at root through the
// git directories pin holds, and readies its status for a walk.
func readyStatus(ctx context.Context, root string, pin *gitPin, refused *hostfs.Refusal, prev *statusBase) (*statusWalk, error) {
	failed := func(err error) error {
		if r := refused.First(); r != nil {
			return r
		}
		return fmt.Errorf("git status: %w", err)
	}
	dirs, err := pinnedGitDirs(root, pin)
	if err != nil {
		return nil, err
	}
	repo, err := hostfs.OpenRepoAt(ctx, root, dirs, refused)
	if err != nil {
		return nil, failed(err)
	}
	s, err := newStatus(ctx, root, repo, dirs, globalExcludes(root), prev)
	if err != nil {
		return nil, failed(err)
	}
	return s, nil
}

// fingerprint tells whether a changed file changed again: a hash of a
// regular file's content, else what it is, its size and time. Nothing is
// followed and nothing but a regular file is opened.
func fingerprint(ctx context.Context, root, rel string) string {
	st, err := hostfs.LstatBelow(root, root, rel)
	if err != nil {
		return "gone"
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG || st.Size > maxHashBytes {
		return fmt.Sprintf("%o:%d:%d", st.Mode, st.Size, st.Mtim.Nano())
	}
	f, _, err := hostfs.OpenRegular(root, root, rel)
	if err != nil {
		return "unreadable"
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, hostfs.ReaderOf(ctx, f)); err != nil {
		return "unreadable"
	}
	return hex.EncodeToString(h.Sum(nil))
}

// changedPaths lists the paths whose state differs between before and after,
// sorted; nil when either scan failed.
func changedPaths(before, after worktreeState) []string {
	if before == nil || after == nil {
		return nil
	}
	var out []string
	for p, a := range after {
		if before[p] != a {
			out = append(out, p)
		}
	}
	for p := range before {
		if _, ok := after[p]; !ok {
			out = append(out, p) // back to its committed state, or deleted and staged
		}
	}
	sort.Strings(out)
	return out
}
