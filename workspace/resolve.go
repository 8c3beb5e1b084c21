package workspace

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/codex-connector/codex-connector/internal/hostfs"
	"github.com/go-git/go-git/v5/plumbing"
)

// fixable is an error of Resolve: the caller can fix it, and the message
// says how.
func fixable(format string, args ...any) error {
	return fmt.Errorf(format, args...)
}

// Resolve checks that dir is an absolute, existing directory inside a git
// work tree, under one of the allowed roots, and returns it with symlinks
// resolved, and the root of the repository it belongs to (a sub-directory
// runs with its repo mounted). Every error is one the caller can fix, and
// says how.
func Resolve(dir string, allowedRoots []string) (workdir, root string, err error) {
	if dir == "" {
		return "", "", fixable("workingDirectory is required: pass the absolute path of a git repository")
	}
	if !filepath.IsAbs(dir) {
		return "", "", fixable("workingDirectory must be an absolute path, got %q — pass the full path, e.g. /home/you/project", dir)
	}
	resolved, err := filepath.EvalSymlinks(dir)
	if errors.Is(err, os.ErrNotExist) {
		return "", "", fixable("workingDirectory %s does not exist — check the path", dir)
	}
	if err != nil {
		return "", "", fixable("workingDirectory %s cannot be read: %v", dir, err)
	}
	if fi, err := os.Stat(resolved); err != nil || !fi.IsDir() {
		return "", "", fixable("workingDirectory %s is not a directory — pass the repository's directory", dir)
	}
	if err := underRoots(resolved, allowedRoots); err != nil {
		return "", "", err
	}
	gitRoot, err := findGitRoot(resolved)
	if err != nil {
		return "", "", err
	}
	// Through gitfs: a danger-full-access task may have left a named pipe
	// where go-git reads (.git/HEAD, commondir), which would hang this call.
	ctx, cancel := context.WithTimeout(context.Background(), GitOpenTimeout)
	defer cancel()
	refused := &hostfs.Refusal{}
	repo, err := hostfs.OpenRepo(ctx, gitRoot, refused)
	if err == nil {
		_, err = repo.Head()
		if errors.Is(err, plumbing.ErrReferenceNotFound) {
			err = nil // a repository with no commit yet
		}
	}
	if rerr := refused.First(); rerr != nil {
		err = rerr
	}
	if err != nil {
		return "", "", fixable("open git repository at %s: %v — repair it (git status there says what git makes of it), or pass another repository", gitRoot, err)
	}
	root = gitRoot
	// The repository root is what gets mounted: it must pass the same test
	// (a sub-directory of a root can belong to a repo at the root itself).
	if err := underRoots(root, allowedRoots); err != nil {
		return "", "", err
	}
	return resolved, root, nil
}

// underRoots refuses / and any path not strictly below an allowed root
// (resolved through symlinks, so a link cannot lead out of a root).
func underRoots(path string, roots []string) error {
	if path == "/" {
		return fixable("workingDirectory / is refused: pass the repository's own directory")
	}
	for _, r := range roots {
		rr, err := filepath.EvalSymlinks(r)
		if err != nil {
			continue
		}
		if path == rr {
			return fixable("workingDirectory %s is an allowed root itself, not a repository in it: pass the repository's directory", path)
		}
		if strings.HasPrefix(path, strings.TrimSuffix(rr, "/")+"/") {
			return nil
		}
	}
	return fixable("workingDirectory %s is outside the allowed roots (%s) — move the repository there, or add its parent to allowedRoots in config.json", path, strings.Join(roots, ", "))
}

// findGitRoot finds the directory whose .git git would use for dir, the
// nearest one up the tree. A .git that is a symlink is refused: git on the
// host obeys whatever it leads to, and the engine would bind its target.
func findGitRoot(dir string) (string, error) {
	for d := dir; ; d = filepath.Dir(d) {
		fi, err := os.Lstat(filepath.Join(d, ".git"))
		if err == nil {
			if fi.Mode()&os.ModeSymlink != 0 {
				return "", fixable("%s/.git is a symlink, which codex-connector refuses: a task could be given the directory it points to — pass the repository that holds the git directory itself, or replace the symlink with a `gitdir:` file (`git worktree` makes those)", d)
			}
			return d, nil
		}
		if d == "/" {
			return "", fixable("not a git repository: %s — run `git init` there, or pass the repository root (Codex needs a git repository)", dir)
		}
	}
}
