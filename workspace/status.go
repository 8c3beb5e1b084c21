package workspace

import (
	"context"
	"crypto/sha1"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strconv"
	"strings"

	"github.com/codex-connector/codex-connector/internal/hostfs"
	git "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/format/gitignore"
	"github.com/go-git/go-git/v5/plumbing/format/index"
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
const maxStatusDepth = 256

// statusOf takes the status of the work tree at root, whose repository is
// repo with git directories dirs; excludes are the owner's global ignore
// patterns.
func statusOf(ctx context.Context, root string, repo *git.Repository, dirs hostfs.GitDirs, excludes []gitignore.Pattern) (treeStatus, error) {
	idx, err := repo.Storer.Index()
	if err != nil {
		return nil, fmt.Errorf("read the index: %w", err)
	}
	s := &statusWalk{ctx: ctx, root: root, out: treeStatus{}, index: map[string]*index.Entry{}}
	for _, e := range idx.Entries {
		if e.Stage != 0 { // 0 is a merged entry (go-git's index.Merged is 1)
			// A merge in progress: the path is unmerged whatever its
			// stages hold.
			s.out[e.Name] = fileStatus{git.UpdatedButUnmerged, git.UpdatedButUnmerged}
			continue
		}
		s.index[e.Name] = e
		s.names = append(s.names, e.Name)
	}
	sort.Strings(s.names)
	if st, err := hostfs.LstatBelow(dirs.GitDir, dirs.GitDir, "index"); err == nil {
		s.indexTime = st.Mtim
	}
	head, err := headFiles(repo, idx)
	if err != nil {
		return nil, err
	}
	for name, e := range s.index {
		h, ok := head[name]
		switch {
		case !ok:
			s.set(name, func(f *fileStatus) { f.staging = git.Added })
		case h.hash != e.Hash || !sameKind(h.mode, e.Mode):
			s.set(name, func(f *fileStatus) { f.staging = git.Modified })
		}
	}
	for name := range head {
		if _, ok := s.index[name]; !ok {
			if _, unmerged := s.out[name]; !unmerged {
				s.out[name] = fileStatus{git.Deleted, git.Unmodified}
			}
		}
	}
	common := dirs.GitDir
	if dirs.Common != "" {
		common = dirs.Common
	}
	s.ignore = append(s.ignore, excludes...)
	if data, _, err := hostfs.ReadRegular(common, common, "info/exclude", maxIgnoreFileBytes); err == nil {
		s.ignore = append(s.ignore, parseIgnore(data, nil)...)
	}
	fd, err := unix.Open(root, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open the work tree %s: %w", root, err)
	}
	err = s.dir(fd, "", 0)
	unix.Close(fd)
	if err != nil {
		return nil, err
	}
	for name, e := range s.index {
		if !s.seen[name] && !e.SkipWorktree {
			s.set(name, func(f *fileStatus) { f.worktree = git.Deleted })
		}
	}
	return s.out, nil
}

// headEntry is a file of HEAD's tree.
type headEntry struct {
	hash plumbing.Hash
	mode filemode.FileMode
}

// headFiles lists the files of HEAD's tree (none before the first commit).
// When the index's cached tree is whole and is HEAD's, the index is HEAD
// and the tree is not read.
func headFiles(repo *git.Repository, idx *index.Index) (map[string]headEntry, error) {
	ref, err := repo.Head()
	if errors.Is(err, plumbing.ErrReferenceNotFound) {
		return map[string]headEntry{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read HEAD: %w", err)
	}
	commit, err := repo.CommitObject(ref.Hash())
	if err != nil {
		return nil, fmt.Errorf("read HEAD's commit: %w", err)
	}
	if idx.Cache != nil && len(idx.Cache.Entries) > 0 {
		if top := idx.Cache.Entries[0]; top.Path == "" && top.Entries == len(idx.Entries) && top.Hash == commit.TreeHash {
			out := make(map[string]headEntry, len(idx.Entries))
			for _, e := range idx.Entries {
				out[e.Name] = headEntry{e.Hash, e.Mode}
			}
			return out, nil
		}
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
	ctx       context.Context
	root      string
	out       treeStatus
	index     map[string]*index.Entry
	names     []string // the index's paths, sorted
	seen      map[string]bool
	indexTime unix.Timespec
	ignore    []gitignore.Pattern
	n         int
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
	i := sort.SearchStrings(s.names, prefix)
	return i < len(s.names) && strings.HasPrefix(s.names[i], prefix)
}

// dir walks the open directory fd at rel.
func (s *statusWalk) dir(fd int, rel string, depth int) error {
	if depth > maxStatusDepth {
		return fmt.Errorf("the work tree nests deeper than %d directories at %s", maxStatusDepth, rel)
	}
	if s.seen == nil {
		s.seen = map[string]bool{}
	}
	// fd stays the caller's: the listing reads through a copy.
	dup, err := unix.Dup(fd)
	if err != nil {
		return err
	}
	f := os.NewFile(uintptr(dup), joinPath(s.root, rel))
	names, err := f.Readdirnames(-1)
	f.Close()
	if err != nil {
		return fmt.Errorf("list %s: %w", joinPath(s.root, rel), err)
	}
	sort.Strings(names)
	ignore := s.ignore
	if data, ok := readIgnoreAt(fd); ok {
		s.ignore = append(s.ignore[:len(s.ignore):len(s.ignore)], parseIgnore(data, splitNonEmpty(rel))...)
	}
	defer func() { s.ignore = ignore }()
	matcher := gitignore.NewMatcher(s.ignore)
	for _, name := range names {
		if s.n++; s.n%1024 == 0 {
			if err := s.ctx.Err(); err != nil {
				return err
			}
		}
		path := joinPath(rel, name)
		if name == ".git" {
			// The repository's own (at the root) or a nested one's:
			// nothing git lists.
			continue
		}
		var st unix.Stat_t
		if err := unix.Fstatat(fd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			if errors.Is(err, unix.ENOENT) {
				continue // gone since the listing
			}
			return fmt.Errorf("lstat %s: %w", joinPath(s.root, path), err)
		}
		e, tracked := s.index[path]
		if st.Mode&unix.S_IFMT == unix.S_IFDIR {
			if tracked && e.Mode == filemode.Submodule {
				s.seen[path] = true // another repository's: git looks no further either
				continue
			}
			if err := s.subdir(fd, name, path, matcher, depth); err != nil {
				return err
			}
			continue
		}
		if !tracked {
			if !matcher.Match(splitNonEmpty(path), false) {
				s.out[path] = fileStatus{git.Untracked, git.Untracked}
			}
			continue
		}
		s.seen[path] = true
		if e.SkipWorktree {
			continue
		}
		same, err := s.same(fd, name, path, e, st)
		if err != nil {
			return err
		}
		if !same {
			s.set(path, func(f *fileStatus) { f.worktree = git.Modified })
		}
	}
	return nil
}

// subdir walks the directory name of fd, at path, unless it holds nothing
// git lists: ignored with nothing tracked below, or a repository of its
// own.
func (s *statusWalk) subdir(fd int, name, path string, matcher gitignore.Matcher, depth int) error {
	tracks := s.tracksBelow(path)
	if !tracks && matcher.Match(splitNonEmpty(path), true) {
		return nil
	}
	sub, err := unix.Openat(fd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		if errors.Is(err, unix.ENOENT) {
			return nil
		}
		return fmt.Errorf("open %s: %w", joinPath(s.root, path), err)
	}
	defer unix.Close(sub)
	if !tracks && (isGitDirAt(sub) || hasEntry(sub, ".git")) {
		// A nested repository git shows as one untracked directory.
		s.out[path+"/"] = fileStatus{git.Untracked, git.Untracked}
		return nil
	}
	return s.dir(sub, path, depth+1)
}

// same says whether the file name of fd, at path, is as the index entry e
// has it: by its lstat when that matches what the index recorded and the
// entry is not racy (written in the index's own second), else by hashing.
func (s *statusWalk) same(fd int, name, path string, e *index.Entry, st unix.Stat_t) (bool, error) {
	var mode filemode.FileMode
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFREG:
		mode = filemode.Regular
		if st.Mode&0o111 != 0 {
			mode = filemode.Executable
		}
	case unix.S_IFLNK:
		mode = filemode.Symlink
	default:
		return false, nil // a named pipe or a device where git has a file
	}
	if !sameKind(mode, e.Mode) || uint32(st.Size) != e.Size {
		return false, nil
	}
	mtime := unix.NsecToTimespec(e.ModifiedAt.UnixNano())
	ctime := unix.NsecToTimespec(e.CreatedAt.UnixNano())
	racy := !timeBefore(st.Mtim, s.indexTime)
	if !racy && st.Mtim == mtime && st.Ctim == ctime && uint32(st.Ino) == e.Inode {
		return true, nil
	}
	h, err := s.hashAt(fd, name, path, mode, st)
	if err != nil {
		return false, err
	}
	return h == e.Hash, nil
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
