package runner

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"
)

// Host-run files: a task that may write the work tree can change files that
// tools on the host run or obey without asking — make reads the Makefile,
// direnv the .envrc, npm the scripts of package.json, an editor its
// workspace settings, CI its workflows, git its attributes and any .git it
// finds. The sandbox cannot tell such a change from honest work, so the
// result lists them apart, for the caller to review before running anything.

// hostRunNames are file names that some host tool runs or obeys, wherever
// they are in the tree.
var hostRunNames = map[string]bool{
	"Makefile": true, "makefile": true, "GNUmakefile": true, "justfile": true, "Justfile": true,
	"Taskfile.yml": true, "Taskfile.yaml": true,
	".envrc": true, ".env": true,
	"package.json": true, ".npmrc": true, ".yarnrc": true, ".yarnrc.yml": true, ".pnpmfile.cjs": true,
	".gitattributes": true, ".gitmodules": true, ".git": true,
	".bashrc": true, ".bash_profile": true, ".bash_login": true, ".profile": true,
	".zshrc": true, ".zshenv": true, ".zprofile": true, ".zlogin": true,
	".pre-commit-config.yaml": true, "lefthook.yml": true, ".lefthook.yml": true,
	".mise.toml": true, "mise.toml": true, ".tool-versions": true,
}

// hostRunDirs are directories whose every file a host tool obeys (editor
// tasks and settings, CI workflows, git hook managers, dev containers).
var hostRunDirs = []string{".vscode", ".idea", ".github/workflows", ".husky", ".githooks", ".devcontainer"}

// isHostRun reports whether the repository-relative path (slash-separated)
// is a file that tools on the host run or obey.
func isHostRun(rel string) bool {
	rel = filepath.ToSlash(rel)
	for _, part := range strings.Split(rel, "/") {
		if part == ".git" {
			return true // a nested repository or a .git file: git there obeys it
		}
	}
	if hostRunNames[path.Base(rel)] || strings.HasSuffix(rel, ".mk") {
		return true
	}
	for _, d := range hostRunDirs {
		if rel == d || strings.HasPrefix(rel, d+"/") {
			return true
		}
	}
	return false
}

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
}

// scanHostRun walks the work tree at root without following symlinks and
// without entering the repository's own .git, and fingerprints every
// host-run file. A .git directory found below the root is a nested
// repository: it is fingerprinted, not entered.
func scanHostRun(root string) hostRunState {
	st := hostRunState{files: map[string]string{}}
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
			// Its times change whenever git takes a lock in it: only its
			// being there (and which directory it is) counts, and what in
			// it git runs or obeys.
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
// scans did not reach. Sorted, at most maxFiles.
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
		out = append(out, clip(p))
	}
	sort.Strings(out)
	return out[:min(len(out), maxFiles)]
}
