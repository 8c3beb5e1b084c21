package workspace

import (
	"bytes"
	"context"
	"encoding/gob"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	gitconfig "github.com/go-git/go-git/v5/plumbing/format/config"
	"github.com/go-git/go-git/v5/plumbing/format/gitignore"

	"github.com/codex-connector/codex-connector/internal/hostfs"
	git "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/format/index"
	"github.com/go-git/go-git/v5/plumbing/object"
	"golang.org/x/sys/unix"
)

// A branch workspace is a checkout of its own for one task, made by the
// server under its data directory, never inside the user's repository:
//
//	<dir>/tree       the work tree, with a .git of its own; the container
//	                 binds it at the repository's own path
//	<dir>/checkout   what the server wrote there (path, mode, hash, stat),
//	                 so that collecting it hashes only what changed
//
// Its .git holds no object of the user's: objects/info/alternates names
// where the container sees the repository's objects, bound read-only. The
// commit a task starts from (the base, and the user's uncommitted changes
// as a commit on top when carried) is written into the user's repository
// before the task starts, so that nothing the task does to its own .git
// can take it away. When the task ends, Collect turns what the tree holds
// into commits on the task's branch in the user's repository.

// Workspace kinds: where a task's files are.
const (
	// KindShared is the user's own work tree, bound into the container.
	KindShared = "shared"
	// KindBranch is a checkout of its own, collected into a branch.
	KindBranch = "branch"
)

// Kinds are the workspace kinds, as the workspace parameter takes them.
var Kinds = []string{KindShared, KindBranch}

// BranchPrefix starts the name of every task's branch.
const BranchPrefix = "codex/"

// BranchSpec says how to make one task's branch workspace.
type BranchSpec struct {
	Repo string // the user's repository root
	Dir  string // the workspace's directory, made here
	// Base is a branch, tag or commit of the repository; "" is HEAD.
	Base string
	// Carry takes the user's uncommitted changes (tracked edits, and
	// untracked files that are not ignored) in as a first commit.
	Carry  bool
	Branch string // the branch the task's work goes to: codex/<id>
	Task   string
	Owner  Owner
	// ObjectsMount is where the container sees the repository's objects.
	ObjectsMount string
}

// Prepared is a made branch workspace, as the task's record keeps it.
type Prepared struct {
	Base  string // the commit of the base
	Start string // the commit the task starts from: Base, or the carried changes on it
	// Carried are the paths of the user's uncommitted changes taken in;
	// Left are those that were not, with why.
	Carried []string
	Left    []string
	// Objects is the repository's objects directory on the host: the
	// source of the read-only bind at ObjectsMount.
	Objects string
}

// TreeDir is the work tree of the branch workspace at dir.
func TreeDir(dir string) string { return filepath.Join(dir, "tree") }

func checkoutFile(dir string) string { return filepath.Join(dir, "checkout") }

// checkedOut is one path the server wrote into the tree, and its stat
// then: while the stat is unchanged, its content is still hash.
type checkedOut struct {
	Path     string
	Mode     uint32 // git's
	Hash     plumbing.Hash
	Size     int64
	Mtime    int64
	Ctime    int64
	Ino, Dev uint64
	Uid, Gid uint32
}

// statKey is what a file's stat must still be for its content to be
// taken as unchanged: a task can set a file's modification time back,
// never its change time.
func (c checkedOut) same(st unix.Stat_t) bool {
	return c.Size == st.Size && c.Mtime == st.Mtim.Nano() && c.Ctime == st.Ctim.Nano() && c.Ino == st.Ino && c.Dev == uint64(st.Dev)
}

// ResolveBase finds the commit base names in the repository at root: a
// branch, tag or commit; "" is HEAD.
func ResolveBase(ctx context.Context, root, base string) (string, error) {
	refused := &hostfs.Refusal{}
	repo, err := hostfs.OpenRepo(ctx, root, refused)
	if err != nil {
		return "", fmt.Errorf("open the repository %s: %w", root, firstOf(refused, err))
	}
	return resolveCommit(repo, root, base, refused)
}

func resolveCommit(repo *git.Repository, root, base string, refused *hostfs.Refusal) (string, error) {
	if base == "" {
		base = "HEAD"
	}
	if _, err := repo.Head(); err != nil && (base == "HEAD") {
		if errors.Is(err, plumbing.ErrReferenceNotFound) {
			return "", fmt.Errorf("%s has no commit yet, and a branch workspace is made from one: commit once, or use workspace shared", root)
		}
	}
	h, err := repo.ResolveRevision(plumbing.Revision(base))
	if err != nil {
		return "", fmt.Errorf("base %q is no branch, tag or commit of %s: %w — name one that is (git log shows them), or leave base out for HEAD", base, root, firstOf(refused, err))
	}
	if _, err := repo.CommitObject(*h); err != nil {
		if alt, _ := hasAlternates(root); alt {
			return "", fmt.Errorf("%s borrows objects from another repository (objects/info/alternates: a clone --shared or --reference), which a branch task's container cannot see: run git repack -a -d there first, or use workspace shared", root)
		}
		return "", fmt.Errorf("base %q of %s is no commit: %w", base, root, firstOf(refused, err))
	}
	return h.String(), nil
}

// PrepareBranch makes the workspace spec describes, and returns what the
// task's record keeps of it. On error nothing of it is left.
func PrepareBranch(ctx context.Context, spec BranchSpec) (p Prepared, err error) {
	refused := &hostfs.Refusal{}
	dirs, err := hostfs.GitDirsOf(spec.Repo)
	if err != nil {
		return p, err
	}
	repo, closeRepo, err := hostfs.OpenRepoKeeping(ctx, spec.Repo, dirs, refused)
	if err != nil {
		return p, fmt.Errorf("open the repository %s: %w", spec.Repo, firstOf(refused, err))
	}
	defer closeRepo()
	common := commonGitDir(dirs)
	p.Objects = filepath.Join(common, "objects")
	h, err := resolveCommit(repo, spec.Repo, spec.Base, refused)
	if err != nil {
		return p, err
	}
	commit, err := repo.CommitObject(plumbing.NewHash(h))
	if err != nil {
		return p, fmt.Errorf("base %q: %w", spec.Base, firstOf(refused, err))
	}
	p.Base, p.Start = commit.Hash.String(), commit.Hash.String()
	tree, err := commit.Tree()
	if err != nil {
		return p, fmt.Errorf("read the tree of %s: %w", p.Base, firstOf(refused, err))
	}
	if err := os.MkdirAll(spec.Dir, 0o700); err != nil {
		return p, fmt.Errorf("make the workspace %s: %w", spec.Dir, err)
	}
	defer func() {
		if err != nil {
			_ = hostfs.RemoveTree(spec.Dir)
		}
	}()
	root := TreeDir(spec.Dir)
	if err := hostfs.EnsureDir(spec.Dir, "tree", 0o755, spec.Owner.Chown, spec.Owner.UID, spec.Owner.GID); err != nil {
		return p, err
	}
	co := &checkout{root: root, owner: spec.Owner, repo: repo, dirs: dirs, files: map[string]*checkedOut{}}
	// The user's status, taken first: it says what to carry, and which of
	// the user's files are the base's blobs, to be copied from the work
	// tree rather than inflated from packs (checked by their hash).
	status, statusErr := co.userStatus(ctx, spec.Repo)
	if spec.Carry && statusErr != nil {
		return p, fmt.Errorf("read the uncommitted changes of %s: %w — commit or stash them, or start the task without them", spec.Repo, statusErr)
	}
	top, err := hostfs.OpenFresh(root)
	if err != nil {
		return p, err
	}
	src := -1
	if statusErr == nil {
		src, _ = unix.Open(spec.Repo, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	}
	model, err := co.checkOut(ctx, tree, top, src)
	top.Close()
	if err != nil {
		return p, firstOf(refused, err)
	}
	if spec.Carry {
		changed, err := co.carry(ctx, spec.Repo, model, status)
		if err != nil {
			return p, err
		}
		p.Carried, p.Left = changed, co.left
		if len(changed) > 0 {
			w := &objectWriter{gitDir: common, owner: spec.Owner}
			start, err := co.commitCarried(w, model, commit, changed, spec)
			if err != nil {
				return p, fmt.Errorf("record the uncommitted changes as a commit in %s: %w", spec.Repo, err)
			}
			p.Start = start.String()
		}
	}
	// Referenced until its branch is made: a git gc meanwhile keeps it.
	if err := writeRef(common, startRef(spec.Task), plumbing.NewHash(p.Start), spec.Owner); err != nil {
		return p, err
	}
	if err := co.gitDir(spec, p.Start); err != nil {
		_ = DropStart(spec.Repo, spec.Task)
		return p, err
	}
	if err := co.keep(checkoutFile(spec.Dir)); err != nil {
		return p, err
	}
	return p, ctx.Err()
}

// commonGitDir is where a repository's objects and branches are: the
// common directory of a linked worktree, else its git directory.
func commonGitDir(d hostfs.GitDirs) string {
	if d.Common != "" {
		return d.Common
	}
	return d.GitDir
}

func firstOf(refused *hostfs.Refusal, err error) error {
	if r := refused.First(); r != nil {
		return r
	}
	return err
}

// userStatus is the status of the user's work tree at repoRoot, and notes
// which files of it are as its index has them (c.clean).
func (c *checkout) userStatus(ctx context.Context, repoRoot string) (treeStatus, error) {
	s, status, err := statusOf(ctx, repoRoot, c.repo, c.dirs, globalExcludes(repoRoot))
	if err != nil {
		return nil, err
	}
	c.clean = map[string]plumbing.Hash{}
	for _, e := range s.base.entries {
		if st, changed := status[e.name]; (!changed || st.worktree == git.Unmodified) && e.mode != filemode.Symlink && e.mode != filemode.Submodule {
			c.clean[e.name] = e.hash
		}
	}
	return status, nil
}

// carry copies the user's uncommitted changes (status) into the work tree
// and the model, and returns their paths, sorted.
func (c *checkout) carry(ctx context.Context, repoRoot string, model *treeDir, status treeStatus) ([]string, error) {
	var paths []string
	for path, s := range status {
		if s.changed() {
			paths = append(paths, path)
		}
	}
	sort.Strings(paths)
	// Removals first: a tracked directory that became a file, or a file
	// that became a directory, is its old entries gone, then its new ones.
	var carried, writes []string
	for _, path := range paths {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if strings.HasSuffix(path, "/") {
			c.left = append(c.left, path+": a repository of its own, untracked; a branch does not carry it")
			continue
		}
		if err := checkPath(path); err != nil {
			c.left = append(c.left, fmt.Sprintf("%s: %v", path, err))
			continue
		}
		st, err := hostfs.LstatBelow(repoRoot, repoRoot, path)
		switch {
		case errors.Is(err, os.ErrNotExist) || errors.Is(err, unix.ENOENT) || (err != nil && belowAFile(repoRoot, path)) ||
			err == nil && st.Mode&unix.S_IFMT == unix.S_IFDIR:
			if _, ok := c.files[path]; ok {
				if err := hostfs.RemoveBelow(c.root, path); err != nil {
					return nil, err
				}
				delete(c.files, path)
				model.remove(path)
				carried = append(carried, path)
			}
		case err != nil:
			c.left = append(c.left, fmt.Sprintf("%s: %v", path, err))
		default:
			writes = append(writes, path)
		}
	}
	for _, path := range writes {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		st, err := hostfs.LstatBelow(repoRoot, repoRoot, path)
		if err != nil {
			c.left = append(c.left, fmt.Sprintf("%s: %v", path, err))
			continue
		}
		mode, data, why := readWorkFile(repoRoot, path, st)
		if why != "" {
			c.left = append(c.left, path+": "+why)
			continue
		}
		h := plumbing.ComputeHash(plumbing.BlobObject, data)
		if dir, _ := splitPath(path); dir != "" {
			if err := hostfs.EnsureDir(c.root, dir, 0o755, c.owner.Chown, c.owner.UID, c.owner.GID); err != nil {
				return nil, err
			}
		}
		if ws, err := hostfs.LstatBelow(c.root, c.root, path); err == nil && ws.Mode&unix.S_IFMT == unix.S_IFDIR {
			// A directory of the base the user made a file: its files
			// went in the first pass.
			if err := hostfs.RemoveBelow(c.root, path); err != nil {
				return nil, err
			}
		}
		if err := c.write(path, mode, h, bytes.NewReader(data)); err != nil {
			return nil, err
		}
		model.set(path, treeEntry{mode, h})
		carried = append(carried, path)
	}
	sort.Strings(carried)
	return carried, nil
}

// checkPath refuses a path none of whose components may be in a tree.
func checkPath(path string) error {
	for _, part := range strings.Split(path, "/") {
		if err := checkEntryName(part); err != nil {
			return err
		}
	}
	return nil
}

// readWorkFile reads a file of a work tree as git stores it: a regular
// file's content (executable or not), a symlink's target. Anything else,
// or a file past maxObjectBytes, is not stored: why says so.
func readWorkFile(root, path string, st unix.Stat_t) (filemode.FileMode, []byte, string) {
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFLNK:
		target, err := hostfs.ReadlinkBelow(root, root, path)
		if err != nil {
			return 0, nil, err.Error()
		}
		return filemode.Symlink, []byte(target), ""
	case unix.S_IFREG:
		if st.Size > maxObjectBytes {
			return 0, nil, fmt.Sprintf("%s, larger than the %s a branch takes", hostfs.HumanSize(st.Size), hostfs.HumanSize(maxObjectBytes))
		}
		data, size, err := hostfs.ReadRegular(root, root, path, maxObjectBytes+1)
		if err != nil {
			return 0, nil, err.Error()
		}
		if size > maxObjectBytes || int64(len(data)) > maxObjectBytes {
			return 0, nil, fmt.Sprintf("larger than the %s a branch takes", hostfs.HumanSize(maxObjectBytes))
		}
		mode := filemode.Regular
		if st.Mode&0o100 != 0 { // the owner's bit, as git reads it
			mode = filemode.Executable
		}
		return mode, data, ""
	default:
		return 0, nil, "a " + fileKind(st.Mode) + ", which git does not store"
	}
}

func fileKind(mode uint32) string {
	switch mode & unix.S_IFMT {
	case unix.S_IFIFO:
		return "named pipe"
	case unix.S_IFSOCK:
		return "socket"
	case unix.S_IFCHR, unix.S_IFBLK:
		return "device"
	case unix.S_IFDIR:
		return "directory"
	case unix.S_IFLNK:
		return "symlink"
	case unix.S_IFREG:
		return "file"
	}
	return "special file"
}

// identity is who the server's commits are by: they record what the user
// or the task had, never who ran them.
var identity = object.Signature{Name: "codex-connector", Email: "codex-connector@localhost"}

// commitCarried writes the carried changes' blobs, trees and commit into
// the user's repository through w, and returns the commit.
func (c *checkout) commitCarried(w *objectWriter, model *treeDir, parent *object.Commit, carried []string, spec BranchSpec) (plumbing.Hash, error) {
	for _, path := range carried {
		f := c.files[path]
		if f == nil {
			continue // removed
		}
		mode, data, why := readWorkFile(c.root, path, mustLstat(c.root, path))
		if why != "" || plumbing.ComputeHash(plumbing.BlobObject, data) != f.Hash || uint32(mode) != f.Mode {
			return plumbing.ZeroHash, fmt.Errorf("%s changed while it was copied", path)
		}
		if _, err := w.put(plumbing.BlobObject, data); err != nil {
			return plumbing.ZeroHash, err
		}
	}
	tree, err := model.write(w.put)
	if err != nil {
		return plumbing.ZeroHash, err
	}
	sig := identity
	sig.When = time.Now().UTC().Truncate(time.Second)
	msg := fmt.Sprintf("Uncommitted changes of %s when task %s started\n", spec.Repo, spec.Task)
	return putCommit(w.put, tree, []plumbing.Hash{parent.Hash}, sig, msg)
}

func mustLstat(root, path string) unix.Stat_t {
	st, _ := hostfs.LstatBelow(root, root, path)
	return st
}

// putCommit stores a commit object through put.
func putCommit(put func(plumbing.ObjectType, []byte) (plumbing.Hash, error), tree plumbing.Hash, parents []plumbing.Hash, sig object.Signature, msg string) (plumbing.Hash, error) {
	var buf bytes.Buffer
	fmt.Fprintf(&buf, "tree %s\n", tree)
	for _, p := range parents {
		fmt.Fprintf(&buf, "parent %s\n", p)
	}
	stamp := fmt.Sprintf("%s <%s> %d +0000", sig.Name, sig.Email, sig.When.Unix())
	fmt.Fprintf(&buf, "author %s\ncommitter %s\n\n%s", stamp, stamp, msg)
	return put(plumbing.CommitObject, buf.Bytes())
}

// gitDir writes the work tree's own .git: HEAD on the task's branch at
// start, the repository's objects through alternates, an identity for the
// task's commits, and an index that matches what was checked out, so that
// git inside sees a clean tree.
func (c *checkout) gitDir(spec BranchSpec, start string) error {
	o := c.owner
	for _, d := range []string{".git", ".git/objects/info", ".git/objects/pack", ".git/refs/heads/" + filepath.Dir(spec.Branch), ".git/refs/tags"} {
		if err := hostfs.EnsureDir(c.root, d, 0o755, o.Chown, o.UID, o.GID); err != nil {
			return err
		}
	}
	config := "[core]\n\trepositoryformatversion = 0\n\tfilemode = true\n\tbare = false\n" +
		// Nothing packs or prunes behind the task's back: what it made
		// stays loose until the server collects it.
		"[gc]\n\tauto = 0\n" +
		"[user]\n\tname = Codex\n\temail = codex@codex-connector.invalid\n"
	files := map[string]string{
		".git/HEAD":                      "ref: refs/heads/" + spec.Branch + "\n",
		".git/config":                    config,
		".git/refs/heads/" + spec.Branch: start + "\n",
		".git/objects/info/alternates":   spec.ObjectsMount + "\n",
		".git/description":               "The workspace of codex-connector task " + spec.Task + "\n",
	}
	for rel, text := range files {
		if err := hostfs.WriteNewBelow(c.root, rel, []byte(text), 0o644, o.Chown, o.UID, o.GID); err != nil {
			return err
		}
	}
	idx := &index.Index{Version: 2}
	for _, f := range c.files {
		idx.Entries = append(idx.Entries, &index.Entry{Hash: f.Hash, Name: f.Path, Mode: filemode.FileMode(f.Mode),
			CreatedAt: time.Unix(0, f.Ctime), ModifiedAt: time.Unix(0, f.Mtime), Dev: uint32(f.Dev), Inode: uint32(f.Ino),
			UID: f.Uid, GID: f.Gid, Size: uint32(f.Size)})
	}
	sort.Slice(idx.Entries, func(i, j int) bool { return idx.Entries[i].Name < idx.Entries[j].Name })
	var buf bytes.Buffer
	if err := index.NewEncoder(&buf).Encode(idx); err != nil {
		return fmt.Errorf("write the workspace's index: %w", err)
	}
	return hostfs.WriteNewBelow(c.root, ".git/index", buf.Bytes(), 0o644, o.Chown, o.UID, o.GID)
}

// keep writes what was checked out beside the tree, for Collect.
func (c *checkout) keep(path string) error {
	list := make([]checkedOut, 0, len(c.files))
	for _, f := range c.files {
		list = append(list, *f)
	}
	var buf bytes.Buffer
	if err := gob.NewEncoder(&buf).Encode(list); err != nil {
		return err
	}
	if err := hostfs.WriteFileAtomic(path, buf.Bytes()); err != nil {
		return fmt.Errorf("keep what was checked out into the workspace: %w", err)
	}
	return nil
}

// loadCheckout reads what keep wrote.
func loadCheckout(path string) (map[string]checkedOut, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read what was checked out into the workspace: %w", err)
	}
	var list []checkedOut
	if err := gob.NewDecoder(bytes.NewReader(data)).Decode(&list); err != nil {
		return nil, fmt.Errorf("read what was checked out into the workspace (%s): %w", path, err)
	}
	m := make(map[string]checkedOut, len(list))
	for _, f := range list {
		m[f.Path] = f
	}
	return m, nil
}

// ObjectsDir is the objects directory of the repository at root: its
// common git directory's, for a linked worktree.
func ObjectsDir(root string) (string, error) {
	dirs, err := hostfs.GitDirsOf(root)
	if err != nil {
		return "", err
	}
	return filepath.Join(commonGitDir(dirs), "objects"), nil
}

// startRef keeps the commit a task starts from referenced while it runs.
func startRef(task string) string { return "refs/codex-connector/start/" + task }

// DropStart removes the reference that kept task's start while it ran.
func DropStart(root, task string) error {
	dirs, err := hostfs.GitDirsOf(root)
	if err != nil {
		return err
	}
	err = hostfs.RemoveBelow(commonGitDir(dirs), startRef(task))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	return err
}

// globalExcludes are the ignore patterns of the repository owner's own git
// configuration: core.excludesFile of ~/.gitconfig, else
// ~/.config/git/ignore. Read as that user's files, never followed through a
// symlink; none when they cannot be read.
func globalExcludes(root string) []gitignore.Pattern { return excludesOf(ownerHome(root)) }

// excludesOf reads the global excludes of the user whose home is home.
func excludesOf(home string) []gitignore.Pattern {
	if home == "" {
		return nil
	}
	file := filepath.Join(home, ".config", "git", "ignore")
	if data, _, err := hostfs.ReadRegular(home, home, ".gitconfig", maxGitTextBytes); err == nil {
		raw := gitconfig.New()
		if gitconfig.NewDecoder(bytes.NewReader(data)).Decode(raw) == nil {
			if v := raw.Section("core").Options.Get("excludesfile"); v != "" {
				switch {
				case strings.HasPrefix(v, "~/"):
					file = filepath.Join(home, v[2:])
				case filepath.IsAbs(v):
					file = v
				}
			}
		}
	}
	data, _, err := hostfs.ReadRegular(filepath.Dir(file), filepath.Dir(file), filepath.Base(file), maxGitTextBytes)
	if err != nil {
		return nil
	}
	return parseIgnore(data, nil)
}

// hasAlternates says whether the repository at root reads objects from
// another one.
func hasAlternates(root string) (bool, error) {
	objects, err := ObjectsDir(root)
	if err != nil {
		return false, err
	}
	_, err = hostfs.LstatBelow(objects, objects, "info/alternates")
	return err == nil, nil
}
