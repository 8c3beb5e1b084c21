package runner

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"maps"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/codex-connector/codex-connector/images"
	"github.com/codex-connector/codex-connector/internal/hostfs"
	"github.com/codex-connector/codex-connector/store"
	git "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/moby/patternmatcher"
	"github.com/moby/patternmatcher/ignorefile"
)

// A dev container build runs what is committed, never what is in the work
// tree: a task that may write the work tree could otherwise put RUN steps
// into the Dockerfile (or a new build into devcontainer.json) that the
// next task's launch runs, outside any sandbox. So the dev container file,
// the Dockerfile and the whole build context come from the git objects of
// the commit HEAD names when the task is accepted, read through repoFS
// (no symlink followed, nothing written). Under workspace-write .git is
// read-only to tasks, so no task moves HEAD or plants objects; a task at
// danger-full-access can, and is trusted as the user is.

// gitReadTime bounds reading the committed dev container file when a task
// is accepted.
const gitReadTime = 30 * time.Second

// committedDevcontainer reads the dev container file of the commit HEAD
// names in the repository at root. It returns the file, where it is, the
// commit, and notes naming the files the build uses whose work tree copy
// differs from the commit's (the build still uses the commit's).
func committedDevcontainer(root string) (d images.Devcontainer, file, commit string, notes []string, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), gitReadTime)
	defer cancel()
	// A file of .git that is unsafe to read makes go-git fail with its own,
	// vaguer error (an object not found): the refusal is the reason.
	refused := &hostfs.Refusal{}
	defer func() {
		if rerr := refused.First(); rerr != nil && err != nil {
			err = fmt.Errorf("read the committed dev container file: %w", rerr)
		}
	}()
	repo, err := hostfs.OpenRepo(ctx, root, refused)
	if err != nil {
		return d, "", "", nil, fmt.Errorf("read the committed dev container file: %w", err)
	}
	head, err := repo.Head()
	if errors.Is(err, plumbing.ErrReferenceNotFound) {
		if _, wfile, werr := readDevcontainer(root); werr == nil || !errors.Is(werr, images.ErrNoDevcontainer) {
			return d, wfile, "", nil, fmt.Errorf("%s is not committed (the repository has no commit yet); a dev container build runs only what is committed — commit it", wfile)
		}
		return d, "", "", nil, images.ErrNoDevcontainer
	}
	if err != nil {
		return d, "", "", nil, fmt.Errorf("read HEAD for the dev container build: %w", err)
	}
	c, err := repo.CommitObject(head.Hash())
	if err != nil {
		return d, "", "", nil, fmt.Errorf("read the commit HEAD names (%s): %w", head.Hash(), err)
	}
	tree, err := c.Tree()
	if err != nil {
		return d, "", "", nil, fmt.Errorf("read the tree of commit %s: %w", c.Hash, err)
	}
	commit = c.Hash.String()
	for _, f := range images.DevcontainerFiles {
		data, err := committedFile(repo, tree, f, maxDevcontainerFile)
		if notInTree(err) {
			continue
		}
		if err != nil {
			return d, f, commit, nil, err
		}
		file = f
		if d, err = images.ParseDevcontainer(f, data); err != nil {
			return d, f, commit, nil, err
		}
		break
	}
	if file == "" {
		if _, wfile, werr := readDevcontainer(root); werr == nil || !errors.Is(werr, images.ErrNoDevcontainer) {
			return d, wfile, commit, nil, fmt.Errorf("%s is not committed; a dev container build runs only what is committed — commit it", wfile)
		}
		return d, "", commit, nil, images.ErrNoDevcontainer
	}
	used := []string{file}
	if d.Dockerfile != "" {
		used = append(used, path.Join(d.Context, d.Dockerfile), path.Join(d.Context, ".dockerignore"))
	}
	var differ []string
	for _, f := range used {
		committed, cerr := committedFile(repo, tree, f, maxDevcontainerFile)
		current, _, werr := hostfs.ReadRegular(root, root, f, maxDevcontainerFile)
		if (cerr == nil) != (werr == nil) || (cerr == nil && !bytes.Equal(committed, current)) {
			differ = append(differ, f)
		}
	}
	if len(differ) > 0 {
		notes = append(notes, fmt.Sprintf("%s in the work tree differ from commit %.12s (uncommitted changes, perhaps a task's); the dev container build used the committed files — commit the changes to build them", strings.Join(differ, ", "), commit))
	}
	return d, file, commit, notes, nil
}

// committedFile reads the regular file at name in tree, up to limit bytes.
func committedFile(repo *git.Repository, tree *object.Tree, name string, limit int64) ([]byte, error) {
	e, err := tree.FindEntry(name)
	if err != nil {
		return nil, err
	}
	if !e.Mode.IsFile() || e.Mode == filemode.Symlink {
		return nil, fmt.Errorf("%s is committed as %s, not a file; codex-connector does not follow it", name, e.Mode)
	}
	return committedBlob(repo, e.Hash, name, limit)
}

// notInTree says that err is go-git's for a path a tree does not hold.
func notInTree(err error) bool {
	return errors.Is(err, object.ErrFileNotFound) || errors.Is(err, object.ErrDirectoryNotFound) || errors.Is(err, object.ErrEntryNotFound)
}

// committedContext is a dev container build context in a commit.
type committedContext struct {
	repo *git.Repository
	tree *object.Tree // the context directory's
	when time.Time    // every entry's time: the commit's
	b    *store.ImageBuild
}

// openCommittedContext finds the build's context in its commit.
func openCommittedContext(repo *git.Repository, b *store.ImageBuild) (committedContext, error) {
	c, err := repo.CommitObject(plumbing.NewHash(b.Commit))
	if err != nil {
		return committedContext{}, fmt.Errorf("read commit %s, whose dev container the task builds: %w — run the task again", b.Commit, err)
	}
	tree, err := c.Tree()
	if err == nil && b.Context != "." {
		tree, err = tree.Tree(b.Context)
	}
	if err != nil {
		return committedContext{}, fmt.Errorf("find the build context %s in commit %.12s: %w — commit it", b.Context, b.Commit, err)
	}
	return committedContext{repo: repo, tree: tree, when: c.Committer.When, b: b}, nil
}

// tag names the image by what it is built of: the context's tree (which
// git names by all its content), the Dockerfile, the arguments, the target
// and the network. Another content never reuses it.
func (c committedContext) tag() string {
	h := sha256.New()
	fmt.Fprintf(h, "tree %s\x00dockerfile %s\x00target %s\x00network %t\x00", c.tree.Hash, c.b.Dockerfile, c.b.Target, c.b.Network)
	for _, k := range slices.Sorted(maps.Keys(c.b.Args)) {
		fmt.Fprintf(h, "arg %s=%s\x00", k, c.b.Args[k])
	}
	return "codex-connector/devcontainer:" + hex.EncodeToString(h.Sum(nil)[:12])
}

// write tars the context, leaving out what its .dockerignore names, as
// `docker build` would (the Dockerfile and .dockerignore always go). A
// committed symlink goes in as a symlink, which the engine resolves inside
// the context; a submodule (a commit of another repository) is left out.
func (c committedContext) write(ctx context.Context, w io.Writer) error {
	var patterns []string
	data, err := committedFile(c.repo, c.tree, ".dockerignore", 1<<20)
	switch {
	case notInTree(err):
	case err != nil:
		return err
	default:
		if patterns, err = ignorefile.ReadAll(bytes.NewReader(data)); err != nil {
			return fmt.Errorf("read %s/.dockerignore: %w", c.b.Context, err)
		}
	}
	ignore, err := patternmatcher.New(patterns)
	if err != nil {
		return fmt.Errorf("read %s/.dockerignore: %w", c.b.Context, err)
	}
	tw := tar.NewWriter(w)
	var total, files int64
	var walk func(tree *object.Tree, inTar string, depth int) error
	walk = func(tree *object.Tree, inTar string, depth int) error {
		if depth > maxContextDepth {
			return fmt.Errorf("the build context %s is deeper than %d directories", c.b.Context, maxContextDepth)
		}
		for _, e := range tree.Entries {
			if err := ctx.Err(); err != nil {
				return err
			}
			if files++; files > maxContextFiles {
				return fmt.Errorf("the build context %s holds more than %d files (add a .dockerignore)", c.b.Context, maxContextFiles)
			}
			rel := path.Join(inTar, e.Name)
			if rel != c.b.Dockerfile && rel != ".dockerignore" {
				skip, err := ignore.MatchesOrParentMatches(rel)
				if err != nil {
					return fmt.Errorf("apply %s/.dockerignore to %s: %w", c.b.Context, rel, err)
				}
				if skip && !(e.Mode == filemode.Dir && ignore.Exclusions()) {
					continue
				}
			}
			hdr := &tar.Header{Name: rel, ModTime: c.when}
			switch e.Mode {
			case filemode.Dir:
				sub, err := c.repo.TreeObject(e.Hash)
				if err != nil {
					return fmt.Errorf("read the committed directory %s: %w", rel, err)
				}
				hdr.Typeflag, hdr.Name, hdr.Mode = tar.TypeDir, rel+"/", 0o755
				if err := tw.WriteHeader(hdr); err != nil {
					return err
				}
				if err := walk(sub, rel, depth+1); err != nil {
					return err
				}
			case filemode.Symlink:
				target, err := committedBlob(c.repo, e.Hash, rel, 4096)
				if err != nil {
					return err
				}
				hdr.Typeflag, hdr.Linkname, hdr.Mode = tar.TypeSymlink, string(target), 0o777
				if err := tw.WriteHeader(hdr); err != nil {
					return err
				}
			case filemode.Regular, filemode.Deprecated, filemode.Executable:
				blob, err := c.repo.BlobObject(e.Hash)
				if err != nil {
					return fmt.Errorf("read the committed %s: %w", rel, err)
				}
				if total += blob.Size; total > maxContextBytes {
					return fmt.Errorf("the build context %s holds more than %d bytes (add a .dockerignore)", c.b.Context, maxContextBytes)
				}
				hdr.Typeflag, hdr.Size, hdr.Mode = tar.TypeReg, blob.Size, 0o644
				if e.Mode == filemode.Executable {
					hdr.Mode = 0o755
				}
				if err := tw.WriteHeader(hdr); err != nil {
					return err
				}
				r, err := blob.Reader()
				if err == nil {
					_, err = io.CopyN(tw, r, blob.Size)
					r.Close()
				}
				if err != nil {
					return fmt.Errorf("add the committed %s to the build context: %w", rel, err)
				}
			}
		}
		return nil
	}
	if err := walk(c.tree, "", 0); err != nil {
		return err
	}
	return tw.Close()
}

// committedBlob reads a blob of at most limit bytes.
func committedBlob(repo *git.Repository, h plumbing.Hash, name string, limit int64) ([]byte, error) {
	blob, err := repo.BlobObject(h)
	if err != nil {
		return nil, fmt.Errorf("read the committed %s: %w", name, err)
	}
	if blob.Size > limit {
		return nil, fmt.Errorf("the committed %s is larger than %d bytes", name, limit)
	}
	r, err := blob.Reader()
	if err != nil {
		return nil, fmt.Errorf("read the committed %s: %w", name, err)
	}
	defer r.Close()
	return io.ReadAll(io.LimitReader(r, limit))
}
