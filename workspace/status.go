package workspace

import (
	"bytes"
	"context"
	"crypto/sha1"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/codex-connector/codex-connector/internal/hostfs"
	git "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/format/gitignore"
	"github.com/go-git/go-git/v5/plumbing/object"
	"golang.org/x/sys/unix"
)

// The status of a work tree, as git status tells it, made here rather than
// by go-git's Worktree.Status, which hashes every file of the tree: on
// 30,000 files that was 15 times a git status. This one does what git
// does: a file whose lstat matches what the index recorded of it is
// unchanged, and only the others are hashed. It reads the tree as the
// rest of the server does, never following a link and opening nothing
// but regular files and directories.

// fileStatus is one path's state: against HEAD in the index (staging)
// and against the index in the work tree, in go-git's codes.
type fileStatus struct {
	staging, worktree git.StatusCode
}

func (s fileStatus) changed() bool {
	return s.staging != git.Unmodified || s.worktree != git.Unmodified
}

// treeStatus maps each path that is not as HEAD and the index have it to
// its status: tracked files changed, staged or deleted, and untracked
// files git does not ignore (named pipes and sockets too, which git
// leaves out: a task may leave them).
type treeStatus map[string]fileStatus

// maxIgnoreFileBytes bounds a .gitignore or info/exclude read.
const maxIgnoreFileBytes = 1 << 20

// maxStatusDepth bounds the nesting the walk enters.
const maxStatusDepth = hostfs.MaxWalkDepth

// statusOf takes the status of the work tree at root, whose repository is
// repo with git directories dirs; excludes are the owner's global ignore
// patterns. The walk that took it holds the index it was taken against.
func statusOf(ctx context.Context, root string, repo *git.Repository, dirs hostfs.GitDirs, excludes []gitignore.Pattern) (*statusWalk, treeStatus, error) {
	s, err := newStatus(ctx, root, repo, dirs, excludes, nil)
	if err != nil {
		return nil, nil, err
	}
	st, err := s.result(scanTree(ctx, root, scanWant{status: s}))
	return s, st, err
}

// statusBase is what a status takes from the repository before its walk:
// the index, and how it stands against HEAD. The scans after a run take
// the one of the scans before it again when neither the index file nor
// HEAD moved, as under workspace-write, where neither can.
type statusBase struct {
	key baseKey
	// entries are the index's merged entries, names their paths (sorted)
	// and pos each path's place in both.
	entries []indexEntry
	names   []string
	pos     map[string]int32
	// staged is the index against HEAD, with the unmerged paths.
	staged treeStatus
	// when is the index file's modification time (racy entries).
	when unix.Timespec
}

// baseKey tells an index file and a HEAD apart from others.
type baseKey struct {
	ino          uint64
	size         int64
	mtime, ctime unix.Timespec
	head         plumbing.Hash
}

// newStatus readies a status of the work tree at root for a walk to take:
// the index against HEAD (prev's, when it is still theirs), and the ignore
// rules outside the tree.
func newStatus(ctx context.Context, root string, repo *git.Repository, dirs hostfs.GitDirs, excludes []gitignore.Pattern, prev *statusBase) (*statusWalk, error) {
	var key baseKey
	st, err := hostfs.LstatBelow(dirs.GitDir, dirs.GitDir, "index")
	switch {
	case err == nil:
		key = baseKey{ino: st.Ino, size: st.Size, mtime: st.Mtim, ctime: st.Ctim}
	case !errors.Is(err, os.ErrNotExist):
		return nil, fmt.Errorf("read the index: %w", err)
	}
	ref, err := repo.Head()
	switch {
	case err == nil:
		key.head = ref.Hash()
	case !errors.Is(err, plumbing.ErrReferenceNotFound):
		return nil, fmt.Errorf("read HEAD: %w", err)
	}
	base := prev
	if base == nil || base.key != key {
		if base, err = readBase(repo, dirs, key); err != nil {
			return nil, err
		}
	}
	s := &statusWalk{ctx: ctx, root: root, base: base, out: maps.Clone(base.staged), seen: make([]bool, len(base.entries))}
	common := commonGitDir(dirs)
	s.ignore = append(s.ignore, excludes...)
	if data, _, err := hostfs.ReadRegular(common, common, "info/exclude", maxIgnoreFileBytes); err == nil {
		s.ignore = append(s.ignore, parseIgnore(data, nil)...)
	}
	return s, nil
}

// readBase reads the index and compares it with HEAD's tree (key.head).
func readBase(repo *git.Repository, dirs hostfs.GitDirs, key baseKey) (*statusBase, error) {
	// HEAD's commit is read beside the index: go-git finds it in a pack by
	// hashing the whole pack index first.
	type read struct {
		c   *object.Commit
		err error
	}
	commit := make(chan read, 1)
	go func() {
		defer func() {
			if p := recover(); p != nil {
				commit <- read{nil, fmt.Errorf("read HEAD's commit: internal error: %v", p)}
			}
		}()
		if key.head.IsZero() {
			commit <- read{}
			return
		}
		c, err := repo.CommitObject(key.head)
		commit <- read{c, err}
	}()
	idx, err := readIndex(dirs.GitDir)
	if err != nil {
		<-commit
		return nil, err
	}
	b := &statusBase{key: key, when: idx.when, staged: treeStatus{}, pos: make(map[string]int32, len(idx.entries))}
	for _, e := range idx.entries {
		if e.stage != 0 {
			// A merge in progress: the path is unmerged whatever its
			// stages hold.
			b.staged[e.name] = fileStatus{git.UpdatedButUnmerged, git.UpdatedButUnmerged}
			continue
		}
		b.entries = append(b.entries, e)
	}
	if !slices.IsSortedFunc(b.entries, func(x, y indexEntry) int { return strings.Compare(x.name, y.name) }) { // git writes them sorted
		slices.SortFunc(b.entries, func(x, y indexEntry) int { return strings.Compare(x.name, y.name) })
	}
	b.names = make([]string, len(b.entries))
	for i, e := range b.entries {
		b.names[i] = e.name
		b.pos[e.name] = int32(i)
	}
	c := <-commit
	if c.err != nil {
		return nil, fmt.Errorf("read HEAD's commit: %w", c.err)
	}
	head, err := headFiles(idx, c.c)
	if err != nil || head == nil {
		return b, err // the index is HEAD's tree, as cached
	}
	for _, e := range b.entries {
		h, ok := head[e.name]
		switch {
		case !ok:
			b.staged[e.name] = fileStatus{git.Added, git.Unmodified}
		case h.hash != e.hash || !sameKind(h.mode, e.mode):
			b.staged[e.name] = fileStatus{git.Modified, git.Unmodified}
		}
	}
	for name := range head {
		if _, ok := b.pos[name]; !ok {
			if _, unmerged := b.staged[name]; !unmerged {
				b.staged[name] = fileStatus{git.Deleted, git.Unmodified}
			}
		}
	}
	return b, nil
}

// result is the status once the walk t took it: the tracked files the
// walk did not see are deleted.
func (s *statusWalk) result(t *treeScan) (treeStatus, error) {
	if t.statusErr != nil {
		if errors.Is(t.statusErr, context.DeadlineExceeded) || errors.Is(t.statusErr, context.Canceled) {
			return nil, t.statusErr
		}
		return nil, fmt.Errorf("git status: %w", t.statusErr)
	}
	for i, e := range s.base.entries {
		if !s.seen[i] && !e.skipWorktree {
			s.set(e.name, func(f *fileStatus) { f.worktree = git.Deleted })
		}
	}
	return s.out, nil
}

// headEntry is a file of HEAD's tree.
type headEntry struct {
	hash plumbing.Hash
	mode filemode.FileMode
}

// headFiles lists the files of HEAD's commit (none before the first
// commit). It is nil when the index's cached tree is whole and is the
// commit's: the index is then HEAD, and the tree is not read.
func headFiles(idx *gitIndex, commit *object.Commit) (map[string]headEntry, error) {
	if commit == nil {
		return map[string]headEntry{}, nil
	}
	if !idx.tree.IsZero() && idx.tree == commit.TreeHash {
		return nil, nil
	}
	tree, err := commit.Tree()
	if err != nil {
		return nil, fmt.Errorf("read HEAD's tree: %w", err)
	}
	out := map[string]headEntry{}
	w := object.NewTreeWalker(tree, true, nil)
	defer w.Close()
	for {
		name, e, err := w.Next()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("read HEAD's tree: %w", err)
		}
		if e.Mode != filemode.Dir {
			out[name] = headEntry{e.Hash, e.Mode}
		}
	}
}

type statusWalk struct {
	ctx  context.Context
	root string
	base *statusBase
	out  treeStatus
	// seen marks the index entries the walk found; each worker marks
	// those below its own directories.
	seen   []bool
	ignore []gitignore.Pattern
}

// entry is the index's entry of path, if it has one.
func (s *statusWalk) entry(path string) (int, *indexEntry, bool) {
	i, ok := s.base.pos[path]
	if !ok {
		return 0, nil, false
	}
	return int(i), &s.base.entries[i], true
}

func (s *statusWalk) set(name string, f func(*fileStatus)) {
	st := s.out[name]
	if st.staging == 0 {
		st = fileStatus{git.Unmodified, git.Unmodified}
	}
	f(&st)
	s.out[name] = st
}

// tracksBelow says whether the index holds a path below the directory
// rel: an ignored directory is entered only then.
func (s *statusWalk) tracksBelow(rel string) bool {
	prefix := rel + "/"
	names := s.base.names
	i := sort.SearchStrings(names, prefix)
	return i < len(names) && strings.HasPrefix(names[i], prefix)
}

// file takes the status of the file (not a directory) name of the
// directory fd, at path, whose lstat is st.
func (s *statusWalk) file(fd int, name, path string, st unix.Stat_t, matcher gitignore.Matcher) error {
	i, e, tracked := s.entry(path)
	if !tracked {
		if !matcher.Match(splitNonEmpty(path), false) {
			s.out[path] = fileStatus{git.Untracked, git.Untracked}
		}
		return nil
	}
	s.seen[i] = true
	if e.skipWorktree {
		return nil
	}
	same, err := s.same(fd, name, path, e, st)
	if err != nil {
		return err
	}
	if !same {
		s.set(path, func(f *fileStatus) { f.worktree = git.Modified })
	}
	return nil
}

// same says whether the file name of fd, at path, is as the index entry e
// has it: by its lstat when that matches what the index recorded and the
// entry is not racy (written in the index's own second), else by hashing.
func (s *statusWalk) same(fd int, name, path string, e *indexEntry, st unix.Stat_t) (bool, error) {
	var mode filemode.FileMode
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFREG:
		mode = filemode.Regular
		if st.Mode&0o100 != 0 { // the owner's bit, as git reads it
			mode = filemode.Executable
		}
	case unix.S_IFLNK:
		mode = filemode.Symlink
	default:
		return false, nil // a named pipe or a device where git has a file
	}
	if !sameKind(mode, e.mode) || uint32(st.Size) != e.size {
		return false, nil
	}
	racy := !timeBefore(st.Mtim, s.base.when)
	if !racy && st.Mtim == e.mtime && st.Ctim == e.ctime && uint32(st.Ino) == e.ino {
		return true, nil
	}
	h, err := s.hashAt(fd, name, path, mode, st)
	if err != nil {
		return false, err
	}
	return h == e.hash, nil
}

func timeBefore(a, b unix.Timespec) bool {
	return a.Sec < b.Sec || a.Sec == b.Sec && a.Nsec < b.Nsec
}

// hashAt is the blob hash of the file name of fd: a link's target, or a
// regular file's content, read until the scan's time is up.
func (s *statusWalk) hashAt(fd int, name, path string, mode filemode.FileMode, st unix.Stat_t) (plumbing.Hash, error) {
	var h plumbing.Hash
	if mode == filemode.Symlink {
		buf := make([]byte, unix.PathMax)
		n, err := unix.Readlinkat(fd, name, buf)
		if err != nil {
			return h, fmt.Errorf("read the link %s: %w", joinPath(s.root, path), err)
		}
		return blobHash(buf[:n]), nil
	}
	ffd, err := unix.Openat(fd, name, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return h, fmt.Errorf("open %s: %w", joinPath(s.root, path), err)
	}
	f := os.NewFile(uintptr(ffd), joinPath(s.root, path))
	defer f.Close()
	var now unix.Stat_t
	if err := unix.Fstat(ffd, &now); err != nil || now.Mode&unix.S_IFMT != unix.S_IFREG {
		return h, nil // swapped for something else since the lstat: not the index's file
	}
	sum := sha1.New()
	fmt.Fprintf(sum, "blob %d\x00", now.Size)
	n, err := io.Copy(sum, hostfs.ReaderOf(s.ctx, f))
	if err != nil {
		return h, fmt.Errorf("read %s: %w", joinPath(s.root, path), err)
	}
	if n != now.Size {
		return h, nil // changing as it is read
	}
	copy(h[:], sum.Sum(nil))
	return h, nil
}

func blobHash(data []byte) plumbing.Hash {
	var h plumbing.Hash
	sum := sha1.New()
	sum.Write([]byte("blob " + strconv.Itoa(len(data)) + "\x00"))
	sum.Write(data)
	copy(h[:], sum.Sum(nil))
	return h
}

// readIgnoreAt reads the .gitignore of the open directory fd, if it is a
// regular file.
func readIgnoreAt(fd int) ([]byte, bool) {
	ffd, err := unix.Openat(fd, ".gitignore", unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, false
	}
	f := os.NewFile(uintptr(ffd), ".gitignore")
	defer f.Close()
	var st unix.Stat_t
	if unix.Fstat(ffd, &st) != nil || st.Mode&unix.S_IFMT != unix.S_IFREG {
		return nil, false
	}
	data, err := io.ReadAll(io.LimitReader(f, maxIgnoreFileBytes))
	return data, err == nil
}

// maxIgnorePatterns bounds the ignore patterns one walk of a tree takes
// from all its .gitignore files together. Each pattern keeps its
// directory's path, and each directory's list holds those above it: a
// task that wrote a 1 MiB .gitignore at every level of a deep chain made
// a scan take gigabytes. Real trees hold a few hundred.
const maxIgnorePatterns = 10_000

// errTooManyPatterns says a tree's .gitignore files pass maxIgnorePatterns.
var errTooManyPatterns = fmt.Errorf("the .gitignore files hold more than %d patterns together, more than codex-connector reads; what they hide cannot be told", maxIgnorePatterns)

// ignoreLines counts what parseIgnore would make of data, before it does.
func ignoreLines(data []byte) int {
	n := bytes.Count(data, []byte("\n"))
	if len(data) > 0 && data[len(data)-1] != '\n' {
		n++
	}
	return n
}

func parseIgnore(data []byte, domain []string) []gitignore.Pattern {
	var ps []gitignore.Pattern
	for _, line := range strings.Split(string(data), "\n") {
		line = strings.TrimRight(line, "\r")
		if strings.TrimSpace(line) != "" && !strings.HasPrefix(line, "#") {
			ps = append(ps, gitignore.ParsePattern(line, domain))
		}
	}
	return ps
}

func hasEntry(fd int, name string) bool {
	var st unix.Stat_t
	return unix.Fstatat(fd, name, &st, unix.AT_SYMLINK_NOFOLLOW) == nil
}

func splitNonEmpty(path string) []string {
	if path == "" {
		return nil
	}
	return strings.Split(path, "/")
}
