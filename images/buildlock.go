package images

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"time"
)

// Builds of one image are serialised across the processes of a user on
// this machine (two servers, the command line, two test binaries), not
// only within one: two builds of one tag at once make two images, and the
// one a task was recorded with is not the one the tag names afterwards.
// The lock is a flock on a file in a directory of the user's own, so no
// other user can hold it or plant it; builds of different users stay
// correct without it, since each builds under a tag of its own and takes
// what the final tag names.

// buildLockPoll is how often a waiting build tries the lock again: flock
// cannot be interrupted by a context.
const buildLockPoll = 100 * time.Millisecond

// LockBuild takes the machine-wide lock of building ref for this user,
// waiting until it is free or ctx ends. The lock goes with the process, so
// a build that dies leaves nothing held. Task images and dev container
// images take it by their tag.
func LockBuild(ctx context.Context, ref string) (unlock func(), err error) {
	dir, err := buildLockDir()
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256([]byte(ref))
	path := filepath.Join(dir, hex.EncodeToString(sum[:12])+".lock")
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|syscall.O_NOFOLLOW|syscall.O_CLOEXEC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open the build lock of %s: %w — remove %s if it is not a file of yours", ref, err, path)
	}
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return func() { _ = f.Close() }, nil // closing releases the lock
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) && !errors.Is(err, syscall.EINTR) {
			f.Close()
			return nil, fmt.Errorf("lock the build of %s (%s): %w", ref, path, err)
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, fmt.Errorf("wait for another build of %s to end: %w", ref, context.Cause(ctx))
		case <-time.After(buildLockPoll):
		}
	}
}

// buildLockDir is the user's own lock directory under the temporary
// directory: made 0700 when missing, refused when it is a link or another
// user's (a directory planted in a shared /tmp).
func buildLockDir() (string, error) {
	uid := os.Getuid()
	dir := filepath.Join(os.TempDir(), fmt.Sprintf("codex-connector-%d-locks", uid))
	if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
		return "", fmt.Errorf("make the build lock directory %s: %w", dir, err)
	}
	fi, err := os.Lstat(dir)
	if err != nil {
		return "", fmt.Errorf("check the build lock directory %s: %w", dir, err)
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !fi.IsDir() || !ok || int(st.Uid) != uid || fi.Mode().Perm()&0o022 != 0 {
		return "", fmt.Errorf("the build lock directory %s is not a directory of yours that only you can write — remove it, and codex-connector makes it anew", dir)
	}
	return dir, nil
}

// buildingTag is a tag of this build's own for the image before it gets its
// label: a shared one would let one build remove, or build on, another's.
func buildingTag(ref string) string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return ref + "-building-" + hex.EncodeToString(b)
}
