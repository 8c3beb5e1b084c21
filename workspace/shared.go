package workspace

import "github.com/codex-connector/codex-connector/internal/hostfs"

// Shared is the workspace of a task that runs in the user's own work tree:
// what the server measured of it before the run, to tell afterwards which
// files the run changed and which of those host tools run. A task that may
// not write the work tree (read-only) has none: HostRunChanged of a nil
// *Shared reports only the host-run files among those Codex reported, and
// the other methods want a workspace.
type Shared struct {
	root string
	// before is the git state when the run began; nil with beforeErr
	// saying why the scans cannot be done.
	before    worktreeState
	beforeErr error
	// pin is the git directories at launch, the only ones the scans
	// after the run read (gitpin.go); nil follows none.
	pin *gitPin
	// hostBefore fingerprints the host-run files when the run began; nil
	// when unknown (a task taken over with no record of them).
	hostBefore *hostRunState
	// hostAfter is what Changed's walk took of the host-run files, for
	// HostRunChanged; nil until then.
	hostAfter *hostRunState
	// base is what the status before the run took from the repository,
	// for the status after it (status.go); nil when none was taken.
	base *statusBase
	// usage is the work tree's disk use when the run began, the base of
	// limits.repoMB; below 0 when unknown.
	usage int64
}

// Begin measures the work tree at root before a run, in one walk: its
// git state, its host-run files and its disk use. A git state that cannot
// be taken is no error: the run goes ahead, and its end says that the
// files changed are only those Codex reported. A work tree that cannot be
// measured for its cap is one.
func Begin(root string) (*Shared, error) {
	s := &Shared{root: root}
	var pinErr error
	s.pin, pinErr = pinGitDirs(root)
	t, state, err := scanShared(root, s.pin, pinErr == nil, statusTimeout, scanWant{hostRun: true, usage: true}, nil)
	s.before, s.beforeErr = state, err
	if t != nil && t.st != nil {
		s.base = t.st.base
	}
	if pinErr != nil {
		s.beforeErr = pinErr
	}
	if t == nil || t.usageErr != nil {
		// The walk broke off: measured on its own, to say why.
		var err error
		if s.usage, err = measureRepo(root); err != nil {
			return nil, err
		}
	} else {
		s.usage = t.usage
	}
	if t != nil && t.host != nil {
		s.hostBefore = t.host
	} else {
		s.Rescan()
	}
	return s, nil
}

// Rescan takes the host-run files anew, for a launch tried again: the work
// tree may have changed meanwhile, and the repositories to protect are
// found from this scan.
func (s *Shared) Rescan() {
	h := scanHostRun(s.root)
	s.hostBefore = &h
}

// Root is the work tree.
func (s *Shared) Root() string { return s.root }

// Usage is the work tree's disk use when the run began; below 0 when
// unknown.
func (s *Shared) Usage() int64 { return s.usage }

// Measure is what the work tree uses on disk now (allocated blocks, never
// following a link), measured until it passes cut: a task may be filling
// it.
func (s *Shared) Measure(cut int64) (int64, error) { return hostfs.TreeUsage(s.root, cut) }

// Changed scans the work tree after the run and lists the paths whose git
// state differs from before, sorted. The error says why the list may be
// short: the state before or after could not be taken. The same walk
// takes the host-run files for HostRunChanged.
func (s *Shared) Changed() ([]string, error) {
	t, after, err := scanShared(s.root, s.pin, true, statusTimeout, scanWant{hostRun: s.hostBefore != nil}, s.base)
	if t != nil {
		s.hostAfter = t.host
	}
	if s.beforeErr != nil {
		err = s.beforeErr
	}
	return changedPaths(s.before, after), err
}

// HostRunChanged lists the host-run files the run changed, created or
// removed, and those among changed (the files changed, as reported) that
// the scans did not tell apart. Sorted. After Changed, it takes the
// host-run files of Changed's walk; else it scans the work tree itself.
func (s *Shared) HostRunChanged(changed []string) []string {
	var before, after *hostRunState
	if s != nil && s.hostBefore != nil {
		before, after = s.hostBefore, s.hostAfter
		if after == nil {
			h := scanHostRun(s.root)
			after = &h
		}
		s.hostAfter = nil
	}
	return hostRunFiles(before, after, changed)
}

// hostRun is the scan of the host-run files before the run, nil when none
// was taken.
func (s *Shared) hostRun() *hostRunState {
	if s == nil {
		return nil
	}
	return s.hostBefore
}
