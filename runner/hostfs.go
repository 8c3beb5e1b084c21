package runner

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// The host side of what a task can write. A task writes its state directory
// and, at workspace-write and above, the repository; it can put symlinks,
// named pipes, huge or sparse files and mode-000 directories there, and the
// server, often root, must never follow, block on, or choke on them. So
// everything below a trusted base (a directory the server made, or the
// repository root checked at accept time) is reached one component at a
// time with openat and O_NOFOLLOW; only regular files are read, opened
// non-blocking and checked with fstat, and read with a cap; removal never
// follows a symlink and copes with directories a task locked.

// unsafeFile says why the server refused a file a task made.
type unsafeFile struct {
	path string // as the user knows it, relative to the task's directory
	why  string
}

func (e *unsafeFile) Error() string { return e.path + " " + e.why }

// kindOf names a file type for a reader.
func kindOf(mode uint32) string {
	switch mode & unix.S_IFMT {
	case unix.S_IFREG:
		return "a regular file"
	case unix.S_IFDIR:
		return "a directory"
	case unix.S_IFLNK:
		return "a symbolic link"
	case unix.S_IFIFO:
		return "a named pipe"
	case unix.S_IFSOCK:
		return "a socket"
	case unix.S_IFCHR, unix.S_IFBLK:
		return "a device"
	}
	return "a special file"
}

// splitRel cleans a path relative to a base into its components, refusing
// one that climbs out of the base.
func splitRel(rel string) ([]string, error) {
	rel = filepath.Clean("/" + filepath.FromSlash(rel))[1:]
	if rel == "" {
		return nil, nil
	}
	return strings.Split(rel, string(filepath.Separator)), nil
}

// openBase opens a trusted directory: one the server made (the data
// directory, a task's state directory, whose mount point no task can
// replace) or checked (the repository root). A symlink the user put on its
// path is the user's choice, and followed.
func openBase(base string) (int, error) {
	fd, err := unix.Open(base, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, &os.PathError{Op: "open", Path: base, Err: err}
	}
	return fd, nil
}

// walkDirs opens every directory component of parts below dirfd without
// following a symlink, and returns a descriptor of the last one (dirfd
// itself for none). The caller closes a descriptor that is not dirfd.
func walkDirs(dirfd int, display string, parts []string) (int, error) {
	cur := dirfd
	for i, name := range parts {
		fd, err := unix.Openat(cur, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if cur != dirfd {
			unix.Close(cur)
		}
		if err != nil {
			return -1, componentError(dirfd, display, parts[:i+1], err)
		}
		cur = fd
	}
	return cur, nil
}

// componentError turns the error of opening a path component into one that
// says what the component is when a task made it something unexpected.
func componentError(dirfd int, display string, parts []string, err error) error {
	path := filepath.Join(append([]string{display}, parts...)...)
	if errors.Is(err, unix.ELOOP) || errors.Is(err, unix.ENOTDIR) {
		var st unix.Stat_t
		if unix.Fstatat(dirfd, filepath.Join(parts...), &st, unix.AT_SYMLINK_NOFOLLOW) == nil {
			return &unsafeFile{path, "is " + kindOf(st.Mode) + " where a directory belongs; codex-connector does not follow it"}
		}
		return &unsafeFile{path, "is a symbolic link or not a directory; codex-connector does not follow it"}
	}
	return &os.PathError{Op: "open", Path: path, Err: err}
}

// openRegular opens the regular file rel below the trusted directory base
// for reading. No component is followed if it is a symlink, a named pipe
// cannot block the open, and anything but a regular file is refused with
// what it is. display names base in errors.
func openRegular(base, display, rel string) (*os.File, unix.Stat_t, error) {
	var st unix.Stat_t
	parts, _ := splitRel(rel)
	if len(parts) == 0 {
		return nil, st, &unsafeFile{display, "is a directory, not a file"}
	}
	basefd, err := openBase(base)
	if err != nil {
		return nil, st, err
	}
	defer unix.Close(basefd)
	dirfd, err := walkDirs(basefd, display, parts[:len(parts)-1])
	if err != nil {
		return nil, st, err
	}
	if dirfd != basefd {
		defer unix.Close(dirfd)
	}
	name := parts[len(parts)-1]
	path := filepath.Join(display, rel)
	// Look before opening: opening a device can act on it.
	if err := unix.Fstatat(dirfd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return nil, st, &os.PathError{Op: "stat", Path: path, Err: err}
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return nil, st, &unsafeFile{path, "is " + kindOf(st.Mode) + ", not a regular file; codex-connector does not read it"}
	}
	fd, err := unix.Openat(dirfd, name, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		if errors.Is(err, unix.ELOOP) {
			return nil, st, &unsafeFile{path, "is a symbolic link; codex-connector does not follow it"}
		}
		return nil, st, &os.PathError{Op: "open", Path: path, Err: err}
	}
	// What was opened is what counts: it may have been swapped since the look.
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return nil, st, &os.PathError{Op: "stat", Path: path, Err: err}
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		unix.Close(fd)
		return nil, st, &unsafeFile{path, "is " + kindOf(st.Mode) + ", not a regular file; codex-connector does not read it"}
	}
	return os.NewFile(uintptr(fd), path), st, nil
}

// readRegular reads at most max bytes of the regular file rel below base,
// and returns them with the file's size: a larger file is cut, and the
// caller says so.
func readRegular(base, display, rel string, max int64) ([]byte, int64, error) {
	f, st, err := openRegular(base, display, rel)
	if err != nil {
		return nil, 0, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, max))
	if err != nil {
		return nil, 0, fmt.Errorf("read %s: %w", f.Name(), err)
	}
	return data, max64(st.Size, int64(len(data))), nil
}

func max64(a, b int64) int64 {
	if a > b {
		return a
	}
	return b
}

// ensureDir makes rel below the trusted directory base a real directory with
// mode perm, owned by uid:gid when chown is set, whatever a task left there:
// a symlink, a file or a pipe in its place is removed (never followed), and
// a directory the task locked gets its mode back. Every directory on the way
// is handled the same.
func ensureDir(base, rel string, perm uint32, chown bool, uid, gid int) error {
	parts, err := splitRel(rel)
	if err != nil {
		return err
	}
	cur, err := openBase(base)
	if err != nil {
		return err
	}
	defer func() { unix.Close(cur) }()
	for i, name := range parts {
		display := filepath.Join(append([]string{base}, parts[:i+1]...)...)
		var st unix.Stat_t
		err := unix.Fstatat(cur, name, &st, unix.AT_SYMLINK_NOFOLLOW)
		if err == nil && st.Mode&unix.S_IFMT != unix.S_IFDIR {
			// Not ours to keep: the layout of this directory is the server's.
			if err := removeAt(cur, name, display); err != nil {
				return err
			}
			err = unix.ENOENT
		}
		if errors.Is(err, unix.ENOENT) {
			if err := unix.Mkdirat(cur, name, perm); err != nil && !errors.Is(err, unix.EEXIST) {
				return &os.PathError{Op: "mkdir", Path: display, Err: err}
			}
		} else if err != nil {
			return &os.PathError{Op: "stat", Path: display, Err: err}
		}
		fd, err := openDirAt(cur, name, display)
		if err != nil {
			return err
		}
		unix.Close(cur)
		cur = fd
		if chown {
			if err := unix.Fchown(cur, uid, gid); err != nil {
				return &os.PathError{Op: "chown", Path: display, Err: err}
			}
		}
		if err := unix.Fchmod(cur, perm); err != nil {
			return &os.PathError{Op: "chmod", Path: display, Err: err}
		}
	}
	return nil
}

// openDirAt opens the directory name in dirfd without following a symlink.
// A directory this process may not read (a task made it mode 000) is given
// back its owner's permissions first, when this process owns it or is root.
func openDirAt(dirfd int, name, display string) (int, error) {
	fd, err := unix.Openat(dirfd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if errors.Is(err, unix.EACCES) {
		if err := chmodNoFollow(dirfd, name, 0o700); err != nil {
			return -1, &os.PathError{Op: "chmod", Path: display, Err: err}
		}
		fd, err = unix.Openat(dirfd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	}
	if err != nil {
		return -1, componentError(dirfd, filepath.Dir(display), []string{name}, err)
	}
	return fd, nil
}

// chmodNoFollow changes the mode of name in dirfd, never that of a symlink's
// target. fchmodat2 does it where the kernel has it (6.6 and newer); older
// kernels get a descriptor of the very inode (O_PATH, O_NOFOLLOW), whose mode
// /proc/self/fd changes.
func chmodNoFollow(dirfd int, name string, mode uint32) error {
	err := unix.Fchmodat(dirfd, name, mode, unix.AT_SYMLINK_NOFOLLOW)
	if !errors.Is(err, unix.EOPNOTSUPP) && !errors.Is(err, unix.ENOSYS) {
		return err
	}
	fd, err := unix.Openat(dirfd, name, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return err
	}
	if st.Mode&unix.S_IFMT == unix.S_IFLNK {
		return unix.ELOOP
	}
	return unix.Chmod("/proc/self/fd/"+strconv.Itoa(fd), mode)
}

// removeTree removes path and everything under it without following a
// symlink; a missing path is success. The directory holding path is trusted.
func removeTree(path string) error {
	parent, err := openBase(filepath.Dir(path))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	defer unix.Close(parent)
	return removeAt(parent, filepath.Base(path), path)
}

// removeBelow removes rel below the trusted directory base, and everything
// under it, without following a symlink on the way or inside.
func removeBelow(base, rel string) error {
	parts, _ := splitRel(rel)
	if len(parts) == 0 {
		return errors.New("remove: refusing to remove the base directory itself")
	}
	basefd, err := openBase(base)
	if err != nil {
		return err
	}
	defer unix.Close(basefd)
	dirfd, err := walkDirs(basefd, base, parts[:len(parts)-1])
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if dirfd != basefd {
		defer unix.Close(dirfd)
	}
	return removeAt(dirfd, parts[len(parts)-1], filepath.Join(base, rel))
}

// maxRemoveErrors bounds how many failures a removal lists.
const maxRemoveErrors = 5

// frame is a directory on the way down a removal: its name in its parent,
// and its identity, to check that ".." leads back to the same parent.
type frame struct {
	name     string
	dev, ino uint64
	// failed holds entries that could not be removed, so that they are not
	// tried again and again.
	failed map[string]bool
}

// removeAt removes name in the trusted directory dirfd and everything under
// it. It never follows a symlink (unlinkat removes the link itself), opens
// nothing but directories, and holds one of them open at a time however
// deep a task nested them: it climbs back up through "..", checking each
// time that it arrives where it came from. A directory a task locked (mode
// 000, or no write permission) is unlocked first when this process owns it
// or is root. What cannot be removed is named in the error, with why; all
// the rest is removed.
func removeAt(dirfd int, name, display string) error {
	err := unix.Unlinkat(dirfd, name, 0)
	if err == nil || errors.Is(err, unix.ENOENT) {
		return nil
	}
	var st unix.Stat_t
	if serr := unix.Fstatat(dirfd, name, &st, unix.AT_SYMLINK_NOFOLLOW); serr != nil || st.Mode&unix.S_IFMT != unix.S_IFDIR {
		return joinRemoveErrors(display, []error{removeFailed(display, err)})
	}
	cur, err := openDirAt(dirfd, name, display)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return joinRemoveErrors(display, []error{removeFailed(display, err)})
	}
	var errs []error
	fail := func(path string, err error) {
		if len(errs) < maxRemoveErrors {
			errs = append(errs, removeFailed(path, err))
		} else if len(errs) == maxRemoveErrors {
			errs = append(errs, errors.New("and more"))
		}
	}
	stack := []frame{{name: name}}
	pathOf := func() string {
		names := make([]string, 0, len(stack)+1)
		names = append(names, filepath.Dir(display))
		for _, f := range stack {
			names = append(names, f.name)
		}
		return filepath.Join(names...)
	}
	if err := enter(cur, &stack[0]); err != nil {
		fail(pathOf(), err)
	}
	for {
		f := &stack[len(stack)-1]
		next, err := clearDir(cur, f, pathOf, fail)
		if err != nil {
			fail(pathOf(), err)
		}
		if next != "" {
			child, err := openDirAt(cur, next, filepath.Join(pathOf(), next))
			if err != nil {
				f.failed[next] = true
				if !errors.Is(err, os.ErrNotExist) {
					fail(filepath.Join(pathOf(), next), err)
				}
				continue
			}
			unix.Close(cur)
			cur = child
			stack = append(stack, frame{name: next})
			if err := enter(cur, &stack[len(stack)-1]); err != nil {
				fail(pathOf(), err)
			}
			continue
		}
		// Empty, or holding only what cannot go: climb up and remove it.
		up, err := climb(cur, dirfd, stack)
		unix.Close(cur)
		if err != nil {
			fail(pathOf(), err)
			return joinRemoveErrors(display, errs)
		}
		if err := unix.Unlinkat(up, f.name, unix.AT_REMOVEDIR); err != nil && !errors.Is(err, unix.ENOENT) {
			if len(f.failed) == 0 {
				fail(pathOf(), err) // not only because of what is below it
			}
			if len(stack) > 1 {
				stack[len(stack)-2].failed[f.name] = true
			}
		}
		stack = stack[:len(stack)-1]
		if len(stack) == 0 {
			return joinRemoveErrors(display, errs)
		}
		cur = up
	}
}

// climb returns a descriptor of the parent of the directory cur, the last
// of stack: dirfd (not to be closed) at the top, else "..", checked to be
// the directory the removal came down from.
func climb(cur, dirfd int, stack []frame) (int, error) {
	if len(stack) == 1 {
		return dirfd, nil
	}
	up, err := unix.Openat(cur, "..", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, err
	}
	var got unix.Stat_t
	if err := unix.Fstat(up, &got); err != nil {
		unix.Close(up)
		return -1, err
	}
	if parent := stack[len(stack)-2]; got.Dev != parent.dev || got.Ino != parent.ino {
		unix.Close(up)
		return -1, errors.New("it was moved while being removed")
	}
	return up, nil
}

// enter records the identity of the directory just opened for removal and
// makes sure this process may empty it.
func enter(fd int, f *frame) error {
	f.failed = map[string]bool{}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return err
	}
	f.dev, f.ino = st.Dev, st.Ino
	if st.Mode&0o700 != 0o700 {
		// Ours or root's to unlock; if not, removing entries says why.
		_ = unix.Fchmod(fd, 0o700)
	}
	return nil
}

// clearDir removes what it can in the directory fd, and returns the name of
// a sub-directory to descend into first, if there is one.
func clearDir(fd int, f *frame, pathOf func() string, fail func(string, error)) (string, error) {
	for {
		// Reading from the start after each pass: removing entries while
		// reading may make the directory skip some (Go issue 20841).
		if _, err := unix.Seek(fd, 0, io.SeekStart); err != nil {
			return "", err
		}
		removed := false
		buf := make([]byte, 32<<10)
		for {
			n, err := unix.Getdents(fd, buf)
			if err != nil {
				return "", err
			}
			if n <= 0 {
				break
			}
			var names []string
			_, _, names = unix.ParseDirent(buf[:n], -1, names)
			for _, name := range names {
				if f.failed[name] {
					continue
				}
				err := unix.Unlinkat(fd, name, 0)
				switch {
				case err == nil, errors.Is(err, unix.ENOENT):
					removed = true
				case errors.Is(err, unix.EISDIR):
					return name, nil
				default:
					f.failed[name] = true
					fail(filepath.Join(pathOf(), name), err)
				}
			}
		}
		if !removed {
			return "", nil
		}
	}
}

func removeFailed(path string, err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		err = pe.Err
	}
	return fmt.Errorf("%s: %w", path, err)
}

func joinRemoveErrors(path string, errs []error) error {
	if len(errs) == 0 {
		return nil
	}
	msgs := make([]string, len(errs))
	for i, err := range errs {
		msgs[i] = err.Error()
	}
	return fmt.Errorf("could not remove all of %s: %s — remove it by hand as its owner (e.g. `sudo rm -rf %s`)", path, strings.Join(msgs, "; "), path)
}

// maxWalkDepth bounds how deep treeUsage descends: each level holds a
// descriptor, and a task has no need for deeper trees in its state.
const maxWalkDepth = 256

// entryCharge is what every entry costs besides its blocks, so that millions
// of empty files count too: they use inodes and directory space.
const entryCharge = 512

// treeUsage measures the disk space used under the trusted directory path:
// allocated blocks (a sparse file counts what it really uses) plus
// entryCharge per entry, never following a symlink. It stops early once the
// total passes limit (0: no limit), returning what it counted so far.
func treeUsage(path string, limit int64) (int64, error) {
	fd, err := openBase(path)
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	var total int64
	err = usageOf(fd, path, 0, limit, &total)
	unix.Close(fd)
	if errors.Is(err, errOverLimit) {
		err = nil
	}
	return total, err
}

var errOverLimit = errors.New("over the limit")

func usageOf(fd int, display string, depth int, limit int64, total *int64) error {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return &os.PathError{Op: "stat", Path: display, Err: err}
	}
	*total += st.Blocks*512 + entryCharge
	buf := make([]byte, 32<<10)
	for {
		n, err := unix.Getdents(fd, buf)
		if errors.Is(err, unix.ENOENT) {
			return nil // removed while measured: it holds nothing now
		}
		if err != nil {
			return &os.PathError{Op: "read directory", Path: display, Err: err}
		}
		if n <= 0 {
			return nil
		}
		var names []string
		_, _, names = unix.ParseDirent(buf[:n], -1, names)
		for _, name := range names {
			if err := unix.Fstatat(fd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
				if errors.Is(err, unix.ENOENT) {
					continue // removed while measured
				}
				return &os.PathError{Op: "stat", Path: filepath.Join(display, name), Err: err}
			}
			if st.Mode&unix.S_IFMT != unix.S_IFDIR {
				*total += st.Blocks*512 + entryCharge
			} else {
				path := filepath.Join(display, name)
				if depth+1 >= maxWalkDepth {
					return &unsafeFile{path, fmt.Sprintf("is nested more than %d directories deep; codex-connector does not measure deeper", maxWalkDepth)}
				}
				child, err := unix.Openat(fd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
				if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENOTDIR) || errors.Is(err, unix.ELOOP) {
					continue // replaced while measured; the next round sees it
				}
				if err != nil {
					if errors.Is(err, unix.EACCES) {
						return &unsafeFile{path, "cannot be read (a task locked it); codex-connector cannot measure what it holds"}
					}
					return &os.PathError{Op: "open", Path: path, Err: err}
				}
				err = usageOf(child, path, depth+1, limit, total)
				unix.Close(child)
				if err != nil {
					return err
				}
			}
			if limit > 0 && *total > limit {
				return errOverLimit
			}
		}
	}
}

// lstatBelow returns what rel below the trusted directory base is, without
// following a symlink on the way or at the end.
func lstatBelow(base, display, rel string) (unix.Stat_t, error) {
	var st unix.Stat_t
	parts, _ := splitRel(rel)
	basefd, err := openBase(base)
	if err != nil {
		return st, err
	}
	defer unix.Close(basefd)
	if len(parts) == 0 {
		err := unix.Fstat(basefd, &st)
		return st, err
	}
	dirfd, err := walkDirs(basefd, display, parts[:len(parts)-1])
	if err != nil {
		return st, err
	}
	if dirfd != basefd {
		defer unix.Close(dirfd)
	}
	if err := unix.Fstatat(dirfd, parts[len(parts)-1], &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return st, &os.PathError{Op: "lstat", Path: filepath.Join(display, rel), Err: err}
	}
	return st, nil
}

// readlinkBelow returns the target of the symlink rel below base, as text;
// nothing follows it.
func readlinkBelow(base, display, rel string) (string, error) {
	parts, _ := splitRel(rel)
	if len(parts) == 0 {
		return "", &os.PathError{Op: "readlink", Path: display, Err: unix.EINVAL}
	}
	basefd, err := openBase(base)
	if err != nil {
		return "", err
	}
	defer unix.Close(basefd)
	dirfd, err := walkDirs(basefd, display, parts[:len(parts)-1])
	if err != nil {
		return "", err
	}
	if dirfd != basefd {
		defer unix.Close(dirfd)
	}
	buf := make([]byte, unix.PathMax)
	n, err := unix.Readlinkat(dirfd, parts[len(parts)-1], buf)
	if err != nil {
		return "", &os.PathError{Op: "readlink", Path: filepath.Join(display, rel), Err: err}
	}
	return string(buf[:n]), nil
}

// readDirBelow lists the directory rel below base with what each entry is
// (never what a symlink points at); stop is asked between batches, so that
// a huge directory can be given up on.
func readDirBelow(base, display, rel string, stop func() error) ([]os.FileInfo, error) {
	parts, _ := splitRel(rel)
	basefd, err := openBase(base)
	if err != nil {
		return nil, err
	}
	defer unix.Close(basefd)
	fd, err := walkDirs(basefd, display, parts)
	if err != nil {
		return nil, err
	}
	if fd != basefd {
		defer unix.Close(fd)
	}
	var out []os.FileInfo
	buf := make([]byte, 32<<10)
	for {
		if err := stop(); err != nil {
			return nil, err
		}
		n, err := unix.Getdents(fd, buf)
		if err != nil {
			return nil, &os.PathError{Op: "readdir", Path: filepath.Join(display, rel), Err: err}
		}
		if n <= 0 {
			return out, nil
		}
		var names []string
		_, _, names = unix.ParseDirent(buf[:n], -1, names)
		for _, name := range names {
			var st unix.Stat_t
			if err := unix.Fstatat(fd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
				continue // gone since it was listed
			}
			out = append(out, statInfo{name, st})
		}
	}
}

// statInfo is an os.FileInfo of a stat made relative to a directory
// descriptor.
type statInfo struct {
	name string
	st   unix.Stat_t
}

func (s statInfo) Name() string       { return s.name }
func (s statInfo) Size() int64        { return s.st.Size }
func (s statInfo) ModTime() time.Time { return time.Unix(s.st.Mtim.Unix()) }
func (s statInfo) IsDir() bool        { return s.st.Mode&unix.S_IFMT == unix.S_IFDIR }
func (s statInfo) Sys() any           { return &s.st }
func (s statInfo) Mode() os.FileMode {
	m := os.FileMode(s.st.Mode & 0o777)
	switch s.st.Mode & unix.S_IFMT {
	case unix.S_IFDIR:
		m |= os.ModeDir
	case unix.S_IFLNK:
		m |= os.ModeSymlink
	case unix.S_IFIFO:
		m |= os.ModeNamedPipe
	case unix.S_IFSOCK:
		m |= os.ModeSocket
	case unix.S_IFCHR:
		m |= os.ModeDevice | os.ModeCharDevice
	case unix.S_IFBLK:
		m |= os.ModeDevice
	}
	if s.st.Mode&unix.S_ISUID != 0 {
		m |= os.ModeSetuid
	}
	if s.st.Mode&unix.S_ISGID != 0 {
		m |= os.ModeSetgid
	}
	if s.st.Mode&unix.S_ISVTX != 0 {
		m |= os.ModeSticky
	}
	return m
}
