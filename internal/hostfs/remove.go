package hostfs

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// RemoveTree removes path and everything under it without following a
// symlink; a missing path is success. The directory holding path is trusted.
func RemoveTree(path string) error {
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

// RemoveBelow removes rel below the trusted directory base, and everything
// under it, without following a symlink on the way or inside.
func RemoveBelow(base, rel string) error {
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
