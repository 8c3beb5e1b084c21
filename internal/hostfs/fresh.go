package hostfs

import (
	"io"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// FreshDir is a directory the server has just made and no task has had in
// its hands yet (a branch workspace being checked out): what is written in
// it is written relative to its descriptor, with O_EXCL and O_NOFOLLOW, so
// that a checkout of thousands of files opens each directory once instead
// of walking every path from the root.
type FreshDir struct {
	fd   int
	path string
}

// OpenFresh opens the directory at path, which the server made.
func OpenFresh(path string) (*FreshDir, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: path, Err: err}
	}
	return &FreshDir{fd: fd, path: path}, nil
}

// Fd is the directory's descriptor.
func (d *FreshDir) Fd() int { return d.fd }

// Close closes the directory.
func (d *FreshDir) Close() error { return unix.Close(d.fd) }

// Mkdir makes the directory name in d, owned by uid:gid when chown is
// set, and opens it.
func (d *FreshDir) Mkdir(name string, perm uint32, chown bool, uid, gid int) (*FreshDir, error) {
	path := filepath.Join(d.path, name)
	if err := unix.Mkdirat(d.fd, name, perm); err != nil {
		return nil, &os.PathError{Op: "mkdir", Path: path, Err: err}
	}
	fd, err := unix.Openat(d.fd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: path, Err: err}
	}
	if chown {
		if err := unix.Fchown(fd, uid, gid); err != nil {
			unix.Close(fd)
			return nil, &os.PathError{Op: "chown", Path: path, Err: err}
		}
	}
	return &FreshDir{fd: fd, path: path}, nil
}

// WriteFile makes the file name in d with the content of r and returns its
// stat once written.
func (d *FreshDir) WriteFile(name string, r io.Reader, perm uint32, chown bool, uid, gid int) (unix.Stat_t, error) {
	var st unix.Stat_t
	path := filepath.Join(d.path, name)
	fd, err := unix.Openat(d.fd, name, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, perm)
	if err != nil {
		return st, &os.PathError{Op: "create", Path: path, Err: err}
	}
	f := os.NewFile(uintptr(fd), path)
	defer f.Close()
	if chown {
		if err := f.Chown(uid, gid); err != nil {
			return st, err
		}
	}
	if _, err := io.Copy(f, r); err != nil {
		return st, err
	}
	if err := unix.Fstat(fd, &st); err != nil {
		return st, &os.PathError{Op: "stat", Path: path, Err: err}
	}
	return st, f.Close()
}

// Symlink makes the symlink name in d to target and returns its lstat.
func (d *FreshDir) Symlink(name, target string, chown bool, uid, gid int) (unix.Stat_t, error) {
	var st unix.Stat_t
	path := filepath.Join(d.path, name)
	if err := unix.Symlinkat(target, d.fd, name); err != nil {
		return st, &os.PathError{Op: "symlink", Path: path, Err: err}
	}
	if chown {
		if err := unix.Fchownat(d.fd, name, uid, gid, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return st, &os.PathError{Op: "chown", Path: path, Err: err}
		}
	}
	if err := unix.Fstatat(d.fd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return st, &os.PathError{Op: "stat", Path: path, Err: err}
	}
	return st, nil
}
