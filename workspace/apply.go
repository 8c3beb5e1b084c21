package workspace

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"sort"
	"strings"

	"github.com/codex-connector/codex-connector/internal/hostfs"
	git "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/object"
	"golang.org/x/sys/unix"
)

// Applying a branch writes its changes into the user's work tree as
// uncommitted changes, file by file, and never anything else: no index,
// no HEAD, no branch switch, no commit. A file the user has not touched
// since the branch's start takes the branch's version; one the user
// changed is merged line by line where the two changes do not meet; any
// other case is a conflict, and then nothing at all is written.

// Applied is what an apply did, or would have done.
type Applied struct {
	// Written are the files the branch's version (or a merge) was written
	// to, Removed those it deleted, Merged those of Written that held an
	// uncommitted change of the user's too, Already those that were
	// already as the branch has them.
	Written, Removed, Merged, Already []string
	// Conflicts are the files that cannot be applied, with why; when there
	// are any, nothing was written.
	Conflicts []string
}

// planned is one file's change to the work tree.
type planned struct {
	path   string
	remove bool
	mode   filemode.FileMode
	// perm, uid and gid are those of the user's file it replaces, kept
	// (perm 0: a new file).
	perm     uint32
	uid, gid int
	data     []byte
	// before is the user's file as the plan read it: it is written over
	// only while it is still that file.
	before stamp
	// overDir is set where the branch makes a file of a directory the
	// user has: the branch deletes all it holds, so it is removed (once
	// empty) before the file is written.
	overDir bool
}

// stamp tells whether a file of the work tree changed since it was read:
// absent, or its inode, size and change times. Any write moves ctime.
type stamp struct {
	present      bool
	ino, size    uint64
	mtime, ctime unix.Timespec
}

func stampOf(root, path string) (stamp, error) {
	st, err := hostfs.LstatBelow(root, root, path)
	if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENOTDIR) || (err != nil && belowAFile(root, path)) {
		return stamp{}, nil // nothing can be below a file
	}
	if err != nil {
		return stamp{}, err
	}
	return stamp{present: true, ino: st.Ino, size: uint64(st.Size), mtime: st.Mtim, ctime: st.Ctim}, nil
}

// belowAFile says whether a directory on path's way is a regular file.
func belowAFile(root, path string) bool {
	parts := strings.Split(path, "/")
	for i := 1; i < len(parts); i++ {
		st, err := hostfs.LstatBelow(root, root, strings.Join(parts[:i], "/"))
		if err != nil {
			return false
		}
		if st.Mode&unix.S_IFMT == unix.S_IFREG {
			return true
		}
	}
	return false
}

// unchanged says why p's file is not as the plan read it, or "".
func (p planned) unchanged(root string) string {
	if p.overDir {
		return "" // a directory, emptied by the removals before it
	}
	now, err := stampOf(root, p.path)
	if err != nil {
		return fmt.Sprintf("%s: %v", p.path, err)
	}
	if now != p.before {
		return p.path + ": changed in the work tree while the apply ran; apply again"
	}
	return ""
}

// ApplyBranch writes the changes of the repository at root from commit
// from to commit to into its work tree, as owner.
func ApplyBranch(ctx context.Context, root, from, to string, owner Owner) (Applied, error) {
	var a Applied
	refused := &hostfs.Refusal{}
	repo, err := hostfs.OpenRepo(ctx, root, refused)
	if err != nil {
		return a, fmt.Errorf("open the repository %s: %w", root, firstOf(refused, err))
	}
	changes, err := treeChanges(ctx, repo, from, to)
	if err != nil {
		return a, err
	}
	// Files the branch deletes may stand where it makes a directory.
	deleted := map[string]bool{}
	for _, c := range changes {
		if c.To.Name == "" {
			deleted[c.From.Name] = true
		}
	}
	var plan []planned
	for _, c := range changes {
		if err := ctx.Err(); err != nil {
			return a, err
		}
		p, why, err := planChange(repo, root, c, &a, deleted)
		if err != nil {
			return a, err
		}
		if why != "" {
			a.Conflicts = append(a.Conflicts, why)
		} else if p != nil {
			plan = append(plan, *p)
		}
	}
	if len(a.Conflicts) == 0 {
		afterPlan()
		// A file the user wrote while the plan was made is a conflict
		// too, found before anything is written.
		for _, p := range plan {
			if why := p.unchanged(root); why != "" {
				a.Conflicts = append(a.Conflicts, why)
			}
		}
	}
	if len(a.Conflicts) > 0 {
		sort.Strings(a.Conflicts)
		a.Written, a.Removed, a.Merged = nil, nil, nil
		return a, nil
	}
	// Removals first: a file removed may be where a directory is made.
	sort.SliceStable(plan, func(i, j int) bool { return plan[i].remove && !plan[j].remove })
	for _, p := range plan {
		if err := writePlanned(root, p, owner); err != nil {
			return a, fmt.Errorf("apply %s (the files before it are written; those after it are not): %w", p.path, err)
		}
		if p.remove {
			a.Removed = append(a.Removed, p.path)
		} else {
			a.Written = append(a.Written, p.path)
		}
	}
	return a, nil
}

// afterPlan runs between the plan and its writes: tests edit the work tree
// there, as a user could at any moment.
var afterPlan = func() {}

// side is one version of a file: absent, or a mode and content.
type side struct {
	present bool
	mode    filemode.FileMode
	data    []byte
}

func (s side) equal(o side) bool {
	if s.present != o.present {
		return false
	}
	if !s.present {
		return true
	}
	return sameKind(s.mode, o.mode) && bytes.Equal(s.data, o.data)
}

// sameKind compares modes as a work tree holds them: a file, executable
// or not, or a link.
func sameKind(a, b filemode.FileMode) bool {
	if a == filemode.Deprecated {
		a = filemode.Regular
	}
	if b == filemode.Deprecated {
		b = filemode.Regular
	}
	return a == b
}

func blobSide(repo *git.Repository, e object.ChangeEntry) (side, error) {
	if e.Name == "" {
		return side{}, nil
	}
	if e.TreeEntry.Mode == filemode.Submodule {
		return side{present: true, mode: filemode.Submodule}, nil
	}
	b, err := repo.BlobObject(e.TreeEntry.Hash)
	if err != nil {
		return side{}, fmt.Errorf("read %s of the branch: %w", e.Name, err)
	}
	if b.Size > maxObjectBytes {
		return side{}, fmt.Errorf("%s is %s on the branch, past what an apply writes", e.Name, hostfs.HumanSize(b.Size))
	}
	r, err := b.Reader()
	if err != nil {
		return side{}, err
	}
	defer r.Close()
	data, err := io.ReadAll(r)
	return side{present: true, mode: e.TreeEntry.Mode, data: data}, err
}

// planChange works out what change c makes of the user's file, or why it
// cannot be applied.
func planChange(repo *git.Repository, root string, c *object.Change, a *Applied, deleted map[string]bool) (*planned, string, error) {
	path := c.To.Name
	if path == "" {
		path = c.From.Name
	}
	if err := checkPath(path); err != nil {
		return nil, path + ": " + err.Error(), nil
	}
	base, err := blobSide(repo, c.From)
	if err != nil {
		return nil, "", err
	}
	theirs, err := blobSide(repo, c.To)
	if err != nil {
		return nil, path + ": " + err.Error(), nil
	}
	if base.mode == filemode.Submodule || theirs.mode == filemode.Submodule {
		return nil, path + ": a submodule's commit changed; update it yourself", nil
	}
	if why := parentsAreDirs(root, path, deleted); why != "" {
		return nil, why, nil
	}
	// The stamp is taken before the file is read: a write after it moves
	// the stamp, and the file is then left alone.
	before, err := stampOf(root, path)
	if err != nil {
		return nil, fmt.Sprintf("%s: %v", path, err), nil
	}
	var mine side
	overDir := false
	if !belowDeleted(path, deleted) {
		var why string
		if mine, why = workSide(root, path); why != "" {
			st, err := hostfs.LstatBelow(root, root, path)
			if err != nil || st.Mode&unix.S_IFMT != unix.S_IFDIR || !theirs.present || base.present || !onlyDeletedBelow(root, path, deleted) {
				return nil, why, nil
			}
			// A directory of the base the task made a file: what the user
			// has below it is all deleted by the branch (and checked, file
			// by file, as those deletions are planned).
			mine, overDir = side{}, true
		}
	}
	switch {
	case mine.equal(theirs):
		a.Already = append(a.Already, path)
		return nil, "", nil
	case mine.equal(base):
		if !theirs.present {
			return &planned{path: path, remove: true, before: before}, "", nil
		}
		return keepOwner(root, &planned{path: path, mode: theirs.mode, data: theirs.data, before: before, overDir: overDir}), "", nil
	case !mine.present || !theirs.present || !base.present:
		return nil, path + ": changed in the work tree since the task's start, and added or deleted by the task", nil
	case mine.mode == filemode.Symlink || theirs.mode == filemode.Symlink || base.mode == filemode.Symlink:
		return nil, path + ": a symlink changed both in the work tree and by the task", nil
	case binary(base.data) || binary(mine.data) || binary(theirs.data):
		return nil, path + ": a binary file changed both in the work tree and by the task", nil
	}
	merged, ok := merge3(string(base.data), string(mine.data), string(theirs.data))
	if !ok {
		return nil, path + ": the work tree and the task changed the same lines", nil
	}
	mode := mine.mode
	if !sameKind(base.mode, theirs.mode) {
		mode = theirs.mode // the task made it executable, or not
	}
	a.Merged = append(a.Merged, path)
	return keepOwner(root, &planned{path: path, mode: mode, data: []byte(merged), before: before}), "", nil
}

// keepOwner notes the permissions and owner of the user's file p replaces,
// so that a 0600 file stays 0600 and stays its owner's.
func keepOwner(root string, p *planned) *planned {
	if st, err := hostfs.LstatBelow(root, root, p.path); err == nil && st.Mode&unix.S_IFMT == unix.S_IFREG {
		p.perm, p.uid, p.gid = st.Mode&0o777, int(st.Uid), int(st.Gid)
	}
	return p
}

// onlyDeletedBelow says whether every file of the user's directory at
// path is one the branch deletes.
func onlyDeletedBelow(root, path string, deleted map[string]bool) bool {
	var walk func(rel string, depth int) bool
	walk = func(rel string, depth int) bool {
		if depth > hostfs.MaxWalkDepth {
			return false
		}
		list, err := hostfs.ReadDirBelow(root, root, rel, nil)
		if err != nil {
			return false
		}
		for _, fi := range list {
			p := joinPath(rel, fi.Name())
			if fi.IsDir() {
				if !walk(p, depth+1) {
					return false
				}
			} else if !deleted[p] {
				return false
			}
		}
		return true
	}
	return walk(path, 0)
}

// removeEmptyDirs removes the directory at path and the directories below
// it, all of which must be empty of anything else by now.
func removeEmptyDirs(root, path string, depth int) error {
	if depth > hostfs.MaxWalkDepth {
		return fmt.Errorf("%s nests too deep", path)
	}
	list, err := hostfs.ReadDirBelow(root, root, path, nil)
	if err != nil {
		return err
	}
	for _, fi := range list {
		if !fi.IsDir() {
			return fmt.Errorf("%s holds %s, which the user made while the apply ran; move it and apply again", path, fi.Name())
		}
		if err := removeEmptyDirs(root, joinPath(path, fi.Name()), depth+1); err != nil {
			return err
		}
	}
	return hostfs.RmdirBelow(root, path)
}

// belowDeleted says whether a directory on path's way is a file the
// branch deletes: nothing of the user's is below it.
func belowDeleted(path string, deleted map[string]bool) bool {
	parts := strings.Split(path, "/")
	for i := 1; i < len(parts); i++ {
		if deleted[strings.Join(parts[:i], "/")] {
			return true
		}
	}
	return false
}

// parentsAreDirs says why the directories on path's way in the work tree
// cannot take it: a symlink or a file where a directory must be.
func parentsAreDirs(root, path string, deleted map[string]bool) string {
	parts := strings.Split(path, "/")
	for i := 1; i < len(parts); i++ {
		rel := strings.Join(parts[:i], "/")
		st, err := hostfs.LstatBelow(root, root, rel)
		if err != nil {
			return "" // missing from here on: made when written
		}
		if deleted[rel] && st.Mode&unix.S_IFMT == unix.S_IFREG {
			return "" // the branch removes it first (and planChange checks it is the user's as committed)
		}
		if st.Mode&unix.S_IFMT != unix.S_IFDIR {
			return fmt.Sprintf("%s: %s is a %s in the work tree, where the task has a directory", path, rel, fileKind(st.Mode))
		}
		if gitDirRule(func(name string) bool { _, err := hostfs.LstatBelow(root, root, rel+"/"+name); return err == nil }) {
			// git run in it obeys its config and hooks, whatever its name:
			// a branch writes nothing into a repository of the user's.
			return fmt.Sprintf("%s: %s is a directory git takes for a repository (a HEAD with objects and refs); an apply writes nothing into one", path, rel)
		}
	}
	return ""
}

// workSide reads the user's file at path, never following it.
func workSide(root, path string) (side, string) {
	st, err := hostfs.LstatBelow(root, root, path)
	if errors.Is(err, os.ErrNotExist) || errors.Is(err, unix.ENOENT) {
		return side{}, ""
	}
	if err != nil {
		return side{}, fmt.Sprintf("%s: %v", path, err)
	}
	if st.Mode&unix.S_IFMT == unix.S_IFDIR {
		return side{}, path + ": a directory in the work tree, where the task has a file"
	}
	mode, data, why := readWorkFile(root, path, st)
	if why != "" {
		return side{}, path + ": " + why
	}
	return side{present: true, mode: mode, data: data}, ""
}

func binary(data []byte) bool {
	return bytes.IndexByte(data[:min(len(data), 8000)], 0) >= 0
}

// writePlanned writes one planned change, whole: beside the file, then
// renamed over it.
func writePlanned(root string, p planned, o Owner) error {
	if p.remove {
		if why := p.unchanged(root); why != "" {
			return errors.New(why)
		}
		return hostfs.RemoveBelow(root, p.path)
	}
	dir, name := splitPath(p.path)
	if dir != "" {
		if err := hostfs.MkdirBelow(root, dir, 0o755, o.Chown, o.UID, o.GID); err != nil {
			return err
		}
	}
	if p.overDir {
		if err := removeEmptyDirs(root, p.path, 0); err != nil {
			return err
		}
	}
	var nonce [6]byte
	_, _ = rand.Read(nonce[:])
	tmp := joinPath(dir, fmt.Sprintf(".codex-connector-apply-%x", nonce))
	if p.mode == filemode.Symlink {
		if err := hostfs.SymlinkBelow(root, tmp, string(p.data), o.Chown, o.UID, o.GID); err != nil {
			return err
		}
	} else {
		perm := uint32(0o644)
		if p.mode == filemode.Executable {
			perm = 0o755
		}
		uid, gid := o.UID, o.GID
		if p.perm != 0 {
			// The user's file's own, with the executable bits as the branch
			// has them.
			perm, uid, gid = p.perm&^0o111, p.uid, p.gid
			if p.mode == filemode.Executable {
				perm |= (p.perm & 0o444) >> 2
			}
		}
		if err := hostfs.WriteNewBelow(root, tmp, p.data, perm, o.Chown, uid, gid); err != nil {
			return err
		}
		if p.perm != 0 {
			// The umask took its share of the mode at the create.
			if err := hostfs.ChmodBelow(root, tmp, perm); err != nil {
				return err
			}
		}
	}
	// Checked again last, as close to the rename as it can be: a user's
	// write before this line is kept, and the apply stops there.
	if why := p.unchanged(root); why != "" {
		_ = hostfs.RemoveBelow(root, tmp)
		return errors.New(why)
	}
	if err := hostfs.RenameBelow(root, tmp, name); err != nil {
		_ = hostfs.RemoveBelow(root, tmp)
		return err
	}
	return nil
}

// hunk replaces the lines [start, end) of the base with lines.
type hunk struct {
	start, end int
	lines      []string
}

func splitLines(s string) []string {
	if s == "" {
		return nil
	}
	lines := strings.SplitAfter(s, "\n")
	if lines[len(lines)-1] == "" {
		lines = lines[:len(lines)-1]
	}
	return lines
}

// hunks are the changes that turn base into other, line by line, from the
// longest common subsequence of their lines.
func hunks(base, other []string) []hunk {
	n, m := len(base), len(other)
	// Common head and tail first: most edits touch a small middle.
	pre := 0
	for pre < n && pre < m && base[pre] == other[pre] {
		pre++
	}
	suf := 0
	for suf < n-pre && suf < m-pre && base[n-1-suf] == other[m-1-suf] {
		suf++
	}
	b, o := base[pre:n-suf], other[pre:m-suf]
	if len(b)*len(o) > 4<<20 {
		// Too large a middle to match line by line: one hunk.
		return []hunk{{pre, n - suf, o}}
	}
	// lcs[i][j]: the longest common subsequence of b[i:] and o[j:].
	lcs := make([][]int32, len(b)+1)
	for i := range lcs {
		lcs[i] = make([]int32, len(o)+1)
	}
	for i := len(b) - 1; i >= 0; i-- {
		for j := len(o) - 1; j >= 0; j-- {
			if b[i] == o[j] {
				lcs[i][j] = lcs[i+1][j+1] + 1
			} else {
				lcs[i][j] = max(lcs[i+1][j], lcs[i][j+1])
			}
		}
	}
	var out []hunk
	var cur *hunk
	flush := func() {
		if cur != nil {
			out = append(out, *cur)
			cur = nil
		}
	}
	i, j := 0, 0
	for i < len(b) || j < len(o) {
		switch {
		case i < len(b) && j < len(o) && b[i] == o[j]:
			flush()
			i, j = i+1, j+1
		case j < len(o) && (i == len(b) || lcs[i][j+1] >= lcs[i+1][j]):
			if cur == nil {
				cur = &hunk{start: pre + i, end: pre + i}
			}
			cur.lines = append(cur.lines, o[j])
			j++
		default:
			if cur == nil {
				cur = &hunk{start: pre + i, end: pre + i}
			}
			i++
			cur.end = pre + i
		}
	}
	flush()
	return out
}

// merge3 merges the changes base→mine and base→theirs. ok is false where
// they meet: overlapping or touching lines, changed differently.
func merge3(base, mine, theirs string) (string, bool) {
	b := splitLines(base)
	hm, ht := hunks(b, splitLines(mine)), hunks(b, splitLines(theirs))
	var all []hunk
	i, j := 0, 0
	for i < len(hm) || j < len(ht) {
		switch {
		case j == len(ht) || (i < len(hm) && hm[i].end < ht[j].start):
			all = append(all, hm[i])
			i++
		case i == len(hm) || ht[j].end < hm[i].start:
			all = append(all, ht[j])
			j++
		case hm[i].start == ht[j].start && hm[i].end == ht[j].end && slices.Equal(hm[i].lines, ht[j].lines):
			all = append(all, hm[i]) // the same change on both sides
			i, j = i+1, j+1
		default:
			return "", false
		}
	}
	var out strings.Builder
	at := 0
	for _, h := range all {
		for ; at < h.start; at++ {
			out.WriteString(b[at])
		}
		for _, l := range h.lines {
			out.WriteString(l)
		}
		at = h.end
	}
	for ; at < len(b); at++ {
		out.WriteString(b[at])
	}
	return out.String(), true
}
