package workspace

import (
	"context"
	"fmt"
	"sort"
	"strings"

	"github.com/codex-connector/codex-connector/internal/hostfs"
	git "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/utils/merkletrie"
)

// A branch's changes are read from the user's repository, where collecting
// put them: every object there was verified on the way in.

// FileChange is one file a branch changed against its start.
type FileChange struct {
	Path string `json:"path"`
	// Action is added, modified or deleted.
	Action     string `json:"action"`
	Insertions int    `json:"insertions"`
	Deletions  int    `json:"deletions"`
	Binary     bool   `json:"binary,omitempty"`
	// HostRun marks a file that tools on the host run or obey (a
	// Makefile, package.json, .envrc, a CI workflow): read it first.
	HostRun bool `json:"hostRun,omitempty"`
}

// Diff is a branch's changes: the files, host-run ones first, and the
// patch, cut at the size asked for.
type Diff struct {
	Files []FileChange `json:"files"`
	Patch string       `json:"patch,omitempty"`
	// Cut says the patch stops short: ask for fewer paths.
	Cut bool `json:"cut,omitempty"`
}

// maxPatchFileBytes: a larger file's changes are counted, not shown.
const maxPatchFileBytes = 4 << 20

// BranchDiff is the diff of the repository at root from commit from to
// commit to, limited to paths (files, or directories they are below) when
// any are given. With patch, the patch text is kept to max bytes.
func BranchDiff(ctx context.Context, root, from, to string, paths []string, patch bool, max int) (Diff, error) {
	var d Diff
	refused := &hostfs.Refusal{}
	repo, err := hostfs.OpenRepo(ctx, root, refused)
	if err != nil {
		return d, fmt.Errorf("open the repository %s: %w", root, firstOf(refused, err))
	}
	changes, err := treeChanges(ctx, repo, from, to)
	if err != nil {
		return d, err
	}
	// Sorted before any patch is made (host-run files first, then by
	// path), so that the patch is built in the order it is shown and no
	// text past the cut is ever held: a branch may change many large files.
	type entry struct {
		c       *object.Change
		path    string
		hostRun bool
	}
	var entries []entry
	for _, c := range changes {
		path := c.To.Name
		if path == "" {
			path = c.From.Name
		}
		if underAny(path, paths) {
			entries = append(entries, entry{c, path, isHostRun(path)})
		}
	}
	sort.SliceStable(entries, func(i, j int) bool {
		if entries[i].hostRun != entries[j].hostRun {
			return entries[i].hostRun
		}
		return entries[i].path < entries[j].path
	})
	var b strings.Builder
	for _, e := range entries {
		c, path := e.c, e.path
		fc := FileChange{Path: path, HostRun: e.hostRun}
		action, err := c.Action()
		if err != nil {
			return d, err
		}
		switch action {
		case merkletrie.Insert:
			fc.Action = "added"
		case merkletrie.Delete:
			fc.Action = "deleted"
		default:
			fc.Action = "modified"
		}
		var text string
		if large(repo, c) {
			fc.Binary = true
			text = fmt.Sprintf("diff --git a/%s b/%s\n(a file larger than %s: not shown)\n", path, path, hostfs.HumanSize(maxPatchFileBytes))
		} else {
			p, err := c.PatchContext(ctx)
			if err != nil {
				return d, fmt.Errorf("diff %s: %w", path, err)
			}
			for _, st := range p.Stats() {
				fc.Insertions += st.Addition
				fc.Deletions += st.Deletion
			}
			for _, fp := range p.FilePatches() {
				fc.Binary = fc.Binary || fp.IsBinary()
			}
			if patch && !d.Cut {
				text = p.String()
			}
		}
		d.Files = append(d.Files, fc)
		if !patch || d.Cut {
			continue
		}
		if b.Len()+len(text) > max {
			d.Cut = true
			continue
		}
		b.WriteString(text)
	}
	d.Patch = b.String()
	return d, nil
}

// treeChanges are the changes between the trees of two commits.
func treeChanges(ctx context.Context, repo *git.Repository, from, to string) (object.Changes, error) {
	trees := make([]*object.Tree, 2)
	for i, h := range []string{from, to} {
		c, err := repo.CommitObject(plumbing.NewHash(h))
		if err != nil {
			return nil, fmt.Errorf("read commit %s: %w", h, err)
		}
		if trees[i], err = c.Tree(); err != nil {
			return nil, fmt.Errorf("read the tree of %s: %w", h, err)
		}
	}
	changes, err := object.DiffTreeContext(ctx, trees[0], trees[1])
	if err != nil {
		return nil, fmt.Errorf("diff %s and %s: %w", from, to, err)
	}
	return changes, nil
}

// large says whether either side of c is past maxPatchFileBytes.
func large(repo *git.Repository, c *object.Change) bool {
	for _, e := range []object.ChangeEntry{c.From, c.To} {
		if e.Name == "" || e.TreeEntry.Hash.IsZero() {
			continue
		}
		if o, err := repo.Storer.EncodedObject(plumbing.BlobObject, e.TreeEntry.Hash); err == nil && o.Size() > maxPatchFileBytes {
			return true
		}
	}
	return false
}

// underAny says whether path is one of paths or below one; true for none.
func underAny(path string, paths []string) bool {
	if len(paths) == 0 {
		return true
	}
	for _, p := range paths {
		p = strings.Trim(p, "/")
		if p == "" || path == p || strings.HasPrefix(path, p+"/") {
			return true
		}
	}
	return false
}
