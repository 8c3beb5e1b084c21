package hostfs

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// WriteFileAtomic writes data to path through a temporary file beside it,
// synced and renamed into place, so a reader sees the old file or the new
// one, never a half-written one.
func WriteFileAtomic(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	_, err = tmp.Write(data)
	if err == nil {
		err = tmp.Sync()
	}
	if closeErr := tmp.Close(); err == nil {
		err = closeErr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		os.Remove(tmp.Name())
	}
	return err
}

// RemoveTemps removes the temporary files WriteFileAtomic makes beside
// each of paths (PATH.tmp-*), which must all be in one directory.
func RemoveTemps(paths ...string) error {
	if len(paths) == 0 {
		return nil
	}
	dir := filepath.Dir(paths[0])
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("remove temporary files: %w", err)
	}
	var errs []error
	for _, e := range entries {
		for _, p := range paths {
			if e.Type().IsRegular() && strings.HasPrefix(e.Name(), filepath.Base(p)+".tmp-") {
				if err := os.Remove(filepath.Join(dir, e.Name())); err != nil && !errors.Is(err, os.ErrNotExist) {
					errs = append(errs, fmt.Errorf("remove temporary file: %w", err))
				}
			}
		}
	}
	return errors.Join(errs...)
}
