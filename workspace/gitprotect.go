package workspace

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/codex-connector/codex-connector/internal/hostfs"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/format/index"
)

// GitOpenTimeout bounds reading a repository at accept and launch.
const GitOpenTimeout = 10 * time.Second

// Limits of the submodule walk: a hostile index must not make a launch
// mount thousands of paths or recurse without end.
const (
	maxGitlinks     = 256
	maxGitlinkDepth = 16
)

// GitMounts is what a task binds of the repository beside its work tree:
// for a workspace-write task, what keeps anything it writes from steering
// git on the host.
type GitMounts struct {
	// ReadOnly are bound read-only over themselves: the repository's .git
	// (directory or file), every submodule's .git, and submodule
	// directories that are not checked out (so no .git appears in them).
	ReadOnly []string
	// Pinned are directories bound over themselves, read-write: a mount
	// point cannot be renamed, so a task cannot move a protected .git away
	// and put its own in its place.
	Pinned []string
	// Linked is the common git directory of a linked worktree, outside
	// the repository: bound read-only at its own path (restricted levels),
	// so that git inside the task works.
	Linked string
	// Bound are the checked sources below and at the repository root, with
	// their identities, for the look at what the engine bound.
	Bound []Bound
}

// Bound is a bind source that was checked, and the identity it had then:
// the engine binds whatever a path leads to when the container starts, so
// what it bound is compared with this before anything of the task runs.
type Bound struct {
	Path     string
	Dev, Ino uint64
}

// Identify returns the identity of the bind source at path.
func Identify(path string) (Bound, error) {
	dev, ino, err := Identity(path)
	if err != nil {
		return Bound{}, fmt.Errorf("stat %s to bind it: %w — check that it still exists, then run the task again", path, err)
	}
	return Bound{Path: path, Dev: dev, Ino: ino}, nil
}

// Identity returns the device and inode of a directory.
func Identity(path string) (dev, ino uint64, err error) {
	fi, err := os.Lstat(path)
	if err != nil {
		return 0, 0, err
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, 0, fmt.Errorf("stat %s: no inode information", path)
	}
	return uint64(st.Dev), st.Ino, nil
}

// CheckRoot makes sure the repository root is still the directory that
// was accepted: no symlink on its path, and the same device and inode (0
// for both: a record from before identities were kept).
func CheckRoot(root string, dev, ino uint64) error {
	resolved, err := filepath.EvalSymlinks(root)
	if err != nil {
		return fmt.Errorf("the repository %s cannot be reached any more: %v — check that it still exists, then run the task again", root, err)
	}
	if resolved != root {
		return fmt.Errorf("the repository path %s now leads to %s through a symlink; it is not the directory that was accepted, so it is not mounted — restore the directory and run the task again", root, resolved)
	}
	fi, err := os.Lstat(root)
	if err != nil || !fi.IsDir() {
		return fmt.Errorf("the repository %s is no longer a directory — restore it and run the task again", root)
	}
	if ino == 0 {
		return nil // a record from before identities were kept
	}
	gotDev, gotIno, err := Identity(root)
	if err != nil {
		return fmt.Errorf("stat the repository %s: %w", root, err)
	}
	if gotDev != dev || gotIno != ino {
		return fmt.Errorf("the repository %s was replaced by another directory after the task was accepted (it was moved or swapped); it is not mounted — run the task again on the repository you mean", root)
	}
	return nil
}

// below checks that rel names a real file or directory inside root: every
// component below root is a directory that is not a symlink, and the last
// is not a symlink either. It returns what the last one is, or an error
// wrapping os.ErrNotExist when something on the way is missing.
func below(root, rel string) (os.FileInfo, error) {
	rel = filepath.Clean(rel)
	if rel == "." || filepath.IsAbs(rel) || rel == ".." || strings.HasPrefix(rel, "../") {
		return nil, fmt.Errorf("%q is not a path inside the repository", rel)
	}
	parts := strings.Split(rel, "/")
	p := root
	for i, part := range parts {
		p = filepath.Join(p, part)
		fi, err := os.Lstat(p)
		if err != nil {
			return nil, err
		}
		if fi.Mode()&os.ModeSymlink != 0 {
			return nil, fmt.Errorf("%s is a symlink", p)
		}
		if i < len(parts)-1 && !fi.IsDir() {
			return nil, fmt.Errorf("%s is not a directory", p)
		}
		if i == len(parts)-1 {
			return fi, nil
		}
	}
	return nil, os.ErrNotExist
}

// ProtectGit works out the binds that keep a workspace-write task's hands
// off git: the repository's .git as a whole, read-only (as Codex's own
// workspace-write treats git); the same for every submodule, found from the
// index, whose gitlinks the task cannot change (the index is under .git),
// and for every other repository in the work tree (nested, found by the
// scan of ws before the run: git run inside one obeys its .git); and every file
// their configurations name in the work tree. Every directory above a
// read-only bind, up to the root, is pinned as a mount point.
func ProtectGit(root string, ws *Shared) (GitMounts, error) {
	scan := ws.hostRun()
	var m GitMounts
	fi, err := below(root, ".git")
	switch {
	case errors.Is(err, os.ErrNotExist):
		return m, fmt.Errorf("the repository %s has no .git any more — restore it and run the task again", root)
	case err != nil:
		return m, fmt.Errorf("the repository's .git cannot be protected: %v — a .git that is a symlink is refused; use the repository it points to", err)
	case !fi.IsDir() && !fi.Mode().IsRegular():
		return m, fmt.Errorf("%s/.git is neither a directory nor a file — it cannot be protected", root)
	}
	if scan != nil && scan.unreadable != "" {
		return m, fmt.Errorf("%s cannot be read, so the repositories in it cannot be found and protected — make it readable (chmod u+rx %s), or use read-only", scan.unreadable, scan.unreadable)
	}
	if scan == nil || scan.cut {
		return m, fmt.Errorf("the work tree of %s is too large to search for the repositories in it (more than %d entries, or %s): workspace-write cannot protect what it does not find — use read-only, or danger-full-access if you trust the task", root, maxHostRunEntries, hostRunScanTime)
	}
	readOnly := []string{".git"}
	worktrees := []string{"."}
	add := func(rel string) {
		if !slices.Contains(readOnly, rel) {
			readOnly = append(readOnly, rel)
		}
	}
	links, err := gitlinks(root, "", 0)
	if err != nil {
		return m, err
	}
	for _, rel := range links {
		fi, err := below(root, rel)
		if errors.Is(err, os.ErrNotExist) {
			return m, fmt.Errorf("the submodule directory %s is missing from %s: run `git submodule update --init` (or `mkdir -p %s`) there, then run the task again — a task could otherwise make it with a .git of its own", rel, root, rel)
		}
		if err != nil || !fi.IsDir() {
			return m, fmt.Errorf("the submodule path %s in %s is not a plain directory (%v): restore it with `git submodule update`, then run the task again", rel, root, errOr(err, "not a directory"))
		}
		dotGit := filepath.Join(rel, ".git")
		gfi, err := below(root, dotGit)
		switch {
		case errors.Is(err, os.ErrNotExist):
			// Not checked out: nothing may appear in it.
			add(rel)
		case err != nil:
			return m, fmt.Errorf("the submodule's %s cannot be protected: %v — restore it with `git submodule update`", dotGit, err)
		case !gfi.IsDir() && !gfi.Mode().IsRegular():
			return m, fmt.Errorf("the submodule's %s is neither a directory nor a file — restore it with `git submodule update`", dotGit)
		default:
			add(dotGit)
			worktrees = append(worktrees, rel)
		}
	}
	// Other repositories in the work tree: an ignored clone, a linked
	// worktree kept inside the repository.
	for p := range scan.files {
		if path.Base(p) != ".git" || p == ".git" || slices.Contains(readOnly, p) {
			continue
		}
		fi, err := below(root, p)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil || !fi.IsDir() && !fi.Mode().IsRegular() {
			return m, fmt.Errorf("%s in %s is a .git that is neither a directory nor a file (%v): a workspace-write task cannot be kept from it — remove it, or use read-only", p, root, errOr(err, "a special file"))
		}
		add(p)
		worktrees = append(worktrees, path.Dir(p))
	}
	// Directories git takes for a bare repository, whatever their name
	// (a tracked fixture, a mirror kept in the tree): git run in one obeys
	// its config, so a task may not write it.
	for p := range scan.gitDirs {
		if path.Base(p) != ".git" {
			add(p)
		}
	}
	// A .git file may lead to a git directory inside the work tree (the
	// "bare repository in .bare" layout, or a submodule's odd gitdir): that
	// directory, and its commondir, are read-only too.
	for _, rel := range append([]string(nil), readOnly...) {
		dirs, err := gitDirsInside(root, rel)
		if err != nil {
			return m, err
		}
		for _, d := range dirs {
			add(d)
		}
	}
	home := ownerHome(root)
	for _, wt := range worktrees {
		named, err := configNamedFiles(root, filepath.Join(root, wt), home)
		if err != nil {
			return m, err
		}
		for _, rel := range named {
			add(rel)
		}
	}
	pinned := map[string]bool{}
	for _, rel := range readOnly {
		m.ReadOnly = append(m.ReadOnly, filepath.Join(root, rel))
		// Every directory above it up to the root becomes a mount point:
		// none can be renamed to put another file in its place.
		for d := path.Dir(rel); d != "." && d != "/"; d = path.Dir(d) {
			pinned[d] = true
		}
	}
	for d := range pinned {
		if !slices.Contains(readOnly, d) {
			m.Pinned = append(m.Pinned, filepath.Join(root, d))
		}
	}
	sort.Strings(m.ReadOnly)
	sort.Strings(m.Pinned)
	for _, p := range append(append([]string(nil), m.ReadOnly...), m.Pinned...) {
		dev, ino, err := Identity(p)
		if err != nil {
			return m, fmt.Errorf("stat %s to bind it: %w — run the task again", p, err)
		}
		m.Bound = append(m.Bound, Bound{Path: p, Dev: dev, Ino: ino})
	}
	return m, nil
}

// gitlinks lists the submodule paths (relative to root) recorded in the
// index of the repository at root/prefix, and of its submodules in turn.
func gitlinks(root, prefix string, depth int) ([]string, error) {
	// Through gitfs: a task may have left a named pipe or a symlink where
	// go-git reads, and a launch must neither hang nor follow it.
	ctx, cancel := context.WithTimeout(context.Background(), GitOpenTimeout)
	defer cancel()
	refused := &hostfs.Refusal{}
	repo, err := hostfs.OpenRepo(ctx, filepath.Join(root, prefix), refused)
	var idx *index.Index
	if err == nil {
		idx, err = repo.Storer.Index()
	}
	if rerr := refused.First(); rerr != nil {
		err = rerr // go-git may have read a refused file as missing: the list would be wrong
	}
	if err != nil {
		return nil, fmt.Errorf("read the git index of %s to find its submodules: %v — repair the repository (git status there says what git makes of it), or use read-only", filepath.Join(root, prefix), err)
	}
	var out []string
	for _, e := range idx.Entries {
		if e.Mode != filemode.Submodule {
			continue
		}
		rel := filepath.Join(prefix, e.Name)
		out = append(out, rel)
		if _, err := below(root, filepath.Join(rel, ".git")); err == nil {
			// Checked out: its own index lists its submodules.
			if depth+1 >= maxGitlinkDepth {
				return nil, fmt.Errorf("%s has submodules nested deeper than %d levels; workspace-write cannot protect them all — use read-only, or danger-full-access if you trust the task", root, maxGitlinkDepth)
			}
			nested, err := gitlinks(root, rel, depth+1)
			if err != nil {
				return nil, err
			}
			out = append(out, nested...)
		}
		if len(out) > maxGitlinks {
			return nil, fmt.Errorf("%s has more than %d submodules; workspace-write cannot protect them all — use read-only, or danger-full-access if you trust the task", root, maxGitlinks)
		}
	}
	return out, nil
}

func errOr(err error, s string) string {
	if err != nil {
		return err.Error()
	}
	return s
}

// LinkedGitDir returns the common git directory of a linked worktree (`git
// worktree add`) whose root is outside the repository, so that it can be
// bound at its own path and git inside the task works. It must be a real
// linked worktree of this very work tree: the .git file leads to
// <common>/worktrees/<name>, whose gitdir file leads back to this .git. A
// task that may write .git (danger-full-access) can point it anywhere, but
// cannot make another directory lead back, so it cannot choose what a later
// task is given. Anything else — a git directory made with
// --separate-git-dir, which nothing leads back from — returns "": git inside
// the task then does not see the repository.
func LinkedGitDir(root string) string {
	dotGit := filepath.Join(root, ".git")
	fi, err := os.Lstat(dotGit)
	if err != nil || !fi.Mode().IsRegular() {
		return ""
	}
	data, err := readConfig(root, dotGit)
	if err != nil {
		return ""
	}
	target, ok := hostfs.GitdirOf(root, data)
	if !ok {
		return ""
	}
	gitDir, err := filepath.EvalSymlinks(target)
	if err != nil || gitDir == root || strings.HasPrefix(gitDir, root+"/") {
		return "" // inside the repository: bound with it
	}
	if filepath.Base(filepath.Dir(gitDir)) != "worktrees" {
		return ""
	}
	back, err := readConfig(root, filepath.Join(gitDir, "gitdir"))
	if err != nil {
		return ""
	}
	backPath, err := filepath.EvalSymlinks(strings.TrimSpace(string(back)))
	if err != nil || backPath != dotGit {
		return ""
	}
	common := filepath.Dir(filepath.Dir(gitDir))
	if fi, err := os.Lstat(common); err != nil || !fi.IsDir() {
		return ""
	}
	return common
}

// gitDirsInside returns, for a .git file at rel, the git directory it
// leads to and that directory's commondir, when they are inside the work
// tree but not under its .git (relative to root). Each must be a real
// directory: one that is missing could be made by the task.
func gitDirsInside(root, rel string) ([]string, error) {
	if path.Base(rel) != ".git" {
		return nil, nil
	}
	if fi, err := below(root, rel); err != nil || !fi.Mode().IsRegular() {
		return nil, nil
	}
	dotGit := filepath.Join(root, rel)
	data, err := readConfig(root, dotGit)
	if err != nil {
		return nil, fmt.Errorf("read %s: %v — restore it (git submodule update, or git worktree repair)", dotGit, err)
	}
	gitDir, ok := hostfs.GitdirOf(filepath.Dir(dotGit), data)
	if !ok {
		return nil, nil
	}
	dirs := []string{gitDir}
	if common, ok := commonDirOf(root, gitDir); ok {
		dirs = append(dirs, common)
	}
	var out []string
	for _, d := range dirs {
		r, err := filepath.Rel(root, d)
		if err != nil || !inside(root, d) || r == "." || r == ".git" || strings.HasPrefix(r, ".git/") {
			continue
		}
		fi, err := below(root, r)
		if err != nil || !fi.IsDir() {
			return nil, fmt.Errorf("%s leads to %s, which is not a plain directory in the work tree (%v): a workspace-write task could make it — restore the git directory, or use read-only", dotGit, r, errOr(err, "not a directory"))
		}
		out = append(out, r)
	}
	return out, nil
}
