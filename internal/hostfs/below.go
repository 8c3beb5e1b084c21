package hostfs

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// UnsafeFile says why the server refused a file a task made.
type UnsafeFile struct {
	Path string // as the user knows it, relative to the task's directory
	Why  string
}

func (e *UnsafeFile) Error() string { return e.Path + " " + e.Why }

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

// parentBelow opens, following nothing, the directory that holds the last
// of parts below base, and returns it with the function that closes what
// was opened.
func parentBelow(base string, parts []string) (int, func(), error) {
	root, err := openBase(base)
	if err != nil {
		return -1, nil, err
	}
	dir, err := walkDirs(root, base, parts[:len(parts)-1])
	if err != nil {
		unix.Close(root)
		return -1, nil, err
	}
	return dir, func() {
		if dir != root {
			unix.Close(dir)
		}
		unix.Close(root)
	}, nil
}

// componentError turns the error of opening a path component into one that
// says what the component is when a task made it something unexpected.
func componentError(dirfd int, display string, parts []string, err error) error {
	path := filepath.Join(append([]string{display}, parts...)...)
	if errors.Is(err, unix.ELOOP) || errors.Is(err, unix.ENOTDIR) {
		var st unix.Stat_t
		if unix.Fstatat(dirfd, filepath.Join(parts...), &st, unix.AT_SYMLINK_NOFOLLOW) == nil {
			return &UnsafeFile{path, "is " + kindOf(st.Mode) + " where a directory belongs; codex-connector does not follow it"}
		}
		return &UnsafeFile{path, "is a symbolic link or not a directory; codex-connector does not follow it"}
	}
	return &os.PathError{Op: "open", Path: path, Err: err}
}

// OpenRegular opens the regular file rel below the trusted directory base
// for reading. No component is followed if it is a symlink, a named pipe
// cannot block the open, and anything but a regular file is refused with
// what it is. display names base in errors.
func OpenRegular(base, display, rel string) (*os.File, unix.Stat_t, error) {
	var st unix.Stat_t
	parts, _ := splitRel(rel)
	if len(parts) == 0 {
		return nil, st, &UnsafeFile{display, "is a directory, not a file"}
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
		return nil, st, &UnsafeFile{path, "is " + kindOf(st.Mode) + ", not a regular file; codex-connector does not read it"}
	}
	fd, err := unix.Openat(dirfd, name, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		if errors.Is(err, unix.ELOOP) {
			return nil, st, &UnsafeFile{path, "is a symbolic link; codex-connector does not follow it"}
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
		return nil, st, &UnsafeFile{path, "is " + kindOf(st.Mode) + ", not a regular file; codex-connector does not read it"}
	}
	return os.NewFile(uintptr(fd), path), st, nil
}

// ReadRegular reads at most max bytes of the regular file rel below base,
// and returns them with the file's size: a larger file is cut, and the
// caller says so.
func ReadRegular(base, display, rel string, max int64) ([]byte, int64, error) {
	f, st, err := OpenRegular(base, display, rel)
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

// LstatBelow returns what rel below the trusted directory base is, without
// following a symlink on the way or at the end.
func LstatBelow(base, display, rel string) (unix.Stat_t, error) {
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

// ReadlinkBelow returns the target of the symlink rel below base, as text;
// nothing follows it.
func ReadlinkBelow(base, display, rel string) (string, error) {
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

// ReadDirBelow lists the directory rel below base with what each entry is
// (never what a symlink points at); stop, if not nil, is asked between
// batches, so that a huge directory can be given up on.
func ReadDirBelow(base, display, rel string, stop func() error) ([]os.FileInfo, error) {
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
	return ReadDirFd(fd, filepath.Join(display, rel), stop)
}

// ReadDirFd lists the open directory fd, shown as display, as
// ReadDirBelow does: for a walk that holds each directory open.
func ReadDirFd(fd int, display string, stop func() error) ([]os.FileInfo, error) {
	var out []os.FileInfo
	buf := make([]byte, 32<<10)
	for {
		if stop != nil {
			if err := stop(); err != nil {
				return nil, err
			}
		}
		n, err := unix.Getdents(fd, buf)
		if err != nil {
			return nil, &os.PathError{Op: "readdir", Path: display, Err: err}
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

func (s statInfo) Name() string { return s.name }

func (s statInfo) Size() int64 { return s.st.Size }

func (s statInfo) ModTime() time.Time { return time.Unix(s.st.Mtim.Unix()) }

func (s statInfo) IsDir() bool { return s.st.Mode&unix.S_IFMT == unix.S_IFDIR }

func (s statInfo) Sys() any { return &s.st }

func (s statInfo) Mode() os.FileMode { return ModeOf(s.st) }

// ModeOf is what a stat says a file is, as os.FileMode: its type and its
// permission, setuid, setgid and sticky bits.
func ModeOf(st unix.Stat_t) os.FileMode {
	m := os.FileMode(st.Mode & 0o777)
	switch st.Mode & unix.S_IFMT {
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
	if st.Mode&unix.S_ISUID != 0 {
		m |= os.ModeSetuid
	}
	if st.Mode&unix.S_ISGID != 0 {
		m |= os.ModeSetgid
	}
	if st.Mode&unix.S_ISVTX != 0 {
		m |= os.ModeSticky
	}
	return m
}
