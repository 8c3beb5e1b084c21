package hostfs

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// MaxWalkDepth bounds how deep TreeUsage descends: each level holds a
// descriptor, and a task has no need for deeper trees in its state.
const MaxWalkDepth = 256

// EntryCharge is what every entry costs besides its blocks, so that millions
// of empty files count too: they use inodes and directory space.
const EntryCharge = 512

// TreeUsage measures the disk space used under the trusted directory path:
// allocated blocks (a sparse file counts what it really uses) plus
// EntryCharge per entry, never following a symlink. It stops early once the
// total passes limit (0: no limit), returning what it counted so far.
func TreeUsage(path string, limit int64) (int64, error) {
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
	*total += st.Blocks*512 + EntryCharge
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
				*total += st.Blocks*512 + EntryCharge
			} else {
				path := filepath.Join(display, name)
				if depth+1 >= MaxWalkDepth {
					return &UnsafeFile{path, fmt.Sprintf("is nested more than %d directories deep; codex-connector does not measure deeper", MaxWalkDepth)}
				}
				child, err := unix.Openat(fd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
				if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENOTDIR) || errors.Is(err, unix.ELOOP) {
					continue // replaced while measured; the next round sees it
				}
				if err != nil {
					if errors.Is(err, unix.EACCES) {
						return &UnsafeFile{path, "cannot be read (a task locked it); codex-connector cannot measure what it holds"}
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

// HumanSize says n bytes for a reader: whole GiB as such ("4 GiB"), other
// sizes past a GiB to a tenth, then MiB; below a MiB, whole KiB as such,
// else the bytes exactly (a limit of 4000 bytes is said as it was set).
func HumanSize(n int64) string {
	switch {
	case n >= 1<<30 && n%(1<<30) == 0:
		return fmt.Sprintf("%d GiB", n>>30)
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%d MiB", n>>20)
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%d KiB", n>>10)
	}
	return fmt.Sprintf("%d bytes", n)
}
