package workspace

import (
	"encoding/json"
	"errors"
	"fmt"
)

// What a run measures of the repository before its container starts — the
// git state of the work tree, the fingerprints of its host-run files, its
// disk use — is what its end is compared with. A task outlives the process
// that launched it (another server or the follower may take it over), so
// the runner writes these to disk before the container starts, beside the
// task's log in the data directory: no mount of the task reaches there.
// The process that adopts the task reads them back and finishes the task as
// the launcher would have; without them it says that the scans could not
// be done. This file is their encoding.

// keptVersion is the layout of the encoding. Fields may be added without a
// new version (an older reader ignores them, a newer one finds them
// unset); a version no reader knows is not read.
const keptVersion = 1

// MaxKeptBytes bounds what is kept: a work tree with very many changed
// files makes a large state, and what cannot be kept is said so, not cut.
const MaxKeptBytes = 64 << 20

// kept is what is kept.
type kept struct {
	Version int `json:"version"`
	// Worktree is the git state before the run; nil with SnapshotErr
	// saying why when it could not be taken.
	Worktree    worktreeState `json:"worktree,omitempty"`
	SnapshotErr string        `json:"snapshotErr,omitempty"`
	// GitPin is the git directories the scans read (gitpin.go); without
	// it an adopted task follows no .git.
	GitPin *gitPin `json:"gitPin,omitempty"`
	// HostRun fingerprints the host-run files before the run.
	HostRun *keptHostRun `json:"hostRun,omitempty"`
	// RepoUsage is the work tree's disk use when the run began, the base
	// that limits.repoMB counts from.
	RepoUsage int64 `json:"repoUsage"`
	// Unkept says why Worktree and HostRun are not kept (they would pass
	// MaxKeptBytes).
	Unkept string `json:"unkept,omitempty"`
}

// keptHostRun is hostRunState as it is kept.
type keptHostRun struct {
	Files      map[string]string `json:"files"`
	Cut        bool              `json:"cut,omitempty"`
	Unreadable string            `json:"unreadable,omitempty"`
}

// Keep encodes what s measured before the run. A state too large to keep
// is encoded as why instead, with the pin and the disk use, which are
// small.
func (s *Shared) Keep() ([]byte, error) {
	k := kept{Version: keptVersion, Worktree: s.before, GitPin: s.pin, RepoUsage: s.usage}
	if s.beforeErr != nil {
		k.SnapshotErr = s.beforeErr.Error()
	}
	if h := s.hostBefore; h != nil {
		k.HostRun = &keptHostRun{Files: h.files, Cut: h.cut, Unreadable: h.unreadable}
	}
	data, err := json.Marshal(k)
	if err == nil && len(data) > MaxKeptBytes {
		unkept := kept{Version: keptVersion, GitPin: s.pin, RepoUsage: s.usage,
			Unkept: fmt.Sprintf("the state of the work tree before the run (%d changed or untracked files) is larger than the %d MiB a server keeps of it", len(s.before), MaxKeptBytes>>20)}
		data, err = json.Marshal(unkept)
	}
	return data, err
}

// Adopt rebuilds the workspace of a task taken over, at root, from what
// its launcher kept (data, read from the file named from), or from nothing
// when that could not be read (readErr). What cannot be read leaves the
// workspace saying so: the files changed are then only those Codex
// reported, and the reason says that the scans could not be done.
func Adopt(root, from string, data []byte, readErr error) *Shared {
	s := &Shared{root: root, usage: -1}
	k, err := decodeKept(from, data, readErr)
	if err == nil && k.Unkept != "" {
		s.usage = k.RepoUsage
		err = errors.New(k.Unkept)
	}
	if err != nil {
		s.beforeErr = fmt.Errorf("the scans of the files changed and of the host-run files could not be done: this server took the task over, and the state of the repository before the run cannot be read (%v) — review the work tree before running anything there", err)
		return s
	}
	s.usage = k.RepoUsage
	s.before, s.pin = k.Worktree, k.GitPin
	if k.SnapshotErr != "" {
		s.beforeErr = errors.New(k.SnapshotErr)
	}
	if h := k.HostRun; h != nil {
		files := h.Files
		if files == nil {
			files = map[string]string{}
		}
		s.hostBefore = &hostRunState{files: files, cut: h.Cut, unreadable: h.Unreadable}
	} else if s.beforeErr == nil {
		s.beforeErr = errors.New("the host-run files could not be scanned: the state of the repository before the run holds no fingerprints of them")
	}
	return s
}

// decodeKept decodes what was kept, of a version this package knows.
func decodeKept(from string, data []byte, readErr error) (*kept, error) {
	if readErr != nil {
		return nil, readErr
	}
	var k kept
	if err := json.Unmarshal(data, &k); err != nil {
		return nil, fmt.Errorf("%s is damaged: %v", from, err)
	}
	if k.Version != keptVersion {
		return nil, fmt.Errorf("%s is of version %d, which this codex-connector does not read (it reads %d)", from, k.Version, keptVersion)
	}
	return &k, nil
}
