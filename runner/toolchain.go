package runner

import (
	"archive/tar"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/codex-connector/codex-connector/images"
	"github.com/codex-connector/codex-connector/store"
	"golang.org/x/sys/unix"
)

// A task runs in its repository's toolchain image: a base image the user
// chose (Go, Python, a JDK…) with the Codex CLI put onto it, so that Codex
// can build and test what it changes. The user chooses, in config.json;
// the repository can choose only where the user opted in, and then only
// the image: nothing in it chooses mounts, capabilities or network.

// Toolchains say which base image each repository's tasks run on.
type Toolchains struct {
	// Default is the base of repositories no rule names; "" runs them in
	// the Codex image alone.
	Default string
	// Devcontainer uses the image a repository's dev container file names,
	// for every repository (never a build: that takes a rule's opt-in).
	Devcontainer bool
	// Rules are tried in order; the first whose path matches the
	// repository root applies.
	Rules []ToolchainRule
}

// ToolchainRule chooses the base of the repositories at Path.
type ToolchainRule struct {
	// Path is a directory (the repository root or one above it), or a
	// pattern (filepath.Match) the repository root must match.
	Path string
	// Image is the base; "" keeps the default.
	Image string
	// Devcontainer is how far the repository's dev container file is
	// followed; DevcontainerInherit takes Toolchains.Devcontainer.
	Devcontainer DevcontainerUse
}

// DevcontainerUse is how far a user lets a repository's dev container file
// choose its image.
type DevcontainerUse int

const (
	DevcontainerInherit DevcontainerUse = iota
	DevcontainerOff
	// DevcontainerImage uses the file's image.
	DevcontainerImage
	// DevcontainerBuild also builds its build.dockerfile: the Dockerfile's
	// steps run, with the network, as `docker build` would run them.
	DevcontainerBuild
)

// matches says whether the rule names the repository at root.
func (rule ToolchainRule) matches(root string) bool {
	if strings.ContainsAny(rule.Path, "*?[") {
		ok, _ := filepath.Match(rule.Path, root)
		return ok
	}
	p := filepath.Clean(rule.Path)
	return root == p || strings.HasPrefix(root, p+"/") || p == "/"
}

// imageChoice is which image a repository's tasks run on, and why.
type imageChoice struct {
	base   string
	source string
	build  *store.ImageBuild
	notes  []string
}

// maxDevcontainerFile bounds what is read of a dev container file.
const maxDevcontainerFile = 1 << 20

// choose picks the base of the repository at root. A dev container file
// the user opted into that cannot be read is the caller's to fix.
func (tc Toolchains) choose(root string) (imageChoice, error) {
	c := imageChoice{base: tc.Default, source: "config.json images.default"}
	use := DevcontainerOff
	if tc.Devcontainer {
		use = DevcontainerImage
	}
	for _, rule := range tc.Rules {
		if !rule.matches(root) {
			continue
		}
		if rule.Image != "" {
			c.base, c.source = rule.Image, "config.json images.repos entry "+rule.Path
		}
		if rule.Devcontainer != DevcontainerInherit {
			use = rule.Devcontainer
		}
		break
	}
	if use != DevcontainerOff {
		d, file, err := readDevcontainer(root)
		switch {
		case errors.Is(err, images.ErrNoDevcontainer):
		case err != nil:
			return c, invalid("%v — fix it, or turn devcontainer off for this repository in config.json", err)
		case d.Dockerfile != "" && use == DevcontainerBuild:
			c.base, c.source = "", file+" (build.dockerfile, built)"
			c.build = &store.ImageBuild{File: file, Context: d.Context, Dockerfile: d.Dockerfile, Target: clipN(d.Target, maxField)}
			for _, k := range slices.Sorted(maps.Keys(d.Args)) {
				if len(c.build.Args) == 32 {
					break
				}
				if c.build.Args == nil {
					c.build.Args = map[string]string{}
				}
				c.build.Args[clipN(k, maxField)] = clipN(d.Args[k], maxField)
			}
		case d.Image != "":
			c.base, c.source = d.Image, file
		default:
			c.notes = append(c.notes, file+" asks for a build of "+d.Dockerfile+`; codex-connector builds it only where you opt in for this repository ("devcontainer": "build" in its images.repos entry)`)
		}
		if err == nil && len(d.Ignored) > 0 && (c.build != nil || c.base == d.Image) {
			c.notes = append(c.notes, file+": only the image is used; "+strings.Join(d.Ignored, ", ")+" ignored")
		}
	}
	if c.base == "" && c.build == nil {
		c.source = "the Codex image alone (no toolchain image configured)"
	}
	return c, nil
}

// ImageChoice is which image a repository's tasks would run on, for a
// person's check.
type ImageChoice struct {
	Base   string // "" with Build false: the Codex image alone
	Source string
	Build  bool // built from the repository's dev container Dockerfile
	Notes  []string
}

// Choose says which base the repository at root gets, as a task there
// would.
func (tc Toolchains) Choose(root string) (ImageChoice, error) {
	c, err := tc.choose(root)
	return ImageChoice{Base: c.base, Source: c.source, Build: c.build != nil, Notes: c.notes}, err
}

// readDevcontainer reads the repository's dev container file, never
// through a symlink, a pipe or a device the repository holds there.
func readDevcontainer(root string) (images.Devcontainer, string, error) {
	for _, file := range images.DevcontainerFiles {
		data, size, err := readRegular(root, root, file, maxDevcontainerFile)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return images.Devcontainer{}, file, fmt.Errorf("read the dev container file: %w", err)
		}
		if size > maxDevcontainerFile {
			return images.Devcontainer{}, file, fmt.Errorf("the dev container file %s is larger than %d bytes", file, maxDevcontainerFile)
		}
		d, err := images.ParseDevcontainer(file, data)
		return d, file, err
	}
	return images.Devcontainer{}, "", images.ErrNoDevcontainer
}

// imageLocks keeps two launches from building the same image at once.
type imageLocks struct {
	mu    sync.Mutex
	locks map[string]*sync.Mutex
}

func (l *imageLocks) lock(key string) func() {
	l.mu.Lock()
	if l.locks == nil {
		l.locks = map[string]*sync.Mutex{}
	}
	m := l.locks[key]
	if m == nil {
		m = &sync.Mutex{}
		l.locks[key] = m
	}
	l.mu.Unlock()
	m.Lock()
	return m.Unlock
}

// buildDeadline bounds an image build of a launch: a dev container
// Dockerfile may install a whole toolchain.
const buildDeadline = 30 * time.Minute

// taskImage makes the task's image ready at launch: the Codex image, or
// Codex put onto the chosen base (built from the repository's Dockerfile
// first, where that was chosen). It returns the image and what a reader
// should know of it.
func (r *Runner) taskImage(ctx context.Context, t *store.Task) (images.TaskImage, error) {
	if t.BaseImage == "" && t.ImageBuild == nil {
		img, err := r.engine.ImageInspect(ctx, r.cfg.Image.Ref)
		if err != nil {
			return images.TaskImage{}, engineError("inspect the Codex image", err)
		}
		return images.TaskImage{Ref: r.cfg.Image.Ref, ID: img.ID}, nil
	}
	if r.imageBuilder == nil {
		return images.TaskImage{}, errors.New("this engine client cannot build images, and the task's toolchain image needs one")
	}
	ctx, cancel := context.WithTimeout(ctx, buildDeadline)
	defer cancel()
	eng := layerEngine{r.engine, r.imageBuilder}
	base := t.BaseImage
	if b := t.ImageBuild; b != nil {
		unlock := r.images.lock("build " + t.RepoRoot)
		var err error
		base, err = r.buildDevcontainer(ctx, t.RepoRoot, b)
		unlock()
		if err != nil {
			return images.TaskImage{}, err
		}
	}
	defer r.images.lock("layer " + base)()
	ti, err := images.Layer(ctx, eng, base, r.cfg.Image)
	if err != nil {
		return ti, engineError("make the task's image", err)
	}
	return ti, nil
}

// layerEngine is the engine with the builder, as images.Layer wants them.
type layerEngine struct {
	engine
	imageBuilder
}

// buildDevcontainer builds the repository's dev container Dockerfile and
// returns the image. The context is read from the repository as the
// server reads any file a task may have made: nothing is followed out of
// it, a symlink goes in as a symlink, and a pipe or device is left out.
func (r *Runner) buildDevcontainer(ctx context.Context, root string, b *store.ImageBuild) (string, error) {
	sum := sha256.Sum256([]byte(root + "\x00" + b.File))
	tag := "codex-connector/devcontainer:" + hex.EncodeToString(sum[:8])
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(tarContext(ctx, pw, root, b.Context)) }()
	args := map[string]*string{}
	for k, v := range b.Args {
		args[k] = &v
	}
	err := images.BuildContext(ctx, r.imageBuilder, tag, pr, b.Dockerfile, args, b.Target)
	pr.CloseWithError(err)
	if err != nil {
		return "", fmt.Errorf("build the image of %s (%s in %s), as you opted in for this repository: %w — fix the Dockerfile, or set \"devcontainer\": true (the image only) or false in config.json", b.File, b.Dockerfile, b.Context, err)
	}
	return tag, nil
}

// Bounds of a dev container build context.
const (
	maxContextBytes = 2 << 30
	maxContextFiles = 200_000
)

// tarContext writes the directory rel below root as a build context. .git
// is left out: a build has no use for the repository's history, and it can
// be large.
func tarContext(ctx context.Context, w io.Writer, root, rel string) error {
	tw := tar.NewWriter(w)
	var bytes, files int64
	var walk func(dir string) error
	walk = func(dir string) error {
		entries, err := readDirBelow(root, root, dir, ctx.Err)
		if err != nil {
			return err
		}
		for _, e := range entries {
			name := e.Name()
			if name == "." || name == ".." || (dir == rel && name == ".git") {
				continue
			}
			if files++; files > maxContextFiles {
				return fmt.Errorf("the build context %s holds more than %d files", rel, maxContextFiles)
			}
			full := path.Join(dir, name)
			inTar := strings.TrimPrefix(strings.TrimPrefix(full, rel), "/")
			if rel == "." {
				inTar = full
			}
			st := e.Sys().(*unix.Stat_t)
			hdr := &tar.Header{Name: inTar, Mode: int64(st.Mode & 0o7777), ModTime: e.ModTime()}
			switch st.Mode & unix.S_IFMT {
			case unix.S_IFDIR:
				hdr.Typeflag, hdr.Name = tar.TypeDir, inTar+"/"
				if err := tw.WriteHeader(hdr); err != nil {
					return err
				}
				if err := walk(full); err != nil {
					return err
				}
			case unix.S_IFLNK:
				target, err := readlinkBelow(root, root, full)
				if err != nil {
					return err
				}
				hdr.Typeflag, hdr.Linkname = tar.TypeSymlink, target
				if err := tw.WriteHeader(hdr); err != nil {
					return err
				}
			case unix.S_IFREG:
				if bytes += st.Size; bytes > maxContextBytes {
					return fmt.Errorf("the build context %s holds more than %d bytes", rel, maxContextBytes)
				}
				f, fst, err := openRegular(root, root, full)
				if err != nil {
					return err
				}
				hdr.Typeflag, hdr.Size = tar.TypeReg, fst.Size
				err = tw.WriteHeader(hdr)
				if err == nil {
					_, err = io.CopyN(tw, f, fst.Size)
				}
				f.Close()
				if err != nil {
					return fmt.Errorf("add %s to the build context: %w", full, err)
				}
			}
		}
		return nil
	}
	if err := walk(rel); err != nil {
		return err
	}
	return tw.Close()
}

// LackNotes says what a task's image lacks, and what that costs the task.
func LackNotes(t *store.Task) []string {
	var notes []string
	base := t.BaseImage
	if t.ImageBuild != nil {
		base = "the image " + t.ImageBuild.Dockerfile + " builds"
	}
	for _, l := range t.ImageLacks {
		switch l {
		case "bash":
			notes = append(notes, "the image has no bash: Codex runs its commands with /bin/sh, and scripts that need bash fail; add bash to "+base)
		case "git":
			notes = append(notes, "the image has no git: Codex cannot diff, commit or review with git in this task; add git to "+base)
		default:
			notes = append(notes, "the image lacks "+l)
		}
	}
	return notes
}
