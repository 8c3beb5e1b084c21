package backend

import (
	"context"
	"io"
	"io/fs"
	"os"
)

// Files are a run's state as the scheduler reads it: the directory that
// holds Codex's home and its last message. The task wrote what is there,
// so every read is of a hostile tree: no link is followed on the way or at
// the end, only regular files are read (anything else is an error wrapping
// a *hostfs.UnsafeFile), a file is read up to a cap, and a directory is
// listed in batches that the caller may give up on. A file that is not
// there is an error wrapping fs.ErrNotExist.
//
// The state outlives the run: a reply copies the session of a task whose
// container is gone, and a run removed by hand still leaves its result.
// So Files are asked of the backend for the state's mount, not of a
// handle.
type Files interface {
	// Stat says what rel is, without following it.
	Stat(ctx context.Context, rel string) (FileInfo, error)
	// ReadFile reads at most max bytes of the regular file rel, and says
	// how large the file is: a larger one is cut, and the caller says so.
	ReadFile(ctx context.Context, rel string, max int64) (data []byte, size int64, err error)
	// Open opens the regular file rel for reading from offset.
	Open(ctx context.Context, rel string, offset int64) (io.ReadCloser, FileInfo, error)
	// CopyFile copies the regular file rel into out, a new empty file of
	// the server's, keeping its holes: what a sparse file claims costs
	// nothing. Past limit bytes of data it stops with an error wrapping
	// hostfs.ErrTooMuchData. It returns the file's size.
	CopyFile(ctx context.Context, rel string, out *os.File, limit int64) (int64, error)
	// ReadDir lists the directory rel, with what each entry is (never what
	// a link points at); stop, if not nil, is asked between batches.
	ReadDir(ctx context.Context, rel string, stop func() error) ([]fs.FileInfo, error)
	// Usage is what the whole state uses on disk (allocated blocks, not
	// what sparse files claim), measured until it passes limit.
	Usage(ctx context.Context, limit int64) (int64, error)

	// The scheduler prepares the state before the run, and removes it
	// with the task. What an earlier run left in a path's place (a link,
	// a pipe, a locked directory) is replaced, never followed.

	// MakeDir makes the directory rel ("" the state itself) and every one
	// on the way, mode 0700, owned by owner.
	MakeDir(ctx context.Context, rel string, owner Owner) error
	// WriteFile writes data as the new file rel, mode 0600, owned by
	// owner.
	WriteFile(ctx context.Context, rel string, data []byte, owner Owner) error
	// CopyFrom copies the regular file rel of src to rel here, with the
	// directories on the way, owned by owner, as src.CopyFile copies
	// (holes kept, limit held), under a temporary name renamed into
	// place: a copy that fails leaves none. It returns the file's size.
	CopyFrom(ctx context.Context, src Files, rel string, owner Owner, limit int64) (int64, error)
	// Remove removes rel ("" the whole state) and everything below it;
	// one that is not there is success.
	Remove(ctx context.Context, rel string) error
}

// Owner is whose a run's files are: the uid and gid the run writes as.
type Owner struct{ UID, GID int }

// FileInfo is what Files say of one file.
type FileInfo struct {
	Mode fs.FileMode
	// Size is the file's length; DiskBytes what it holds on disk.
	Size      int64
	DiskBytes int64
}
