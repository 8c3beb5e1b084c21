package runner

import (
	"crypto/sha256"
	"encoding/hex"
	"io"
	"os"
	"path/filepath"
	"sort"
	"time"

	git "github.com/go-git/go-git/v5"
)

// Codex reports file changes only for its patch tool; edits made through
// shell commands (all of them, for models without that tool) show up only in
// git. So the runner also compares the work tree's git status before and
// after a run.

// statusTimeout bounds a status scan: go-git hashes the work tree, which on
// a very large repository takes long, and a missing list is better than a
// late task.
const statusTimeout = 15 * time.Second

// maxHashBytes: larger changed files are compared by size and time only.
const maxHashBytes = 64 << 20

// worktreeState maps each path git sees as changed or untracked to its
// status and a fingerprint of its content.
type worktreeState map[string]string

// snapshotWorktree returns the state of the repository at root, or nil when
// it cannot be had in time.
func snapshotWorktree(root string) worktreeState {
	done := make(chan worktreeState, 1)
	go func() {
		repo, err := git.PlainOpenWithOptions(root, &git.PlainOpenOptions{EnableDotGitCommonDir: true})
		if err != nil {
			done <- nil
			return
		}
		wt, err := repo.Worktree()
		if err != nil {
			done <- nil
			return
		}
		st, err := wt.Status()
		if err != nil {
			done <- nil
			return
		}
		state := worktreeState{}
		for path, fs := range st {
			state[path] = string([]byte{byte(fs.Staging), byte(fs.Worktree)}) + fingerprint(filepath.Join(root, path))
		}
		done <- state
	}()
	select {
	case s := <-done:
		return s
	case <-time.After(statusTimeout):
		return nil
	}
}

func fingerprint(path string) string {
	fi, err := os.Lstat(path)
	if err != nil {
		return "gone"
	}
	if !fi.Mode().IsRegular() || fi.Size() > maxHashBytes {
		return fi.Mode().String() + fi.ModTime().String() + string(rune(fi.Size()))
	}
	f, err := os.Open(path)
	if err != nil {
		return "unreadable"
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
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
