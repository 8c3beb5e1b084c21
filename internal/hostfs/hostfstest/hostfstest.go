// Package hostfstest makes what a hostile task leaves on the host (symlinks
// out, named pipes, a directory outside that must stay intact) for the tests
// of every package that reads or removes a task's files.
package hostfstest

import (
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// Must fails the test on err.
func Must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// Symlink makes link point at target.
func Symlink(t testing.TB, target, link string) {
	t.Helper()
	Must(t, os.Symlink(target, link))
}

// Mkfifo makes a named pipe at path: a reader that opens it blocks.
func Mkfifo(t testing.TB, path string) {
	t.Helper()
	Must(t, syscall.Mkfifo(path, 0o644))
}

// Exists says whether something is at path, following a symlink.
func Exists(path string) bool {
	_, err := os.Stat(path)
	return !errors.Is(err, os.ErrNotExist)
}

// Outside makes a directory outside any task's, holding the file keep, as
// the target of a task's symlinks.
func Outside(t testing.TB) string {
	t.Helper()
	outside := t.TempDir()
	Must(t, os.WriteFile(filepath.Join(outside, "keep"), []byte("keep me"), 0o600))
	return outside
}

// OutsideIntact fails the test when the file Outside made was touched.
func OutsideIntact(t testing.TB, outside string) {
	t.Helper()
	if data, err := os.ReadFile(filepath.Join(outside, "keep")); err != nil || string(data) != "keep me" {
		t.Fatalf("the target of a task's symlink was touched: %q %v", data, err)
	}
}
