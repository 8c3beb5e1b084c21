package workspace

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"

	"github.com/codex-connector/codex-connector/internal/hostfs"
	git "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/object"
	"golang.org/x/sys/unix"
)

// The checkout of a branch workspace: the base's tree written into a
// fresh work tree. Its trees are read and its directories made first, in
// order; then its files are written directory by directory on workers,
// each copied from the user's work tree where the user's file is the
// base's blob (the user's status says so, and its hash is checked on the
// way), since creating and filling tens of thousands of files is the
// checkout's cost and a machine has cores; the rest (other blobs, links)
// are read from git after, in order, since go-git's pack reads are not
// made for several readers at once.

// checkout writes a commit's tree into a fresh work tree.
type checkout struct {
	root  string
	owner Owner
	repo  *git.Repository
	dirs  hostfs.GitDirs
	mu    sync.Mutex // files, while the workers write
	files map[string]*checkedOut
	// clean are the user's files that are as the user's index has them,
	// with their blobs: a file of the base with that blob is copied from
	// the user's work tree (and hashed on the way).
	clean map[string]plumbing.Hash
	left  []string
}

// dirFiles are the files of one directory of the base, at rel.
type dirFiles struct {
	rel   string
	files []object.TreeEntry
}

// maxCheckoutWorkers bounds the workers that write files.
const maxCheckoutWorkers = 4

// checkOut writes the tree t into the fresh work tree whose root is top;
// src is the user's work tree, open (or -1, with nothing copied from it),
// and is closed.
func (c *checkout) checkOut(ctx context.Context, t *object.Tree, top *hostfs.FreshDir, src int) (*treeDir, error) {
	if src >= 0 {
		defer unix.Close(src)
	}
	var dirs []dirFiles
	model, err := c.plan(ctx, t, "", top, &dirs)
	if err != nil {
		return nil, err
	}
	var mu sync.Mutex
	var fromGit []dirFiles
	var firstErr error
	jobs := make(chan dirFiles)
	var wg sync.WaitGroup
	for range min(len(dirs), runtime.GOMAXPROCS(0), maxCheckoutWorkers) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var buf []byte
			for d := range jobs {
				rest, err := c.copyDir(ctx, d, src, &buf)
				mu.Lock()
				if err != nil && firstErr == nil {
					firstErr = err
				}
				if len(rest.files) > 0 {
					fromGit = append(fromGit, rest)
				}
				mu.Unlock()
			}
		}()
	}
	for _, d := range dirs {
		mu.Lock()
		failed := firstErr != nil
		mu.Unlock()
		if failed || ctx.Err() != nil {
			break
		}
		jobs <- d
	}
	close(jobs)
	wg.Wait()
	if firstErr != nil {
		return nil, firstErr
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	sort.Slice(fromGit, func(i, j int) bool { return fromGit[i].rel < fromGit[j].rel })
	for _, d := range fromGit {
		if err := c.fromGit(ctx, d); err != nil {
			return nil, err
		}
	}
	return model, nil
}

// plan reads the tree t, the directory at rel, into the model, makes its
// directories (and the empty ones of submodules) in dir, and lists its
// files to write in dirs.
func (c *checkout) plan(ctx context.Context, t *object.Tree, rel string, dir *hostfs.FreshDir, dirs *[]dirFiles) (*treeDir, error) {
	d := newTreeDir()
	d.hash = t.Hash
	o := c.owner
	files := dirFiles{rel: rel}
	for _, e := range t.Entries {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if err := checkEntryName(e.Name); err != nil {
			return nil, fmt.Errorf("the base's tree at %s: %w", orRoot(rel), err)
		}
		path := joinPath(rel, e.Name)
		switch e.Mode {
		case filemode.Dir:
			sub, err := c.repo.TreeObject(e.Hash)
			if err != nil {
				return nil, fmt.Errorf("read the tree %s: %w", path, err)
			}
			subdir, err := dir.Mkdir(e.Name, 0o755, o.Chown, o.UID, o.GID)
			if err != nil {
				return nil, err
			}
			d.dirs[e.Name], err = c.plan(ctx, sub, path, subdir, dirs)
			subdir.Close()
			if err != nil {
				return nil, err
			}
		case filemode.Submodule:
			// A submodule's commit is another repository's: its directory
			// is made, empty, as git leaves it before `submodule update`.
			subdir, err := dir.Mkdir(e.Name, 0o755, o.Chown, o.UID, o.GID)
			if err != nil {
				return nil, err
			}
			var st unix.Stat_t
			err = unix.Fstat(subdir.Fd(), &st)
			subdir.Close()
			if err != nil {
				return nil, err
			}
			// In the index too, or git inside sees it deleted, and a
			// commit of the task's deletes it.
			c.note(path, e.Mode, e.Hash, st)
			d.entries[e.Name] = treeEntry{e.Mode, e.Hash}
		default:
			files.files = append(files.files, e)
			d.entries[e.Name] = treeEntry{e.Mode, e.Hash}
		}
	}
	if len(files.files) > 0 {
		*dirs = append(*dirs, files)
	}
	return d, nil
}

// copyDir writes the files of d that the user's work tree (src) holds as
// the base has them, and returns the others, for fromGit.
func (c *checkout) copyDir(ctx context.Context, d dirFiles, src int, buf *[]byte) (dirFiles, error) {
	rest := dirFiles{rel: d.rel}
	user := openBelow(src, d.rel)
	if user < 0 {
		return d, nil
	}
	defer unix.Close(user)
	dir, err := hostfs.OpenFresh(filepath.Join(c.root, d.rel))
	if err != nil {
		return rest, err
	}
	defer dir.Close()
	o := c.owner
	for _, e := range d.files {
		if err := ctx.Err(); err != nil {
			return rest, err
		}
		path := joinPath(d.rel, e.Name)
		var data []byte
		ok := e.Mode != filemode.Symlink && c.clean[path] == e.Hash
		if ok {
			data, ok = fromWorkTree(user, e.Name, e.Hash, buf)
		}
		if !ok {
			rest.files = append(rest.files, e)
			continue
		}
		perm := uint32(0o644)
		if e.Mode == filemode.Executable {
			perm = 0o755
		}
		st, err := dir.WriteFile(e.Name, bytes.NewReader(data), perm, o.Chown, o.UID, o.GID)
		if err != nil {
			return rest, fmt.Errorf("check out %s: %w", path, err)
		}
		c.note(path, e.Mode, e.Hash, st)
	}
	return rest, nil
}

// openBelow opens the directory rel below the open directory base,
// following nothing; -1 when it cannot (or base is -1).
func openBelow(base int, rel string) int {
	if base < 0 {
		return -1
	}
	fd, err := unix.Dup(base)
	if err != nil {
		return -1
	}
	if rel == "" {
		return fd
	}
	for _, part := range strings.Split(rel, "/") {
		next, err := unix.Openat(fd, part, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
		unix.Close(fd)
		if err != nil {
			return -1
		}
		fd = next
	}
	return fd
}

// fromGit writes the files of d from the repository's objects.
func (c *checkout) fromGit(ctx context.Context, d dirFiles) error {
	dir, err := hostfs.OpenFresh(filepath.Join(c.root, d.rel))
	if err != nil {
		return err
	}
	defer dir.Close()
	o := c.owner
	for _, e := range d.files {
		if err := ctx.Err(); err != nil {
			return err
		}
		path := joinPath(d.rel, e.Name)
		blob, err := c.repo.BlobObject(e.Hash)
		if err != nil {
			return fmt.Errorf("read %s: %w", path, err)
		}
		r, err := blob.Reader()
		if err != nil {
			return fmt.Errorf("read %s: %w", path, err)
		}
		var st unix.Stat_t
		switch e.Mode {
		case filemode.Symlink:
			var target []byte
			if target, err = io.ReadAll(io.LimitReader(r, unix.PathMax)); err == nil {
				st, err = dir.Symlink(e.Name, string(target), o.Chown, o.UID, o.GID)
			}
		case filemode.Executable:
			st, err = dir.WriteFile(e.Name, r, 0o755, o.Chown, o.UID, o.GID)
		default:
			st, err = dir.WriteFile(e.Name, r, 0o644, o.Chown, o.UID, o.GID)
		}
		r.Close()
		if err != nil {
			return fmt.Errorf("check out %s: %w", path, err)
		}
		c.note(path, e.Mode, e.Hash, st)
	}
	return nil
}

// maxCopyBytes bounds a file copied from the user's work tree; a larger
// one is read from git.
const maxCopyBytes = 16 << 20

// fromWorkTree reads the regular file name of the user's directory src,
// never following it, if its content is the blob h; buf is the caller's
// to reuse.
func fromWorkTree(src int, name string, h plumbing.Hash, buf *[]byte) ([]byte, bool) {
	fd, err := unix.Openat(src, name, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, false
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if unix.Fstat(fd, &st) != nil || st.Mode&unix.S_IFMT != unix.S_IFREG || st.Size > maxCopyBytes {
		return nil, false
	}
	if cap(*buf) < int(st.Size)+1 {
		*buf = make([]byte, max(int(st.Size)+1, 64<<10))
	}
	b := (*buf)[:st.Size+1]
	n := 0
	for n < len(b) {
		m, err := unix.Read(fd, b[n:])
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return nil, false
		}
		if m == 0 {
			break
		}
		n += m
	}
	if int64(n) != st.Size || blobHash(b[:n]) != h {
		return nil, false // changing as it is read, or not the blob
	}
	return b[:n], true
}

// write puts the file of mode and content r at path, and notes its stat.
func (c *checkout) write(path string, mode filemode.FileMode, h plumbing.Hash, r io.Reader) error {
	if mode == filemode.Symlink {
		target, err := io.ReadAll(io.LimitReader(r, unix.PathMax))
		if err != nil {
			return fmt.Errorf("read the link %s: %w", path, err)
		}
		if err := hostfs.SymlinkBelow(c.root, path, string(target), c.owner.Chown, c.owner.UID, c.owner.GID); err != nil {
			return err
		}
		st, err := hostfs.LstatBelow(c.root, c.root, path)
		if err != nil {
			return err
		}
		c.note(path, mode, h, st)
		return nil
	}
	perm := uint32(0o644)
	if mode == filemode.Executable {
		perm = 0o755
	}
	f, err := hostfs.CreateBelow(c.root, path, perm, c.owner.Chown, c.owner.UID, c.owner.GID)
	if err != nil {
		return err
	}
	defer f.Close()
	if _, err := io.Copy(f, r); err != nil {
		return fmt.Errorf("write %s: %w", f.Name(), err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	c.note(path, mode, h, st)
	return nil
}

// note keeps what was checked out at path, for the collect to compare;
// the workers note at once.
func (c *checkout) note(path string, mode filemode.FileMode, h plumbing.Hash, st unix.Stat_t) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.files[path] = &checkedOut{Path: path, Mode: uint32(mode), Hash: h, Size: st.Size,
		Mtime: st.Mtim.Nano(), Ctime: st.Ctim.Nano(), Ino: st.Ino, Dev: uint64(st.Dev), Uid: st.Uid, Gid: st.Gid}
}
