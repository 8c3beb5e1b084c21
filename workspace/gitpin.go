package workspace

import (
	"fmt"
	"path/filepath"

	"github.com/codex-connector/codex-connector/internal/hostfs"
)

// A task at danger-full-access may write .git, and so make it a "gitdir:"
// file that names any directory of the host: the repository of another
// user, or one only root may read. The server runs as root, or as a user
// who can read more than the task can, so a scan after the run that
// followed .git afresh would put that repository's file names into the
// task's record. So the git directories are pinned when the run is
// launched, by device and inode, and the scans after the run read only
// those; a .git that leads elsewhere by then is reported, not followed.

// gitPin is the identity of a work tree's git directories at launch. It is
// kept with what else the launcher measured (prerun.go), so that a server
// that takes the task over checks against the same pin.
type gitPin struct {
	Dirs []pinnedDir `json:"dirs"`
}

// pinnedDir is one git directory: its path when pinned, for messages, and
// what identifies it.
type pinnedDir struct {
	Path string `json:"path"`
	Dev  uint64 `json:"dev"`
	Ino  uint64 `json:"ino"`
}

// pinGitDirs pins the git directories of the work tree at root.
func pinGitDirs(root string) (*gitPin, error) {
	dirs, err := hostfs.GitDirsOf(root)
	if err != nil {
		return nil, err
	}
	pin := &gitPin{}
	for i, d := range dirs.List() {
		pin.Dirs = append(pin.Dirs, pinnedDir{Path: d, Dev: uint64(dirs.Stats[i].Dev), Ino: dirs.Stats[i].Ino})
	}
	return pin, nil
}

// pinnedGitDirs returns the git directories of the work tree at root if
// they are still those pin holds, or an error that says where .git leads
// now and that it was not followed. A nil pin (none could be taken at
// launch) follows nothing.
func pinnedGitDirs(root string, pin *gitPin) (hostfs.GitDirs, error) {
	if pin == nil || len(pin.Dirs) == 0 {
		return hostfs.GitDirs{}, fmt.Errorf("the git directory of %s was not pinned when the task was launched, so codex-connector does not follow .git now — review .git and the work tree before running git there", root)
	}
	dirs, err := hostfs.GitDirsOf(root)
	if err != nil {
		return hostfs.GitDirs{}, err
	}
	now := dirs.List()
	for i, d := range now {
		if i >= len(pin.Dirs) {
			return hostfs.GitDirs{}, &hostfs.UnsafeFile{Path: filepath.Join(root, ".git"), Why: fmt.Sprintf("now leads to the git directory %s as well, which it did not when the task was launched; codex-connector did not read it — the task rewrote .git: restore it before running git there", d)}
		}
		if st := dirs.Stats[i]; uint64(st.Dev) != pin.Dirs[i].Dev || st.Ino != pin.Dirs[i].Ino {
			return hostfs.GitDirs{}, &hostfs.UnsafeFile{Path: filepath.Join(root, ".git"), Why: fmt.Sprintf("now leads to %s, not to the git directory %s it led to when the task was launched; codex-connector did not read it — the task rewrote .git: restore it before running git there", d, pin.Dirs[i].Path)}
		}
	}
	if len(now) < len(pin.Dirs) {
		return hostfs.GitDirs{}, &hostfs.UnsafeFile{Path: filepath.Join(root, ".git"), Why: fmt.Sprintf("no longer leads to the git directory %s it led to when the task was launched — the task rewrote .git: restore it before running git there", pin.Dirs[len(now)].Path)}
	}
	return dirs, nil
}
