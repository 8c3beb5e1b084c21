package hostfs

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"

	"golang.org/x/sys/unix"
)

// EnsureDir makes rel below the trusted directory base a real directory with
// mode perm, owned by uid:gid when chown is set, whatever a task left there:
// a symlink, a file or a pipe in its place is removed (never followed), and
// a directory the task locked gets its mode back. Every directory on the way
// is handled the same.
func EnsureDir(base, rel string, perm uint32, chown bool, uid, gid int) error {
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

// MkdirBelow makes the directories of rel below base that are missing,
// with mode perm, owned by uid:gid when chown is set, and follows nothing
// on the way. Unlike EnsureDir it leaves what is there as it is: it is for
// the user's own directories (a repository's .git), where a directory's
// mode and owner are the user's, and anything but a directory on the way
// is an error.
func MkdirBelow(base, rel string, perm uint32, chown bool, uid, gid int) error {
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
		made := false
		if err := unix.Mkdirat(cur, name, perm); err == nil {
			made = true
		} else if !errors.Is(err, unix.EEXIST) {
			return &os.PathError{Op: "mkdir", Path: display, Err: err}
		}
		fd, err := unix.Openat(cur, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			return componentError(cur, display, []string{name}, err)
		}
		unix.Close(cur)
		cur = fd
		if made && chown {
			if err := unix.Fchown(cur, uid, gid); err != nil {
				return &os.PathError{Op: "chown", Path: display, Err: err}
			}
		}
	}
	return nil
}

// ChmodBelow sets the mode of rel below base, following nothing.
func ChmodBelow(base, rel string, mode uint32) error {
	parts, err := splitRel(rel)
	if err != nil || len(parts) == 0 {
		return fmt.Errorf("chmod %s below %s: not a file's path", rel, base)
	}
	dir, done, err := parentBelow(base, parts)
	if err != nil {
		return err
	}
	defer done()
	if err := chmodNoFollow(dir, parts[len(parts)-1], mode); err != nil {
		return &os.PathError{Op: "chmod", Path: filepath.Join(base, rel), Err: err}
	}
	return nil
}

// RmdirBelow removes the empty directory rel below base, following
// nothing on the way: a directory that holds anything stays (ENOTEMPTY).
func RmdirBelow(base, rel string) error {
	parts, _ := splitRel(rel)
	if len(parts) == 0 {
		return errors.New("rmdir: refusing to remove the base directory itself")
	}
	dir, done, err := parentBelow(base, parts)
	if err != nil {
		return err
	}
	defer done()
	if err := unix.Unlinkat(dir, parts[len(parts)-1], unix.AT_REMOVEDIR); err != nil {
		return &os.PathError{Op: "rmdir", Path: filepath.Join(base, rel), Err: err}
	}
	return nil
}
