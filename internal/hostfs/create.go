package hostfs

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// WriteNewBelow writes data as the file rel below the trusted directory
// base, replacing whatever a task left there (a symlink, a pipe, a
// directory) without following it: the file is made anew, exclusively.
func WriteNewBelow(base, rel string, data []byte, perm uint32, chown bool, uid, gid int) error {
	f, err := CreateBelow(base, rel, perm, chown, uid, gid)
	if err != nil {
		return err
	}
	defer f.Close()
	if _, err := f.Write(data); err != nil {
		return err
	}
	return f.Close()
}

// CreateBelow creates rel below base afresh for writing: whatever is in its
// place is removed first, never followed, and nothing on the way is
// followed either.
func CreateBelow(base, rel string, perm uint32, chown bool, uid, gid int) (*os.File, error) {
	return createBelow(base, rel, perm, chown, uid, gid, true)
}

// WriteExclusiveBelow writes data as the new file rel below base, and fails
// (os.ErrExist) if anything is there already: a lock file of git's, which
// is another process's and must not be taken.
func WriteExclusiveBelow(base, rel string, data []byte, perm uint32, chown bool, uid, gid int) error {
	f, err := createBelow(base, rel, perm, chown, uid, gid, false)
	if err != nil {
		return err
	}
	defer f.Close()
	if _, err := f.Write(data); err != nil {
		return err
	}
	return f.Close()
}

func createBelow(base, rel string, perm uint32, chown bool, uid, gid int, replace bool) (*os.File, error) {
	parts, err := splitRel(rel)
	if err != nil || len(parts) == 0 {
		return nil, fmt.Errorf("write %s below %s: not a file's path", rel, base)
	}
	display := filepath.Join(base, rel)
	dir, done, err := parentBelow(base, parts)
	if err != nil {
		return nil, err
	}
	defer done()
	name := parts[len(parts)-1]
	if replace {
		if err := removeAt(dir, name, display); err != nil {
			return nil, err
		}
	}
	fd, err := unix.Openat(dir, name, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, perm)
	if err != nil {
		return nil, &os.PathError{Op: "create", Path: display, Err: err}
	}
	f := os.NewFile(uintptr(fd), display)
	if chown {
		if err := f.Chown(uid, gid); err != nil {
			f.Close()
			return nil, err
		}
	}
	return f, nil
}

// RenameBelow renames rel below the trusted directory base to name, in the
// same directory, following nothing on the way: the directory is the one
// walked to, not a path looked up again.
func RenameBelow(base, rel, name string) error {
	parts, err := splitRel(rel)
	if err != nil || len(parts) == 0 || name == "" || strings.ContainsRune(name, filepath.Separator) || name == "." || name == ".." {
		return fmt.Errorf("rename %s below %s to %q: not a file's path and name", rel, base, name)
	}
	dir, done, err := parentBelow(base, parts)
	if err != nil {
		return err
	}
	defer done()
	if err := unix.Renameat(dir, parts[len(parts)-1], dir, name); err != nil {
		return &os.PathError{Op: "rename", Path: filepath.Join(base, rel), Err: err}
	}
	return nil
}

// SymlinkBelow makes rel below the trusted directory base a symlink to
// target, replacing whatever is there and following nothing on the way;
// the link belongs to uid:gid when chown is set.
func SymlinkBelow(base, rel, target string, chown bool, uid, gid int) error {
	parts, err := splitRel(rel)
	if err != nil || len(parts) == 0 {
		return fmt.Errorf("link %s below %s: not a file's path", rel, base)
	}
	display := filepath.Join(base, rel)
	dir, done, err := parentBelow(base, parts)
	if err != nil {
		return err
	}
	defer done()
	name := parts[len(parts)-1]
	if err := removeAt(dir, name, display); err != nil {
		return err
	}
	if err := unix.Symlinkat(target, dir, name); err != nil {
		return &os.PathError{Op: "symlink", Path: display, Err: err}
	}
	if chown {
		if err := unix.Fchownat(dir, name, uid, gid, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return &os.PathError{Op: "chown", Path: display, Err: err}
		}
	}
	return nil
}
