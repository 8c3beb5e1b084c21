package hostfs

import (
	"fmt"
	"os"
	"path/filepath"

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
	parts, err := splitRel(rel)
	if err != nil || len(parts) == 0 {
		return nil, fmt.Errorf("write %s below %s: not a file's path", rel, base)
	}
	display := filepath.Join(base, rel)
	root, err := openBase(base)
	if err != nil {
		return nil, err
	}
	defer unix.Close(root)
	dir, err := walkDirs(root, base, parts[:len(parts)-1])
	if err != nil {
		return nil, err
	}
	if dir != root {
		defer unix.Close(dir)
	}
	name := parts[len(parts)-1]
	if err := removeAt(dir, name, display); err != nil {
		return nil, err
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
