package workspace

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/codex-connector/codex-connector/internal/hostfs"
	git "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/format/gitignore"
	"golang.org/x/sys/unix"
)

// One walk of the work tree serves every scan a task needs at that moment:
// its git status, the fingerprints of its host-run files and its disk use.
// Each was a walk of its own, and on 30,000 files the five walks of a
// workspace-write task (three before the run, two after) cost the server
// seven times a git status; the lstat of every entry is the walk's cost,
// and it is now made once. Each scan keeps its own rules of what it
// enters and what it makes of a directory it cannot read:
//   - the status enters no git directory and no ignored directory that
//     tracks nothing, and fails on what it cannot read;
//   - the host-run scan enters ignored directories but no git directory
//     (it fingerprints those), and is cut, not failed, by what it cannot
//     read and by its bounds;
//   - the disk use enters everything, git directories included, and fails
//     on what it cannot read.

// scanWant says which scans a walk makes.
type scanWant struct {
	// status is the status being taken, nil for none.
	status  *statusWalk
	hostRun bool
	usage   bool
}

// treeScan is one walk and what it found.
type treeScan struct {
	ctx  context.Context
	root string
	st   *statusWalk
	// statusErr ends the status: the rest of the walk takes none.
	statusErr error
	host      *hostRunState
	hostEnd   time.Time
	counts    *scanCounts
	usage     int64
	usageErr  error
	buf       []byte
	// topDirs, while the root is listed, gathers its directories for the
	// workers (fanOut); nil below the root.
	topDirs *[]string
	// panicked is what a worker's panic was, raised again by the walk's
	// caller.
	panicked any
}

// scanCounts are the entries a walk's workers have taken, together, for
// the scans' bounds.
type scanCounts struct {
	status, hostRun atomic.Int64
	// patterns are the .gitignore lines the status took (maxIgnorePatterns).
	patterns atomic.Int64
}

// mode is what the walk takes of one directory and what is below it.
type mode struct {
	status, hostRun, usage bool
	// dotted says the directory is below a hidden one (or is one), whose
	// files are all host-run.
	dotted bool
}

func (m mode) any() bool { return m.status || m.hostRun || m.usage }

// scanTree walks the work tree at root once for want.
func scanTree(ctx context.Context, root string, want scanWant) *treeScan {
	t := &treeScan{ctx: ctx, root: root, st: want.status, buf: make([]byte, 32<<10), counts: &scanCounts{}}
	if want.hostRun {
		t.host = &hostRunState{files: map[string]string{}, gitDirs: map[string]bool{}}
		t.hostEnd = time.Now().Add(hostRunScanTime)
	}
	m := mode{status: want.status != nil, hostRun: want.hostRun, usage: want.usage}
	fd, err := unix.Open(root, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		t.failed(m, root, err)
		return t
	}
	defer unix.Close(fd)
	if m.usage {
		var st unix.Stat_t
		if err := unix.Fstat(fd, &st); err != nil {
			t.usageErr = &os.PathError{Op: "stat", Path: root, Err: err}
			m.usage = false
		} else {
			t.usage += st.Blocks*512 + hostfs.EntryCharge
		}
	}
	var ignore []gitignore.Pattern
	if t.st != nil {
		ignore = t.st.ignore
	}
	var top []string
	t.topDirs = &top
	ignore = t.dir(fd, "", 0, m, ignore)
	t.topDirs = nil
	t.fanOut(fd, top, m, ignore)
	if t.panicked != nil {
		panic(t.panicked)
	}
	return t
}

// fanOut walks the root's directories names (of the open root fd) on
// workers, one core each: the lstat of every entry is the walk's cost.
// Each worker keeps what it finds apart, merged when all are done.
func (t *treeScan) fanOut(fd int, names []string, m mode, ignore []gitignore.Pattern) {
	workers := min(len(names), runtime.GOMAXPROCS(0), maxScanWorkers)
	if workers < 2 {
		for _, name := range names {
			t.subdir(fd, name, name, 0, t.live(m), ignore)
		}
		return
	}
	jobs := make(chan string)
	shards := make([]*treeScan, workers)
	var wg sync.WaitGroup
	for i := range shards {
		sh := t.shard()
		shards[i] = sh
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() {
				if p := recover(); p != nil {
					sh.panicked = p
					for range jobs {
					}
				}
			}()
			for name := range jobs {
				sh.subdir(fd, name, name, 0, sh.live(m), ignore)
			}
		}()
	}
	for _, name := range names {
		jobs <- name
	}
	close(jobs)
	wg.Wait()
	for _, sh := range shards {
		t.merge(sh)
	}
}

// maxScanWorkers bounds the walk's workers.
const maxScanWorkers = 4

// shard is a worker's own scan, sharing t's inputs and bounds.
func (t *treeScan) shard() *treeScan {
	sh := &treeScan{ctx: t.ctx, root: t.root, hostEnd: t.hostEnd, buf: make([]byte, 32<<10), counts: t.counts}
	if t.st != nil {
		st := *t.st
		st.out = treeStatus{} // seen is shared: each worker marks its own entries
		sh.st = &st
	}
	if t.host != nil {
		sh.host = &hostRunState{files: map[string]string{}, gitDirs: map[string]bool{}}
	}
	return sh
}

// merge takes in what the worker's scan sh found.
func (t *treeScan) merge(sh *treeScan) {
	if t.panicked == nil {
		t.panicked = sh.panicked
	}
	if t.st != nil {
		if t.statusErr == nil {
			t.statusErr = sh.statusErr
		}
		for p, f := range sh.st.out {
			if was, ok := t.st.out[p]; ok {
				// The staging was taken before the walk; the worker took
				// the work tree's side.
				was.worktree = f.worktree
				t.st.out[p] = was
			} else {
				t.st.out[p] = f
			}
		}
	}
	if t.host != nil {
		maps.Copy(t.host.files, sh.host.files)
		maps.Copy(t.host.gitDirs, sh.host.gitDirs)
		t.host.cut = t.host.cut || sh.host.cut
		if t.host.unreadable == "" {
			t.host.unreadable = sh.host.unreadable
		}
	}
	t.usage += sh.usage
	if t.usageErr == nil {
		t.usageErr = sh.usageErr
	}
}

// live drops from m the scans that have ended.
func (t *treeScan) live(m mode) mode {
	m.status = m.status && t.statusErr == nil
	m.hostRun = m.hostRun && !t.host.cut
	m.usage = m.usage && t.usageErr == nil
	return m
}

// failed records that what m takes of path could not be read.
func (t *treeScan) failed(m mode, path string, err error) {
	if m.status && t.statusErr == nil {
		t.statusErr = fmt.Errorf("open %s: %w", path, err)
	}
	if m.hostRun && !errors.Is(err, os.ErrNotExist) && t.host.unreadable == "" {
		t.host.cut, t.host.unreadable = true, path
	}
	if m.usage && t.usageErr == nil {
		if errors.Is(err, unix.EACCES) {
			t.usageErr = &hostfs.UnsafeFile{Path: path, Why: "cannot be read (a task locked it); codex-connector cannot measure what it holds"}
		} else {
			t.usageErr = &os.PathError{Op: "open", Path: path, Err: err}
		}
	}
}

// dir walks the open directory fd at rel (the root is ""), taking m of it,
// and returns the ignore rules in force there.
func (t *treeScan) dir(fd int, rel string, depth int, m mode, ignore []gitignore.Pattern) []gitignore.Pattern {
	display := filepath.Join(t.root, rel)
	var matcher gitignore.Matcher
	if m.status {
		if data, ok := readIgnoreAt(fd); ok {
			if t.counts.patterns.Add(int64(ignoreLines(data))) > maxIgnorePatterns {
				t.statusErr = errTooManyPatterns
				m.status = false
			} else {
				ignore = append(ignore[:len(ignore):len(ignore)], parseIgnore(data, splitNonEmpty(rel))...)
			}
		}
		matcher = gitignore.NewMatcher(ignore)
	}
	for {
		n, err := unix.Getdents(fd, t.buf)
		if err != nil {
			if !errors.Is(err, unix.ENOENT) { // removed while walked: nothing is there now
				t.failed(m, display, err)
			}
			return ignore
		}
		if n <= 0 {
			return ignore
		}
		_, _, names := unix.ParseDirent(t.buf[:n], -1, nil)
		for _, name := range names {
			if m = t.live(m); !m.any() {
				return ignore
			}
			t.entry(fd, rel, name, depth, m, ignore, matcher)
		}
	}
}

// entry takes m of the entry name of the directory fd at rel.
func (t *treeScan) entry(fd int, rel, name string, depth int, m mode, ignore []gitignore.Pattern, matcher gitignore.Matcher) {
	path := joinPath(rel, name)
	if m.status {
		if n := t.counts.status.Add(1); n%1024 == 0 && t.ctx.Err() != nil {
			t.statusErr = t.ctx.Err()
			m.status = false
		}
	}
	if m.hostRun {
		if n := t.counts.hostRun.Add(1); n > maxHostRunEntries || (n%1024 == 0 && time.Now().After(t.hostEnd)) {
			t.host.cut = true
			m.hostRun = false
		}
	}
	var st unix.Stat_t
	if err := unix.Fstatat(fd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		if !errors.Is(err, unix.ENOENT) { // gone since the listing
			t.failed(mode{status: m.status, usage: m.usage}, joinPath(t.root, path), err)
		}
		return
	}
	isDir := st.Mode&unix.S_IFMT == unix.S_IFDIR
	if m.usage && !isDir {
		t.usage += st.Blocks*512 + hostfs.EntryCharge
	}
	if name == ".git" {
		// The repository's own, or a nested one's: nothing the status
		// lists; fingerprinted, not entered, by the host-run scan (under
		// workspace-write it is read-only; under danger-full-access a
		// change here is the first thing to review); measured.
		if m.hostRun {
			if isDir {
				t.gitDir(path)
			} else {
				t.host.files[path] = fingerprintOf(st)
			}
		}
		if isDir && m.usage {
			t.subdir(fd, name, path, depth, mode{usage: true}, nil)
		}
		return
	}
	if isDir {
		if t.topDirs != nil && rel == "" {
			*t.topDirs = append(*t.topDirs, name) // for the workers
			return
		}
		t.subdir(fd, name, path, depth, m, ignore)
		return
	}
	// Files; not the directories that hold host-run files, whose times
	// change with every file in them.
	if m.hostRun && hostRunName(name, m.dotted) {
		t.host.files[path] = fingerprintOf(st)
	}
	if m.status {
		if err := t.st.file(fd, name, path, st, matcher); err != nil {
			t.statusErr = err
		}
	}
}

// subdir enters the directory name of fd, at path, for what m takes below
// it: each scan decides here by what the directory is.
func (t *treeScan) subdir(fd int, name, path string, depth int, m mode, ignore []gitignore.Pattern) {
	display := joinPath(t.root, path)
	tracks := false
	if m.status {
		i, e, tracked := t.st.entry(path)
		tracks = t.st.tracksBelow(path)
		switch {
		case tracked && e.mode == filemode.Submodule:
			t.st.seen[i] = true // another repository's: git looks no further either
			m.status = false
		case !tracks && gitignore.NewMatcher(ignore).Match(splitNonEmpty(path), true):
			m.status = false
		}
	}
	if !m.any() {
		return
	}
	if depth+1 >= maxStatusDepth {
		if m.status {
			t.statusErr = fmt.Errorf("the work tree nests deeper than %d directories at %s", maxStatusDepth, display)
		}
		if m.hostRun {
			t.host.cut = true
		}
		if m.usage {
			t.usageErr = &hostfs.UnsafeFile{Path: display, Why: fmt.Sprintf("is nested more than %d directories deep; codex-connector does not measure deeper", hostfs.MaxWalkDepth)}
		}
		return
	}
	sub, err := unix.Openat(fd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENOTDIR) || errors.Is(err, unix.ELOOP) {
		return // replaced since the listing
	}
	if err != nil {
		t.failed(m, display, err)
		return
	}
	defer unix.Close(sub)
	if m.usage {
		var st unix.Stat_t
		if unix.Fstat(sub, &st) == nil {
			t.usage += st.Blocks*512 + hostfs.EntryCharge
		}
	}
	gitDir := isGitDirAt(sub)
	if m.hostRun && gitDir {
		// git run in it (or below it) takes it for a bare repository and
		// obeys its config, whatever the directory is called.
		t.gitDir(path)
		m.hostRun = false
	}
	if m.status && !tracks && (gitDir || hasEntry(sub, ".git")) {
		// A repository of its own, which git shows as one untracked
		// directory.
		t.st.out[path+"/"] = fileStatus{git.Untracked, git.Untracked}
		m.status = false
	}
	if m.any() {
		m.dotted = m.dotted || isDotName(name)
		t.dir(sub, path, depth+1, m, ignore)
	}
}

// gitDir fingerprints the git directory at rel: its being there (and
// which directory it is: its times change whenever git takes a lock in
// it), and what in it git runs or obeys.
func (t *treeScan) gitDir(rel string) {
	p := filepath.Join(t.root, rel)
	t.host.gitDirs[rel] = true
	t.host.files[rel] = dirFingerprint(p)
	for _, name := range []string{"config", "commondir", "info/attributes", "config.worktree"} {
		t.host.files[rel+"/"+name] = lstatFingerprint(filepath.Join(p, name))
	}
	if hooks, err := os.OpenFile(filepath.Join(p, "hooks"), openDirFlags, 0); err == nil {
		list, _ := hooks.ReadDir(256)
		hooks.Close()
		for _, h := range list {
			t.host.files[rel+"/hooks/"+h.Name()] = lstatFingerprint(filepath.Join(p, "hooks", h.Name()))
		}
	}
}
