package hostfs

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/go-git/go-billy/v5"
	git "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing/cache"
	"github.com/go-git/go-git/v5/storage/filesystem"
	"github.com/go-git/go-git/v5/storage/filesystem/dotgit"
	"golang.org/x/sys/unix"
)

// go-git reads the work tree and .git through the plain filesystem, and a
// task writes both: a named pipe as .git/HEAD, .git/config or .git/index
// (or as .git itself) blocks its open forever, as measured with go-git
// 5.19, and a huge file keeps it hashing long after a timeout gave up on
// it. repoFS is go-git's filesystem instead: every open goes through
// hostfs (no symlink followed, regular files only, never blocking), nothing
// is written, and once its context ends every call fails, so a status that
// outlives its timeout stops at its next file operation instead of running
// on in the background.
type repoFS struct {
	ctx context.Context
	// refused keeps the first file refused, shared by all views of one
	// repository: go-git may take it for a missing file and carry on with a
	// wrong status, which is then reported as no status, with why.
	refused *Refusal
	base    string // trusted: the repository root, or a git directory
	// prefix is below base, after Chroot; its components are walked
	// without following symlinks like any other.
	prefix string
}

func (fs *repoFS) rel(name string) string {
	return filepath.Join(fs.prefix, filepath.FromSlash(name))
}

var errRepoFSReadOnly = errors.New("codex-connector reads repositories only")

type Refusal struct {
	mu  sync.Mutex
	err error
}

func (r *Refusal) Note(err error) error {
	var unsafe *UnsafeFile
	if errors.As(err, &unsafe) {
		r.mu.Lock()
		if r.err == nil {
			r.err = err
		}
		r.mu.Unlock()
	}
	return err
}

func (r *Refusal) First() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.err
}

func (fs *repoFS) Open(name string) (billy.File, error) { return fs.OpenFile(name, os.O_RDONLY, 0) }

func (fs *repoFS) OpenFile(name string, flag int, _ os.FileMode) (billy.File, error) {
	if err := fs.ctx.Err(); err != nil {
		return nil, err
	}
	if flag&(os.O_WRONLY|os.O_RDWR|os.O_CREATE|os.O_TRUNC|os.O_APPEND) != 0 {
		return nil, &os.PathError{Op: "open", Path: name, Err: errRepoFSReadOnly}
	}
	f, _, err := OpenRegular(fs.base, fs.base, fs.rel(name))
	if err != nil {
		return nil, fs.refused.Note(err)
	}
	return &repoFile{f: f, ctx: fs.ctx, name: name}, nil
}

func (fs *repoFS) Create(name string) (billy.File, error) {
	return nil, &os.PathError{Op: "create", Path: name, Err: errRepoFSReadOnly}
}

func (fs *repoFS) TempFile(dir, _ string) (billy.File, error) {
	return nil, &os.PathError{Op: "create", Path: dir, Err: errRepoFSReadOnly}
}

func (fs *repoFS) Rename(from, _ string) error {
	return &os.PathError{Op: "rename", Path: from, Err: errRepoFSReadOnly}
}

func (fs *repoFS) Remove(name string) error {
	return &os.PathError{Op: "remove", Path: name, Err: errRepoFSReadOnly}
}

func (fs *repoFS) MkdirAll(name string, _ os.FileMode) error {
	return &os.PathError{Op: "mkdir", Path: name, Err: errRepoFSReadOnly}
}

func (fs *repoFS) Symlink(_, link string) error {
	return &os.PathError{Op: "symlink", Path: link, Err: errRepoFSReadOnly}
}

// Stat does not follow a symlink either: what go-git then finds is a
// symlink where it wanted a file or directory, and it says so.
func (fs *repoFS) Stat(name string) (os.FileInfo, error) { return fs.Lstat(name) }

func (fs *repoFS) Lstat(name string) (os.FileInfo, error) {
	if err := fs.ctx.Err(); err != nil {
		return nil, err
	}
	st, err := LstatBelow(fs.base, fs.base, fs.rel(name))
	if err != nil {
		return nil, fs.refused.Note(err)
	}
	return statInfo{filepath.Base(filepath.Join("/", name)), st}, nil
}

func (fs *repoFS) ReadDir(name string) ([]os.FileInfo, error) {
	if err := fs.ctx.Err(); err != nil {
		return nil, err
	}
	infos, err := ReadDirBelow(fs.base, fs.base, fs.rel(name), fs.ctx.Err)
	return infos, fs.refused.Note(err)
}

func (fs *repoFS) Readlink(name string) (string, error) {
	if err := fs.ctx.Err(); err != nil {
		return "", err
	}
	s, err := ReadlinkBelow(fs.base, fs.base, fs.rel(name))
	return s, fs.refused.Note(err)
}

func (fs *repoFS) Join(elem ...string) string { return filepath.Join(elem...) }

func (fs *repoFS) Chroot(name string) (billy.Filesystem, error) {
	return &repoFS{ctx: fs.ctx, refused: fs.refused, base: fs.base, prefix: fs.rel(name)}, nil
}

func (fs *repoFS) Root() string { return filepath.Join(fs.base, fs.prefix) }

// Capabilities say read-only, so that go-git opens even packed-refs for
// reading only.
func (fs *repoFS) Capabilities() billy.Capability {
	return billy.ReadCapability | billy.SeekCapability
}

// repoFile is a regular file opened by repoFS; its reads stop when the
// context ends. It does not embed *os.File: io.Copy would use the file's
// WriteTo and read past the context.
type repoFile struct {
	f    *os.File
	ctx  context.Context
	name string
}

func (f *repoFile) Name() string { return f.name }
func (f *repoFile) Close() error { return f.f.Close() }

func (f *repoFile) Seek(off int64, whence int) (int64, error) { return f.f.Seek(off, whence) }

func (f *repoFile) Read(p []byte) (int, error) {
	if err := f.ctx.Err(); err != nil {
		return 0, err
	}
	return f.f.Read(p)
}

func (f *repoFile) ReadAt(p []byte, off int64) (int, error) {
	if err := f.ctx.Err(); err != nil {
		return 0, err
	}
	return f.f.ReadAt(p, off)
}

func (f *repoFile) Write([]byte) (int, error) { return 0, errRepoFSReadOnly }
func (f *repoFile) Truncate(int64) error      { return errRepoFSReadOnly }
func (f *repoFile) Lock() error               { return nil }
func (f *repoFile) Unlock() error             { return nil }

// GitdirOf reads a .git file of the work tree at dir: the git directory
// its first line names, made absolute. git itself takes one line.
func GitdirOf(dir string, data []byte) (string, bool) {
	line, _, _ := strings.Cut(string(data), "\n")
	target, ok := strings.CutPrefix(strings.TrimSpace(line), "gitdir:")
	target = strings.TrimSpace(target)
	if !ok || target == "" {
		return "", false
	}
	if !filepath.IsAbs(target) {
		target = filepath.Join(dir, target)
	}
	return filepath.Clean(target), true
}

// maxGitFileBytes bounds a .git file (the gitdir pointer) and commondir.
const maxGitFileBytes = 64 << 10

// OpenRepo opens the repository whose work tree is root with go-git, every
// file of it read through repoFS. It follows .git as a file ("gitdir:") and
// commondir, as git does; .git as a symlink is refused. refused collects
// what repoFS would not read.
func OpenRepo(ctx context.Context, root string, refused *Refusal) (*git.Repository, error) {
	dirs, err := GitDirsOf(root)
	if err != nil {
		return nil, err
	}
	return OpenRepoAt(ctx, root, dirs, refused)
}

// GitDirs are the directories git reads for a work tree: its git directory
// and, for a linked worktree or a submodule, the common one ("" if none).
type GitDirs struct {
	GitDir, Common string
	// Stats are List()'s directories as GitDirsOf found them: what
	// identifies each (gitpin.go).
	Stats []unix.Stat_t
}

// GitDirsOf finds the git directories of the work tree at root as git
// does: .git itself, or the directory a .git file names, then its
// commondir. The git directory must belong to the owner of root: a task
// that may write .git can point it at any path, and the server (root, or
// another user) must not read a repository that root's owner cannot.
func GitDirsOf(root string) (GitDirs, error) {
	st, err := LstatBelow(root, root, ".git")
	if err != nil {
		return GitDirs{}, fmt.Errorf("open the git repository at %s: %w", root, err)
	}
	var d GitDirs
	switch info := (statInfo{".git", st}); {
	case info.IsDir():
		d.GitDir = filepath.Join(root, ".git")
	case info.Mode().IsRegular():
		data, _, err := ReadRegular(root, root, ".git", maxGitFileBytes)
		if err != nil {
			return GitDirs{}, fmt.Errorf("read %s: %w", filepath.Join(root, ".git"), err)
		}
		var ok bool
		if d.GitDir, ok = GitdirOf(root, data); !ok {
			return GitDirs{}, fmt.Errorf("%s has no gitdir line", filepath.Join(root, ".git"))
		}
	default:
		return GitDirs{}, &UnsafeFile{filepath.Join(root, ".git"), "is " + kindOf(st.Mode) + "; codex-connector does not follow it"}
	}
	data, _, err := ReadRegular(d.GitDir, d.GitDir, "commondir", maxGitFileBytes)
	switch {
	case err == nil:
		d.Common = strings.TrimSpace(string(data))
		if !filepath.IsAbs(d.Common) {
			d.Common = filepath.Join(d.GitDir, d.Common)
		}
		d.Common = filepath.Clean(d.Common)
	case !errors.Is(err, os.ErrNotExist):
		return GitDirs{}, fmt.Errorf("read %s: %w", filepath.Join(d.GitDir, "commondir"), err)
	}
	owner, err := LstatBelow(root, root, "")
	if err != nil {
		return GitDirs{}, fmt.Errorf("open the git repository at %s: %w", root, err)
	}
	for _, dir := range d.List() {
		st, err := LstatBelow(dir, dir, "")
		if err != nil {
			return GitDirs{}, fmt.Errorf("open the git directory %s of %s: %w", dir, root, err)
		}
		if st.Uid != owner.Uid {
			return GitDirs{}, &UnsafeFile{dir, fmt.Sprintf("is the git directory .git leads to, but it belongs to uid %d and %s to uid %d; codex-connector does not read a git directory of another user — restore .git", st.Uid, root, owner.Uid)}
		}
		d.Stats = append(d.Stats, st)
	}
	return d, nil
}

func (d GitDirs) List() []string {
	if d.Common == "" {
		return []string{d.GitDir}
	}
	return []string{d.GitDir, d.Common}
}

// OpenRepoAt opens the repository of the work tree root whose git
// directories are dirs.
func OpenRepoAt(ctx context.Context, root string, dirs GitDirs, refused *Refusal) (*git.Repository, error) {
	repo, _, err := openRepo(ctx, root, dirs, refused, filesystem.Options{})
	return repo, err
}

// OpenRepoKeeping is OpenRepoAt for reading many objects: the pack files
// stay open between reads, until close.
func OpenRepoKeeping(ctx context.Context, root string, dirs GitDirs, refused *Refusal) (*git.Repository, func() error, error) {
	repo, storage, err := openRepo(ctx, root, dirs, refused, filesystem.Options{KeepDescriptors: true})
	if err != nil {
		return nil, nil, err
	}
	return repo, storage.Close, nil
}

func openRepo(ctx context.Context, root string, dirs GitDirs, refused *Refusal, opts filesystem.Options) (*git.Repository, *filesystem.Storage, error) {
	dot := billy.Filesystem(&repoFS{ctx: ctx, refused: refused, base: dirs.GitDir})
	if dirs.Common != "" {
		dot = dotgit.NewRepositoryFilesystem(dot, &repoFS{ctx: ctx, refused: refused, base: dirs.Common})
	}
	storage := filesystem.NewStorageWithOptions(dot, cache.NewObjectLRUDefault(), opts)
	repo, err := git.Open(storage, &repoFS{ctx: ctx, refused: refused, base: root})
	if err != nil {
		storage.Close()
		return nil, nil, err
	}
	return repo, storage, nil
}

// ReaderOf reads f until ctx ends: a hash of a huge file a task left stops
// with the scan that asked for it.
func ReaderOf(ctx context.Context, f *os.File) io.Reader {
	return &repoFile{f: f, ctx: ctx, name: f.Name()}
}
