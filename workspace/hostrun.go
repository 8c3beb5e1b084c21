package workspace

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Host-run files: a task that may write the work tree can change files that
// tools on the host run or obey without asking — make reads the Makefile,
// direnv the .envrc, npm the scripts of package.json, an editor its
// workspace settings, CI its workflows, git its attributes and any git
// directory it finds. The sandbox cannot tell such a change from honest
// work, so the result lists them apart, for the caller to review before
// running anything. Which files they are: hostrun_rules.go.

// Bounds of the scan: it runs twice per task, before and after, and must
// not make a task on a huge tree late.
const (
	maxHostRunEntries = 500_000
	hostRunScanTime   = 10 * time.Second
)

// hostRunState fingerprints the host-run files of a work tree. The
// fingerprint comes from lstat alone (inode, mode, size, modification and
// change times): nothing a task made is opened, and a change time cannot be
// set back from inside the container.
type hostRunState struct {
	files map[string]string
	// cut says the scan stopped at its bounds or could not read a
	// directory (unreadable names the first): what it did not reach is not
	// compared.
	cut        bool
	unreadable string
	// gitDirs are the directories git would treat as a repository (by
	// what is in them, whatever their name), repository-relative: fingerprinted,
	// not entered, and read-only to a workspace-write task.
	gitDirs map[string]bool
}

// scanHostRun walks the work tree at root without following symlinks and
// without entering the repository's own .git, and fingerprints every
// host-run file. A git directory found below the root — a .git, or any
// directory git would take for a bare repository — is a nested
// repository: it is fingerprinted, not entered.
func scanHostRun(root string) hostRunState {
	st := hostRunState{files: map[string]string{}, gitDirs: map[string]bool{}}
	w := &hostRunWalk{root: root, st: &st, deadline: time.Now().Add(hostRunScanTime)}
	w.dir("", 0)
	return st
}

// openDirFlags open a directory of the work tree: never through a symlink
// swapped in since it was listed, never blocking.
const openDirFlags = os.O_RDONLY | syscall.O_DIRECTORY | syscall.O_NOFOLLOW | syscall.O_NONBLOCK | syscall.O_CLOEXEC

// maxHostRunDepth bounds the walk's nesting, and so the directories it
// holds open at once.
const maxHostRunDepth = 256

type hostRunWalk struct {
	root     string
	st       *hostRunState
	deadline time.Time
	n        int
}

// dir walks the directory rel, reading it in batches so that one huge
// directory is bounded like a huge tree, and opening it without following
// a symlink a task may have swapped in since it was listed.
func (w *hostRunWalk) dir(rel string, depth int) {
	if w.st.cut {
		return
	}
	p := filepath.Join(w.root, rel)
	if depth > maxHostRunDepth {
		w.st.cut = true
		return
	}
	f, err := os.OpenFile(p, openDirFlags, 0)
	if err != nil {
		w.unreadable(p, err)
		return
	}
	defer f.Close()
	if rel != "" && isGitDirAt(int(f.Fd())) {
		// git run in it (or below it) takes it for a bare repository and
		// obeys its config, whatever the directory is called.
		w.gitDir(rel, p)
		return
	}
	for {
		entries, err := f.ReadDir(512)
		for _, e := range entries {
			if w.n++; w.n > maxHostRunEntries || (w.n%1024 == 0 && time.Now().After(w.deadline)) {
				w.st.cut = true
				return
			}
			w.entry(path.Join(rel, e.Name()), e, depth)
			if w.st.cut {
				return
			}
		}
		if err != nil {
			if !errors.Is(err, io.EOF) {
				w.unreadable(p, err)
			}
			return
		}
	}
}

func (w *hostRunWalk) entry(rel string, e fs.DirEntry, depth int) {
	p := filepath.Join(w.root, rel)
	if e.Name() == ".git" {
		// The repository's own, or a nested one's: it and what in it git
		// runs or obeys. (Under workspace-write they are read-only; under
		// danger-full-access a change here is the first thing to review.)
		if !e.IsDir() {
			w.st.files[rel] = lstatFingerprint(p)
		} else {
			w.gitDir(rel, p)
		}
		return
	}
	if e.IsDir() {
		w.dir(rel, depth+1)
		return
	}
	// Files; not the directories that hold host-run files, whose times
	// change with every file in them.
	if isHostRun(rel) {
		w.st.files[rel] = lstatFingerprint(p)
	}
}

// gitDir fingerprints the git directory at rel: its being there (and which
// directory it is: its times change whenever git takes a lock in it), and
// what in it git runs or obeys.
func (w *hostRunWalk) gitDir(rel, p string) {
	w.st.gitDirs[rel] = true
	w.st.files[rel] = dirFingerprint(p)
	for _, name := range []string{"config", "commondir", "info/attributes", "config.worktree"} {
		w.st.files[rel+"/"+name] = lstatFingerprint(filepath.Join(p, name))
	}
	if hooks, err := os.OpenFile(filepath.Join(p, "hooks"), openDirFlags, 0); err == nil {
		list, _ := hooks.ReadDir(256)
		hooks.Close()
		for _, h := range list {
			w.st.files[rel+"/hooks/"+h.Name()] = lstatFingerprint(filepath.Join(p, "hooks", h.Name()))
		}
	}
}

// isGitDirAt reports whether the open directory dirfd is one git takes
// for a git directory: a HEAD, and objects and refs (or a commondir that
// has them). Git also checks what HEAD holds and what the others are;
// here any entry of those names counts, so a directory that fails git's
// check only by a detail is flagged all the same.
func isGitDirAt(dirfd int) bool {
	has := func(name string) bool {
		var st unix.Stat_t
		return unix.Fstatat(dirfd, name, &st, unix.AT_SYMLINK_NOFOLLOW) == nil
	}
	return has("HEAD") && (has("commondir") || has("objects") && has("refs"))
}

// unreadable notes a directory the walk cannot read (mode 000, made so by
// a task): it may hide a repository, so the scan is incomplete.
func (w *hostRunWalk) unreadable(p string, err error) {
	if errors.Is(err, fs.ErrNotExist) || w.st.unreadable != "" {
		return
	}
	w.st.cut, w.st.unreadable = true, p
}

func dirFingerprint(p string) string {
	fi, err := os.Lstat(p)
	if err != nil {
		return "gone"
	}
	if s, ok := fi.Sys().(*syscall.Stat_t); ok {
		return fmt.Sprintf("dir %d", s.Ino)
	}
	return "dir"
}

func lstatFingerprint(p string) string {
	fi, err := os.Lstat(p)
	if err != nil {
		return "gone"
	}
	s, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return fmt.Sprintf("%v %d %d", fi.Mode(), fi.Size(), fi.ModTime().UnixNano())
	}
	return fmt.Sprintf("%d %v %d %d.%d %d.%d", s.Ino, fi.Mode(), s.Size, s.Mtim.Sec, s.Mtim.Nsec, s.Ctim.Sec, s.Ctim.Nsec)
}

// hostRunFiles lists the host-run files a run changed, created or removed:
// those the scans tell apart, and those among the files changed that the
// scans did not reach. Sorted, never nil.
func hostRunFiles(before, after *hostRunState, changed []string) []string {
	set := map[string]bool{}
	if before != nil && after != nil {
		for p, fp := range after.files {
			if was, ok := before.files[p]; ok && was != fp || !ok && fp != "gone" {
				set[p] = true
			}
		}
		for p, fp := range before.files {
			if _, ok := after.files[p]; !ok && fp != "gone" && !after.cut {
				set[p] = true
			}
		}
	}
	for _, p := range changed {
		if isHostRun(p) {
			set[filepath.ToSlash(p)] = true
		}
	}
	out := make([]string, 0, len(set))
	for p := range set {
		out = append(out, p)
	}
	sort.Strings(out)
	return out
}
