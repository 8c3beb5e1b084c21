package docker

import (
	"context"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/codex-connector/codex-connector/backend"
	"github.com/codex-connector/codex-connector/internal/hostfs"
	"golang.org/x/sys/unix"
)

// Files of a run's state: the engine shares the server's filesystem, so a
// bind's source is read where it is, through hostfs.
func (b *Backend) Files(state backend.Mount) (backend.Files, error) {
	if state.Kind != backend.Bind {
		return nil, fmt.Errorf("read the state of a run from volume %s: this backend keeps a run's state in a directory of the server's, bound into the run", state.Source)
	}
	// Writes go below the parent, and Remove("") removes base: only a
	// clean absolute path below / names a directory, not where the server
	// happens to run.
	if !filepath.IsAbs(state.Source) || filepath.Clean(state.Source) != state.Source || state.Source == "/" {
		return nil, fmt.Errorf("read the state of a run at %q: not a clean absolute path of a directory below /", state.Source)
	}
	return sharedFiles{base: state.Source, display: state.Target, chown: os.Geteuid() == 0}, nil
}

// sharedFiles read below base, a directory of the server's; display is
// what base is called in errors (the path the task knows). They are
// written below base's parent, which only the server writes: the run owns
// base itself, and may have locked it.
type sharedFiles struct {
	base, display string
	// chown: the server runs as root, so what it writes is given to the
	// run's user; otherwise the server's own uid is the run's.
	chown bool
}

// checkRel refuses a path that does not stay below the state, as the
// callers' constants and names listed by ReadDir do: an absolute path, or
// one with a "." or ".." component. "" is the state itself.
func checkRel(rel string) error {
	if rel == "" {
		return nil
	}
	if strings.HasPrefix(rel, "/") {
		return fmt.Errorf("%q is not a path below a run's state", rel)
	}
	for _, part := range strings.Split(rel, "/") {
		if part == "" || part == "." || part == ".." {
			return fmt.Errorf("%q is not a path below a run's state", rel)
		}
	}
	return nil
}

// below is rel as a path below base's parent.
func (f sharedFiles) below(rel string) (parent, path string, err error) {
	if err := checkRel(rel); err != nil {
		return "", "", err
	}
	return filepath.Dir(f.base), filepath.Join(filepath.Base(f.base), rel), nil
}

func (f sharedFiles) MakeDir(_ context.Context, rel string, owner backend.Owner) error {
	parent, path, err := f.below(rel)
	if err != nil {
		return err
	}
	return hostfs.EnsureDir(parent, path, 0o700, f.chown, owner.UID, owner.GID)
}

func (f sharedFiles) WriteFile(_ context.Context, rel string, data []byte, owner backend.Owner) error {
	parent, path, err := f.below(rel)
	if err != nil {
		return err
	}
	return hostfs.WriteNewBelow(parent, path, data, 0o600, f.chown, owner.UID, owner.GID)
}

func (f sharedFiles) CopyFrom(ctx context.Context, src backend.Files, rel string, owner backend.Owner, limit int64) (int64, error) {
	parent, path, err := f.below(rel)
	if err != nil || rel == "" {
		return 0, fmt.Errorf("copy %q into a run's state: not a file's path", rel)
	}
	// The directory that will hold the copy, the state itself included,
	// made real; the copy and its rename then follow nothing on the way.
	if err := hostfs.EnsureDir(parent, filepath.Dir(path), 0o700, f.chown, owner.UID, owner.GID); err != nil {
		return 0, err
	}
	partial := path + ".partial"
	out, err := hostfs.CreateBelow(parent, partial, 0o600, f.chown, owner.UID, owner.GID)
	if err != nil {
		return 0, err
	}
	size, err := src.CopyFile(ctx, rel, out, limit)
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = hostfs.RenameBelow(parent, partial, filepath.Base(path))
	}
	if err != nil {
		_ = hostfs.RemoveBelow(parent, partial)
		return 0, err
	}
	return size, nil
}

func (f sharedFiles) Remove(_ context.Context, rel string) error {
	if rel == "" {
		return hostfs.RemoveTree(f.base)
	}
	parent, path, err := f.below(rel)
	if err != nil {
		return err
	}
	return hostfs.RemoveBelow(parent, path)
}

func (f sharedFiles) Stat(_ context.Context, rel string) (backend.FileInfo, error) {
	var st unix.Stat_t
	err := checkRel(rel)
	if err != nil {
		return backend.FileInfo{}, err
	}
	if rel != "" && !strings.Contains(rel, "/") {
		// One name in a directory the server made: a plain lstat follows
		// nothing, and answers even when the task took the read bit off
		// its state directory (an open of it, as below, would not).
		err = unix.Lstat(filepath.Join(f.base, rel), &st)
		if err != nil {
			err = &os.PathError{Op: "lstat", Path: filepath.Join(f.display, rel), Err: err}
		}
	} else {
		st, err = hostfs.LstatBelow(f.base, f.display, rel)
	}
	if err != nil {
		return backend.FileInfo{}, err
	}
	return infoOf(st), nil
}

func (f sharedFiles) ReadFile(_ context.Context, rel string, max int64) ([]byte, int64, error) {
	return hostfs.ReadRegular(f.base, f.display, rel, max)
}

func (f sharedFiles) Open(_ context.Context, rel string, offset int64) (io.ReadCloser, backend.FileInfo, error) {
	if offset < 0 {
		return nil, backend.FileInfo{}, fmt.Errorf("read %s from byte %d: not an offset", filepath.Join(f.display, rel), offset)
	}
	file, st, err := hostfs.OpenRegular(f.base, f.display, rel)
	if err != nil {
		return nil, backend.FileInfo{}, err
	}
	if offset > 0 {
		if _, err := file.Seek(offset, io.SeekStart); err != nil {
			file.Close()
			return nil, backend.FileInfo{}, fmt.Errorf("read %s from byte %d: %w", file.Name(), offset, err)
		}
	}
	return file, infoOf(st), nil
}

func (f sharedFiles) CopyFile(_ context.Context, rel string, out *os.File, limit int64) (int64, error) {
	in, st, err := hostfs.OpenRegular(f.base, f.display, rel)
	if err != nil {
		return 0, err
	}
	defer in.Close()
	// CopySparse's errors name the file they are about.
	_, err = hostfs.CopySparse(out, in, st.Size, limit)
	return st.Size, err
}

func (f sharedFiles) ReadDir(_ context.Context, rel string, stop func() error) ([]fs.FileInfo, error) {
	return hostfs.ReadDirBelow(f.base, f.display, rel, stop)
}

func (f sharedFiles) Usage(_ context.Context, limit int64) (int64, error) {
	return hostfs.TreeUsage(f.base, limit)
}

// infoOf is what a stat says, as Files say it.
func infoOf(st unix.Stat_t) backend.FileInfo {
	return backend.FileInfo{Mode: hostfs.ModeOf(st), Size: st.Size, DiskBytes: st.Blocks * 512}
}
