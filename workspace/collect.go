package workspace

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/codex-connector/codex-connector/internal/hostfs"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/format/gitignore"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/plumbing/storer"
	"golang.org/x/sys/unix"
)

// Collecting reads a work tree and a .git that a task had in its hands:
// nothing in .git is obeyed (config, hooks, alternates, commondir, info/,
// grafts, shallow), its objects are read only by hash, each at most
// maxObjectBytes and kept only if it hashes to its name, and the work tree
// is walked without following a symlink or opening anything but a regular
// file. What cannot be taken is left out with a line saying why.

// CollectSpec says which workspace to collect into which branch.
type CollectSpec struct {
	Repo   string // the user's repository root
	Dir    string // the workspace's directory
	Branch string // codex/<id>
	Start  string // the commit the task started from
	Task   string
	Owner  Owner
	// When dates the commit of what the task left uncommitted: the task's
	// end. The first collect keeps it in the workspace, and a collect
	// again (a server that died before it recorded the branch) takes that,
	// so that it makes the same commit.
	When time.Time
}

// Collected is the task's branch, as the record keeps it.
type Collected struct {
	Head string // the branch's head
	// Commits counts the task's own commits taken; Rest says whether a
	// commit of what it left uncommitted follows them.
	Commits int
	Rest    bool
	// Files are the paths that differ between Start and Head, sorted.
	Files []string
	// Left says what was not taken, and why.
	Left []string
}

// Limits of what one collect takes from a task.
const (
	maxTaskCommits = 1000
	maxImportBytes = 256 << 20
	// maxWorkBytes bounds what one collect reads of the work tree's
	// changed files, by their apparent size: it holds them in memory,
	// and a sparse file costs the task no disk.
	maxWorkBytes    = 256 << 20
	maxGitTextBytes = 1 << 20
)

// CollectBranch turns what the workspace holds into commits on its branch
// in the user's repository, and points the branch at them. It may run again
// (after a server died in it) and makes the same branch.
func CollectBranch(ctx context.Context, spec CollectSpec) (Collected, error) {
	var out Collected
	refused := &hostfs.Refusal{}
	dirs, err := hostfs.GitDirsOf(spec.Repo)
	if err != nil {
		return out, err
	}
	// The pack files stay open: the model of the task's last commit reads
	// every tree of it, and go-git opens a pack for each read otherwise.
	repo, closeRepo, err := hostfs.OpenRepoKeeping(ctx, spec.Repo, dirs, refused)
	if err != nil {
		return out, fmt.Errorf("open the repository %s: %w", spec.Repo, firstOf(refused, err))
	}
	defer closeRepo()
	start := plumbing.NewHash(spec.Start)
	startCommit, err := repo.CommitObject(start)
	if err != nil {
		return out, fmt.Errorf("the commit task %s started from, %s, is not in %s: %w", spec.Task, spec.Start, spec.Repo, err)
	}
	root := TreeDir(spec.Dir)
	im := &importer{ctx: ctx, user: repo.Storer, task: taskObjects{root}, pending: map[plumbing.Hash]pendingObject{}}
	head := start
	commits := 0
	if h, why := taskHead(root, spec.Branch); why != "" {
		out.Left = append(out.Left, "the task's commits: "+why)
	} else if h != start {
		if n, err := im.commits(h); err != nil {
			out.Left = append(out.Left, fmt.Sprintf("the task's commits (%s), taken instead as uncommitted changes: %v", h, err))
			im.pending = map[plumbing.Hash]pendingObject{}
		} else {
			head, commits = h, n
		}
	}
	get := func(h plumbing.Hash) (*object.Tree, error) { return im.tree(h) }
	headTree, err := im.commitTree(head)
	if err != nil {
		return out, err
	}
	final, err := loadTree(get, headTree, true)
	if err != nil {
		return out, fmt.Errorf("read the task's last commit %s: %w", head, err)
	}
	if head != start {
		// git run in (or below) a directory that holds a HEAD with objects
		// and refs takes it for a repository and obeys its config,
		// whatever it is called: one the task's commits made or changed
		// would reach the user's work tree at an apply.
		if p := newGitDir(final, startCommit); p != "" {
			out.Left = append(out.Left, fmt.Sprintf("the task's commits (%s), taken instead as uncommitted changes: %s is a directory git takes for a repository, which the base does not have as it is there", head, orRoot(p)))
			im.pending = map[plumbing.Hash]pendingObject{}
			head, commits = start, 0
			if headTree, err = im.commitTree(head); err != nil {
				return out, err
			}
			if final, err = loadTree(get, headTree, true); err != nil {
				return out, fmt.Errorf("read the task's start %s: %w", head, err)
			}
		}
	}
	checked, err := loadCheckout(checkoutFile(spec.Dir))
	if err != nil {
		return out, err
	}
	tracked := final.files("", nil)
	walk := &treeWalk{ctx: ctx, root: root, checked: checked, tracked: tracked, seen: map[string]bool{}, model: final, im: im}
	rootfd, err := unix.Open(root, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return out, fmt.Errorf("open the task's work tree %s: %w", root, err)
	}
	err = walk.dir(rootfd, "", nil, 0)
	unix.Close(rootfd)
	if err != nil {
		return out, err
	}
	out.Left = append(out.Left, walk.left...)
	for path := range tracked {
		if !walk.seen[path] && !walk.kept[path] {
			final.remove(path)
		}
	}
	finalTree, err := final.write(im.put)
	if err != nil {
		return out, err
	}
	if finalTree != headTree {
		sig := identity
		if sig.When, err = collectedAt(spec.Dir, spec.When); err != nil {
			return out, err
		}
		msg := fmt.Sprintf("What task %s left uncommitted\n", spec.Task)
		if head, err = putCommit(im.put, finalTree, []plumbing.Hash{head}, sig, msg); err != nil {
			return out, err
		}
		out.Rest = true
	}
	common := commonGitDir(dirs)
	w := &objectWriter{gitDir: common, owner: spec.Owner}
	if err := im.flush(w); err != nil {
		return out, fmt.Errorf("store the task's objects in %s: %w", spec.Repo, err)
	}
	if err := writeRef(common, "refs/heads/"+spec.Branch, head, spec.Owner); err != nil {
		return out, err
	}
	_ = DropStart(spec.Repo, spec.Task) // the branch references it now
	startTree, err := startCommit.Tree()
	if err != nil {
		return out, err
	}
	before, err := loadTree(func(h plumbing.Hash) (*object.Tree, error) { return repo.TreeObject(h) }, startTree.Hash, false)
	if err != nil {
		return out, err
	}
	out.Head, out.Commits = head.String(), commits
	out.Files = diffPaths(before.files("", nil), final.files("", nil))
	return out, nil
}

// diffPaths lists the paths whose entry differs between two trees.
func diffPaths(a, b map[string]treeEntry) []string {
	var out []string
	for p, e := range b {
		if a[p] != e {
			out = append(out, p)
		}
	}
	for p := range a {
		if _, ok := b[p]; !ok {
			out = append(out, p)
		}
	}
	sort.Strings(out)
	return out
}

var refName = regexp.MustCompile(`^refs/heads/[A-Za-z0-9._/-]{1,200}$`)

// taskHead is the commit the workspace's HEAD leads to, read as text from
// HEAD and its branch (loose, or in packed-refs); why says why there is
// none.
func taskHead(root, branch string) (plumbing.Hash, string) {
	// Read below the work tree, so that a .git the task made a symlink
	// (to another repository of the user) is refused, not followed.
	data, _, err := hostfs.ReadRegular(root, root, ".git/HEAD", 4096)
	if err != nil {
		return plumbing.ZeroHash, fmt.Sprintf("its HEAD cannot be read (%v)", err)
	}
	text := strings.TrimSpace(string(data))
	if plumbing.IsHash(text) {
		return plumbing.NewHash(text), ""
	}
	ref, ok := strings.CutPrefix(text, "ref: ")
	if !ok || !refName.MatchString(ref) || strings.Contains(ref, "..") {
		return plumbing.ZeroHash, fmt.Sprintf("its HEAD is %q, no branch", clipText(text))
	}
	data, _, err = hostfs.ReadRegular(root, root, ".git/"+ref, 4096)
	if err == nil {
		if h := strings.TrimSpace(string(data)); plumbing.IsHash(h) {
			return plumbing.NewHash(h), ""
		}
		return plumbing.ZeroHash, fmt.Sprintf("its branch %s holds no commit", ref)
	}
	packed, _, perr := hostfs.ReadRegular(root, root, ".git/packed-refs", maxGitTextBytes)
	if perr == nil {
		for _, line := range strings.Split(string(packed), "\n") {
			if h, name, ok := strings.Cut(line, " "); ok && name == ref && plumbing.IsHash(h) {
				return plumbing.NewHash(h), ""
			}
		}
	}
	return plumbing.ZeroHash, fmt.Sprintf("its branch %s is gone", ref)
}

func clipText(s string) string {
	if len(s) > 80 {
		return s[:80] + "…"
	}
	return s
}

// importer gathers the objects a branch needs that the user's repository
// lacks: those of the task's commits, verified, and those made of the
// work tree; flush stores them.
type importer struct {
	ctx     context.Context
	user    storer.EncodedObjectStorer
	task    taskObjects
	pending map[plumbing.Hash]pendingObject
	bytes   int64
}

type pendingObject struct {
	t    plumbing.ObjectType
	data []byte
}

func (im *importer) has(h plumbing.Hash) bool {
	if _, ok := im.pending[h]; ok {
		return true
	}
	return im.user.HasEncodedObject(h) == nil
}

// take reads h from the task's objects, verified, as type want.
func (im *importer) take(h plumbing.Hash, want plumbing.ObjectType) ([]byte, error) {
	if err := im.ctx.Err(); err != nil {
		return nil, err
	}
	if p, ok := im.pending[h]; ok {
		if p.t != want {
			return nil, fmt.Errorf("object %s is a %s, not a %s", h, p.t, want)
		}
		return p.data, nil
	}
	t, data, err := im.task.read(h, maxObjectBytes)
	if err != nil {
		return nil, err
	}
	if t != want {
		return nil, fmt.Errorf("object %s is a %s, not a %s", h, t, want)
	}
	if im.bytes += int64(len(data)); im.bytes > maxImportBytes {
		return nil, fmt.Errorf("the task's objects pass %s", hostfs.HumanSize(maxImportBytes))
	}
	im.pending[h] = pendingObject{t, data}
	return data, nil
}

// commits takes the task's commits from head back to those the user's
// repository has, with their trees and blobs, and counts them.
func (im *importer) commits(head plumbing.Hash) (int, error) {
	queue := []plumbing.Hash{head}
	n := 0
	for len(queue) > 0 {
		h := queue[0]
		queue = queue[1:]
		if im.has(h) {
			continue
		}
		if n++; n > maxTaskCommits {
			return 0, fmt.Errorf("more than %d commits", maxTaskCommits)
		}
		data, err := im.take(h, plumbing.CommitObject)
		if err != nil {
			return 0, err
		}
		c, err := canonicalCommit(h, data)
		if err != nil {
			return 0, err
		}
		if err := im.treeObjects(c.TreeHash, 0); err != nil {
			return 0, err
		}
		queue = append(queue, c.ParentHashes...)
	}
	return n, nil
}

// treeObjects takes the tree h and what is below it that the user's
// repository lacks.
func (im *importer) treeObjects(h plumbing.Hash, depth int) error {
	if im.has(h) {
		return nil
	}
	if depth > 256 {
		return fmt.Errorf("a tree nested deeper than 256")
	}
	data, err := im.take(h, plumbing.TreeObject)
	if err != nil {
		return err
	}
	t, err := canonicalTree(h, data)
	if err != nil {
		return err
	}
	for _, e := range t.Entries {
		if err := checkEntryName(e.Name); err != nil {
			return err
		}
		switch e.Mode {
		case filemode.Dir:
			if err := im.treeObjects(e.Hash, depth+1); err != nil {
				return err
			}
		case filemode.Submodule:
			// Another repository's commit: nothing of it is taken.
		default:
			if !im.has(e.Hash) {
				if _, err := im.take(e.Hash, plumbing.BlobObject); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// canonicalCommit refuses a commit that git would not have written as it
// is: what go-git decodes of it must encode back to the same bytes (no
// header it does not know, no malformed line), or a host that checks what
// is pushed (git fsck, a forge) refuses the branch.
func canonicalCommit(h plumbing.Hash, data []byte) (*object.Commit, error) {
	c, err := decodeCommit(h, data)
	if err != nil {
		return nil, err
	}
	o := &plumbing.MemoryObject{}
	if err := c.Encode(o); err != nil {
		return nil, fmt.Errorf("commit %s: %w", h, err)
	}
	r, _ := o.Reader()
	again, _ := io.ReadAll(r)
	if !bytes.Equal(again, data) {
		return nil, fmt.Errorf("commit %s is not in the form git writes (git fsck would refuse it)", h)
	}
	return c, nil
}

// canonicalTree refuses a tree that is not in the form git writes: each
// name once, in git's order, with one of its five modes, written without
// leading zeros.
func canonicalTree(h plumbing.Hash, data []byte) (*object.Tree, error) {
	t, err := decodeTree(h, data)
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	prev := ""
	for i, e := range t.Entries {
		switch e.Mode {
		case filemode.Dir, filemode.Regular, filemode.Executable, filemode.Symlink, filemode.Submodule:
		default:
			return nil, fmt.Errorf("tree %s: %s has mode %o, which git does not write", h, e.Name, e.Mode)
		}
		key := e.Name
		if e.Mode == filemode.Dir {
			key += "/"
		}
		if i > 0 && key <= prev {
			return nil, fmt.Errorf("tree %s: %s is out of git's order, or there twice", h, e.Name)
		}
		prev = key
		buf.WriteString(strconv.FormatUint(uint64(e.Mode), 8))
		buf.WriteByte(' ')
		buf.WriteString(e.Name)
		buf.WriteByte(0)
		buf.Write(e.Hash[:])
	}
	if !bytes.Equal(buf.Bytes(), data) {
		return nil, fmt.Errorf("tree %s is not in the form git writes (git fsck would refuse it)", h)
	}
	return t, nil
}

func decodeCommit(h plumbing.Hash, data []byte) (*object.Commit, error) {
	o := &plumbing.MemoryObject{}
	o.SetType(plumbing.CommitObject)
	o.Write(data)
	c := &object.Commit{}
	if err := c.Decode(o); err != nil {
		return nil, fmt.Errorf("commit %s: %w", h, err)
	}
	return c, nil
}

func decodeTree(h plumbing.Hash, data []byte) (*object.Tree, error) {
	o := &plumbing.MemoryObject{}
	o.SetType(plumbing.TreeObject)
	o.Write(data)
	t := &object.Tree{}
	if err := t.Decode(o); err != nil {
		return nil, fmt.Errorf("tree %s: %w", h, err)
	}
	return t, nil
}

// tree reads a tree taken from the task, or one of the user's repository.
func (im *importer) tree(h plumbing.Hash) (*object.Tree, error) {
	if p, ok := im.pending[h]; ok && p.t == plumbing.TreeObject {
		return decodeTree(h, p.data)
	}
	o, err := im.user.EncodedObject(plumbing.TreeObject, h)
	if err != nil {
		return nil, err
	}
	return object.DecodeTree(im.user, o)
}

// commitTree is the tree of commit h, taken or the user's.
func (im *importer) commitTree(h plumbing.Hash) (plumbing.Hash, error) {
	if p, ok := im.pending[h]; ok && p.t == plumbing.CommitObject {
		c, err := decodeCommit(h, p.data)
		if err != nil {
			return plumbing.ZeroHash, err
		}
		return c.TreeHash, nil
	}
	o, err := im.user.EncodedObject(plumbing.CommitObject, h)
	if err != nil {
		return plumbing.ZeroHash, fmt.Errorf("read commit %s: %w", h, err)
	}
	c, err := object.DecodeCommit(im.user, o)
	if err != nil {
		return plumbing.ZeroHash, err
	}
	return c.TreeHash, nil
}

// put keeps an object made of the work tree.
func (im *importer) put(t plumbing.ObjectType, data []byte) (plumbing.Hash, error) {
	h := plumbing.ComputeHash(t, data)
	if !im.has(h) {
		im.pending[h] = pendingObject{t, data}
	}
	return h, nil
}

// flush stores every kept object through w.
func (im *importer) flush(w *objectWriter) error {
	for h, p := range im.pending {
		got, err := w.put(p.t, p.data)
		if err != nil {
			return err
		}
		if got != h {
			return fmt.Errorf("object %s was kept as %s", h, got)
		}
	}
	return nil
}

// writeRef points ref of the git directory gitDir at h, whole or not at
// all.
func writeRef(gitDir, ref string, h plumbing.Hash, o Owner) error {
	dir := filepath.Dir(ref)
	if err := hostfs.MkdirBelow(gitDir, dir, 0o755, o.Chown, o.UID, o.GID); err != nil {
		return fmt.Errorf("make %s: %w", ref, err)
	}
	// git's lock: a git that holds it is changing this ref right now.
	tmp := ref + ".lock"
	if err := hostfs.WriteExclusiveBelow(gitDir, tmp, []byte(h.String()+"\n"), 0o644, o.Chown, o.UID, o.GID); err != nil {
		if errors.Is(err, os.ErrExist) {
			return fmt.Errorf("make %s: %s is there: another git is changing it; if none runs, remove the file and run the task's collect again", ref, filepath.Join(gitDir, tmp))
		}
		return fmt.Errorf("make %s: %w", ref, err)
	}
	if err := hostfs.RenameBelow(gitDir, tmp, filepath.Base(ref)); err != nil {
		_ = hostfs.RemoveBelow(gitDir, tmp)
		return fmt.Errorf("make %s: %w", ref, err)
	}
	return nil
}

// treeWalk reads a work tree into a tree: files whose stat is what the
// server checked out keep its hash; others are read and hashed.
type treeWalk struct {
	ctx     context.Context
	root    string
	checked map[string]checkedOut
	tracked map[string]treeEntry // the task's last commit
	seen    map[string]bool
	// kept are tracked paths left as committed: they could not be read.
	kept  map[string]bool
	model *treeDir
	im    *importer
	left  []string
	files int
	read  int64 // bytes of changed files read
	// patterns are the .gitignore lines taken (maxIgnorePatterns).
	patterns int
}

const maxWorkFiles = 1 << 20

func (w *treeWalk) note(format string, args ...any) {
	if len(w.left) < 100 {
		w.left = append(w.left, fmt.Sprintf(format, args...))
	}
}

func (w *treeWalk) keep(path string) {
	if w.kept == nil {
		w.kept = map[string]bool{}
	}
	w.kept[path] = true
}

// dir walks rel, with the ignore patterns of the directories above it.
// fd is the directory, open: the walk holds each directory on its way
// open rather than walking every path from the root again.
func (w *treeWalk) dir(fd int, rel string, patterns []gitignore.Pattern, depth int) error {
	if err := w.ctx.Err(); err != nil {
		return err
	}
	if depth > 256 {
		w.note("%s: nested deeper than 256, left out", rel)
		return nil
	}
	infos, err := hostfs.ReadDirFd(fd, filepath.Join(w.root, rel), w.ctx.Err)
	if err != nil {
		w.note("%s: %v", orRoot(rel), err)
		return nil
	}
	if rel != "" && gitDirShaped(infos) {
		// git takes it for a repository whatever its name, and obeys its
		// config: what the task did in it is not taken, and what is
		// committed there stays as committed.
		w.note("%s: a directory git takes for a repository (a HEAD with objects and refs); what the task did in it was left out", rel)
		for p := range w.tracked {
			if strings.HasPrefix(p, rel+"/") {
				w.keep(p)
			}
		}
		return nil
	}
	var domain []string
	if rel != "" {
		domain = strings.Split(rel, "/")
	}
	for _, fi := range infos {
		if fi.Name() == ".gitignore" && fi.Mode().IsRegular() {
			data, _, err := hostfs.ReadRegular(w.root, w.root, joinPath(rel, ".gitignore"), maxGitTextBytes)
			if err == nil {
				if w.patterns += ignoreLines(data); w.patterns > maxIgnorePatterns {
					return fmt.Errorf("the task's work tree: %w", errTooManyPatterns)
				}
				patterns = append(patterns, parseIgnore(data, domain)...)
			}
		}
	}
	match := gitignore.NewMatcher(patterns)
	for _, fi := range infos {
		name := fi.Name()
		path := joinPath(rel, name)
		parts := append(append([]string(nil), domain...), name)
		st, _ := fi.Sys().(*unix.Stat_t)
		if st == nil {
			continue
		}
		if strings.EqualFold(name, ".git") {
			if rel != "" {
				w.note("%s: a git directory of its own, left out", path)
			}
			continue
		}
		if checkEntryName(name) != nil {
			w.note("%s: a name git does not store, left out", path)
			continue
		}
		if st.Mode&unix.S_IFMT == unix.S_IFDIR {
			if e, ok := w.tracked[path]; ok && e.mode == filemode.Submodule {
				// A submodule's directory: its commit stays as committed.
				w.seen[path] = true
				continue
			}
			if match.Match(parts, true) && !w.tracksBelow(path) {
				continue
			}
			sub, err := unix.Openat(fd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
			if err != nil {
				w.note("%s: %v", path, &os.PathError{Op: "open", Path: filepath.Join(w.root, path), Err: err})
				continue
			}
			err = w.dir(sub, path, patterns, depth+1)
			unix.Close(sub)
			if err != nil {
				return err
			}
			continue
		}
		_, isTracked := w.tracked[path]
		if !isTracked && match.Match(parts, false) {
			continue
		}
		if w.files++; w.files > maxWorkFiles {
			return fmt.Errorf("the work tree has more than %d files", maxWorkFiles)
		}
		w.file(path, *st, isTracked)
	}
	return nil
}

// tracksBelow says whether the task's last commit has a file below dir.
func (w *treeWalk) tracksBelow(dir string) bool {
	return w.model.dir(dir, false) != nil
}

// file takes one file of the work tree into the model.
func (w *treeWalk) file(path string, st unix.Stat_t, tracked bool) {
	if tracked && w.tracked[path].mode == filemode.Submodule {
		w.seen[path] = true // a submodule's directory: its commit stays
		return
	}
	if c, ok := w.checked[path]; ok && c.same(st) {
		w.seen[path] = true
		w.model.set(path, treeEntry{filemode.FileMode(c.Mode), c.Hash})
		return
	}
	if st.Mode&unix.S_IFMT == unix.S_IFREG && st.Size <= maxObjectBytes {
		if w.read+st.Size > maxWorkBytes {
			w.note("%s: past the %s of changed files one collect reads, left out", path, hostfs.HumanSize(maxWorkBytes))
			if tracked {
				w.keep(path)
			}
			return
		}
		w.read += st.Size
	}
	mode, data, why := readWorkFile(w.root, path, st)
	if why != "" {
		w.note("%s: %s, left out", path, why)
		if tracked {
			w.keep(path)
		}
		return
	}
	h, _ := w.im.put(plumbing.BlobObject, data)
	w.seen[path] = true
	w.model.set(path, treeEntry{mode, h})
}

// RemoveBranchWorkspace removes a branch workspace, whatever the task left
// in it.
func RemoveBranchWorkspace(dir string) error {
	if _, err := os.Lstat(dir); os.IsNotExist(err) {
		return nil
	}
	return hostfs.RemoveTree(dir)
}

// DeleteBranch deletes the branch of the repository at root if it still
// points at head; a branch that moved since (the user committed on it) is
// left, with an error that says so. A branch already gone is no error.
func DeleteBranch(root, branch, head string) error {
	dirs, err := hostfs.GitDirsOf(root)
	if err != nil {
		return err
	}
	gitDir := commonGitDir(dirs)
	ref := "refs/heads/" + branch
	if !refName.MatchString(ref) || strings.Contains(ref, "..") {
		return fmt.Errorf("%q is no branch name codex-connector makes", branch)
	}
	data, _, err := hostfs.ReadRegular(gitDir, gitDir, ref, 4096)
	loose := err == nil
	if err != nil && !errors.Is(err, os.ErrNotExist) && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("read the branch %s: %w", branch, err)
	}
	packed, _, perr := hostfs.ReadRegular(gitDir, gitDir, "packed-refs", maxGitTextBytes*64)
	inPacked := ""
	if perr == nil {
		for _, line := range strings.Split(string(packed), "\n") {
			if h, name, ok := strings.Cut(line, " "); ok && name == ref {
				inPacked = h
			}
		}
	}
	at := strings.TrimSpace(string(data))
	if !loose {
		at = inPacked
	}
	if at == "" {
		return nil
	}
	if at != head {
		return fmt.Errorf("the branch %s has moved since the task made it (it is at %s, the task left it at %s): it holds commits that are not the task's, so it is left; delete it yourself with git branch -D %s", branch, shortHash(at), shortHash(head), branch)
	}
	if who := checkedOutAt(root, dirs, ref); who != "" {
		return fmt.Errorf("the branch %s is checked out in %s: switch that work tree to another branch first, then discard it", branch, who)
	}
	if inPacked != "" {
		// Rewritten whole, without the branch, as git does: into git's
		// lock, then renamed over.
		var kept []string
		lines := strings.Split(string(packed), "\n")
		for i := 0; i < len(lines); i++ {
			if _, name, ok := strings.Cut(lines[i], " "); ok && name == ref {
				if i+1 < len(lines) && strings.HasPrefix(lines[i+1], "^") {
					i++ // its peeled line
				}
				continue
			}
			kept = append(kept, lines[i])
		}
		st, err := hostfs.LstatBelow(gitDir, gitDir, "packed-refs")
		if err != nil {
			return err
		}
		if err := hostfs.WriteExclusiveBelow(gitDir, "packed-refs.lock", []byte(strings.Join(kept, "\n")), 0o644, os.Geteuid() == 0, int(st.Uid), int(st.Gid)); err != nil {
			if errors.Is(err, os.ErrExist) {
				return fmt.Errorf("another git is rewriting %s (packed-refs.lock is there): discard again once it is done", filepath.Join(gitDir, "packed-refs"))
			}
			return err
		}
		// What git may have changed between the read and the lock is
		// read again under it.
		again, _, err := hostfs.ReadRegular(gitDir, gitDir, "packed-refs", maxGitTextBytes*64)
		if err != nil || !bytes.Equal(again, packed) {
			_ = hostfs.RemoveBelow(gitDir, "packed-refs.lock")
			return fmt.Errorf("%s changed while the branch was discarded: discard again", filepath.Join(gitDir, "packed-refs"))
		}
		if err := hostfs.RenameBelow(gitDir, "packed-refs.lock", "packed-refs"); err != nil {
			_ = hostfs.RemoveBelow(gitDir, "packed-refs.lock")
			return err
		}
	}
	if loose {
		if err := hostfs.RemoveBelow(gitDir, ref); err != nil {
			return fmt.Errorf("delete the branch %s: %w", branch, err)
		}
	}
	return nil
}

func shortHash(h string) string { return h[:min(len(h), 12)] }

// checkedOutAt names the work tree whose HEAD is ref ("" for none): the
// repository's own, or one of its linked worktrees.
func checkedOutAt(root string, dirs hostfs.GitDirs, ref string) string {
	want := "ref: " + ref
	if data, _, err := hostfs.ReadRegular(dirs.GitDir, dirs.GitDir, "HEAD", 4096); err == nil && strings.TrimSpace(string(data)) == want {
		return root
	}
	common := commonGitDir(dirs)
	entries, _ := hostfs.ReadDirBelow(common, common, "worktrees", nil)
	for _, e := range entries {
		rel := filepath.Join("worktrees", e.Name(), "HEAD")
		if data, _, err := hostfs.ReadRegular(common, common, rel, 4096); err == nil && strings.TrimSpace(string(data)) == want {
			return filepath.Join(common, "worktrees", e.Name()) + " (a linked worktree)"
		}
	}
	return ""
}

// collectedAt is when the workspace at dir was first collected: kept
// there by that collect, else when, kept now.
func collectedAt(dir string, when time.Time) (time.Time, error) {
	path := filepath.Join(dir, "collected-at")
	if data, err := os.ReadFile(path); err == nil {
		if t, err := time.Parse(time.RFC3339, strings.TrimSpace(string(data))); err == nil {
			return t, nil
		}
	}
	when = when.UTC().Truncate(time.Second)
	if err := hostfs.WriteFileAtomic(path, []byte(when.Format(time.RFC3339)+"\n")); err != nil {
		return when, fmt.Errorf("keep the time of the collect in %s: %w", dir, err)
	}
	return when, nil
}

// gitDirShaped says whether a directory that lists infos is one git
// takes for a git directory: a HEAD, and objects and refs or a commondir.
func gitDirShaped(infos []os.FileInfo) bool {
	has := map[string]bool{}
	for _, fi := range infos {
		has[fi.Name()] = true
	}
	return gitDirRule(func(name string) bool { return has[name] })
}

// newGitDir is the first directory of the tree final that git takes for
// a git directory and that the commit start does not hold as it is: ""
// if none.
func newGitDir(final *treeDir, start *object.Commit) string {
	var found string
	var walk func(d *treeDir, path string)
	walk = func(d *treeDir, path string) {
		if found != "" {
			return
		}
		has := func(name string) bool { _, file := d.entries[name]; return file || d.dirs[name] != nil }
		if path != "" && gitDirRule(has) {
			if !sameSubtree(start, path, d) {
				found = path
				return
			}
		}
		for name, sub := range d.dirs {
			walk(sub, joinPath(path, name))
		}
	}
	walk(final, "")
	return found
}

// sameSubtree says whether the commit c holds the directory path as d is.
func sameSubtree(c *object.Commit, path string, d *treeDir) bool {
	if d.hash.IsZero() {
		return false
	}
	t, err := c.Tree()
	if err != nil {
		return false
	}
	sub, err := t.Tree(path)
	return err == nil && sub.Hash == d.hash
}
