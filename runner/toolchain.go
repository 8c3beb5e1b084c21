package runner

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/codex-connector/codex-connector/backend"
	"github.com/codex-connector/codex-connector/backend/docker"
	"github.com/codex-connector/codex-connector/images"
	"github.com/codex-connector/codex-connector/internal/hostfs"
	"github.com/codex-connector/codex-connector/store"
	"github.com/distribution/reference"
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
	// Runtime is the engine's runtime of repositories no rule gives one
	// ("" the engine's default).
	Runtime string
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
	// BuildNetwork gives the RUN steps of a dev container build the
	// engine's default network (the host's services, the internet), to
	// install packages; without it they have no network at all.
	BuildNetwork bool
	// Runtime is the engine's runtime of the repositories' tasks ("" keeps
	// the default), e.g. gVisor's runsc.
	Runtime string
}

// DevcontainerUse is how far a user lets a repository's dev container file
// choose its image.
type DevcontainerUse int

const (
	DevcontainerInherit DevcontainerUse = iota
	DevcontainerOff
	// DevcontainerImage uses the file's image.
	DevcontainerImage
	// DevcontainerBuild also builds its build.dockerfile, as committed at
	// HEAD: the Dockerfile's steps run as `docker build` would run them,
	// without a network unless the rule's BuildNetwork says so.
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

// runtime is the engine's runtime of the tasks of the repository at root:
// the first matching rule's, or the default.
func (tc Toolchains) runtime(root string) string {
	for _, rule := range tc.Rules {
		if rule.matches(root) {
			if rule.Runtime != "" {
				return rule.Runtime
			}
			break
		}
	}
	return tc.Runtime
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
	use, perRepo, network := DevcontainerOff, false, false
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
			use, perRepo = rule.Devcontainer, true
		}
		network = rule.BuildNetwork
		break
	}
	if use == DevcontainerOff {
		return c.orCodex(), nil
	}
	var d images.Devcontainer
	var file, commit string
	var err error
	if use == DevcontainerBuild {
		// What a task wrote must not decide what a build runs.
		var notes []string
		d, file, commit, notes, err = committedDevcontainer(root)
		c.notes = append(c.notes, notes...)
	} else {
		d, file, err = readDevcontainer(root)
	}
	if err == nil && d.Image != "" {
		err = checkRepoChosen(file, d.Image)
	}
	switch {
	case errors.Is(err, images.ErrNoDevcontainer):
		return c.orCodex(), nil
	case err != nil && perRepo:
		return c, invalid("%v — fix it, or turn devcontainer off for this repository in config.json", err)
	case err != nil:
		// Opted in for every repository: one whose file is broken, or of
		// a kind codex-connector does not follow, runs on the image it
		// would get without one.
		c.notes = append(c.notes, fmt.Sprintf("the dev container file was not used: %v", err))
		return c.orCodex(), nil
	case d.Dockerfile != "" && use == DevcontainerBuild:
		reach := "no network"
		if network {
			reach = "the engine's default network"
		}
		c.base, c.source = "", fmt.Sprintf("%s (build.dockerfile of commit %.12s, built with %s)", file, commit, reach)
		c.build = &store.ImageBuild{File: file, Context: d.Context, Dockerfile: d.Dockerfile, Target: d.Target, Args: d.Args, Commit: commit, Network: network}
	case d.Image != "":
		c.base, c.source = d.Image, file
	default:
		c.notes = append(c.notes, file+" asks for a build of "+d.Dockerfile+`; codex-connector builds it only where you opt in for this repository ("devcontainer": "build" in its images.repos entry)`)
		return c.orCodex(), nil
	}
	if len(d.Ignored) > 0 {
		c.notes = append(c.notes, file+": only its image or build is used; "+strings.Join(d.Ignored, ", ")+" ignored")
	}
	return c, nil
}

// orCodex says so when no toolchain image was chosen.
func (c imageChoice) orCodex() imageChoice {
	if c.base == "" && c.build == nil {
		c.source = "the Codex image alone (no toolchain image configured)"
	}
	return c
}

// checkRepoChosen refuses, as an image a repository's file names, one of
// codex-connector's own: another repository's dev container build, a task
// image, the egress proxy. Those are images of this engine that hold what
// other repositories put in them.
func checkRepoChosen(file, ref string) error {
	named, err := reference.ParseNormalizedNamed(ref)
	if err != nil {
		return fmt.Errorf("%s: image: %w", file, err)
	}
	if reference.Domain(named) == "docker.io" && strings.HasPrefix(reference.Path(named), "codex-connector/") {
		return fmt.Errorf("%s names %s, one of codex-connector's own images; a repository may not choose those", file, ref)
	}
	return nil
}

// checkRepoImage checks, once the engine resolved it, an image that a
// repository's file names: checkRepoChosen sees only the name, and the
// engine also resolves an image id or a prefix of one, which may be
// another repository's task or dev container image. So the name must be
// one the image carries (a tag or digest, not an id), and the image none
// of codex-connector's own (by its tags or its labels). Layer then builds
// FROM the id inspected here, so a retag afterwards changes nothing.
func (r *Runner) checkRepoImage(ctx context.Context, file, ref string) error {
	img, err := r.docker.Image(ctx, ref)
	if errors.Is(err, backend.ErrNotFound) {
		return nil // pulled by its name at the build, from a registry
	}
	if err != nil {
		return engineError("inspect the image "+ref+" that "+file+" names", err)
	}
	named, err := reference.ParseNormalizedNamed(ref)
	if err != nil {
		return fmt.Errorf("%s: image: %w", file, err)
	}
	want := reference.TagNameOnly(named).String()
	carried := false
	for _, name := range img.Names {
		n, err := reference.ParseNormalizedNamed(name)
		if err != nil {
			continue
		}
		if n.String() == want || n.String() == named.String() {
			carried = true
		}
		if reference.Domain(n) == "docker.io" && strings.HasPrefix(reference.Path(n), "codex-connector/") {
			return fmt.Errorf("%s names %s, which is %s, one of codex-connector's own images; a repository may not choose those", file, ref, name)
		}
	}
	if !carried {
		return fmt.Errorf("%s names %s, which the engine resolves as an image id (%s), not a name the image carries; a repository may name an image only by repository:tag or digest — name it so", file, ref, img.ID)
	}
	for k := range img.Labels {
		if strings.HasPrefix(k, "codex-connector.") {
			return fmt.Errorf("%s names %s, an image codex-connector made (label %s); a repository may not choose those", file, ref, k)
		}
	}
	return nil
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
		data, size, err := hostfs.ReadRegular(root, root, file, maxDevcontainerFile)
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
func (r *Runner) taskImage(ctx context.Context, t *store.Task, cimg docker.CodexImage) (images.TaskImage, error) {
	if t.BaseImage == "" && t.ImageBuild == nil {
		return cimg.Plain(), nil
	}
	if !r.docker.CanBuild() {
		return images.TaskImage{}, errors.New("this engine client cannot build images, and the task's toolchain image needs one")
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	ctx, cancelTimeout := context.WithTimeoutCause(ctx, buildDeadline, errors.New("the image build took longer than "+buildDeadline.String()))
	defer cancelTimeout()
	// A cancel or the task's deadline stops a build that may take minutes:
	// there is no container yet for them to stop.
	stop := make(chan struct{})
	defer close(stop)
	go r.watchBuild(ctx, t.ID, cancel, stop)
	base := t.BaseImage
	if b := t.ImageBuild; b != nil {
		unlock := r.images.lock("build " + t.RepoRoot)
		var err error
		base, err = r.buildDevcontainer(ctx, t, b)
		unlock()
		if err != nil {
			return images.TaskImage{}, buildEnded(ctx, err)
		}
	}
	if t.ImageBuild == nil && !strings.HasPrefix(t.ImageSource, "config.json") {
		if err := r.checkRepoImage(ctx, t.ImageSource, base); err != nil {
			return images.TaskImage{}, err
		}
	}
	defer r.images.lock("layer " + base)()
	ti, err := r.docker.Layer(ctx, base, cimg)
	if err != nil {
		return ti, buildEnded(ctx, err)
	}
	return ti, nil
}

// watchBuild cancels a task's image build when the task is cancelled or
// its deadline passes, until stop closes.
func (r *Runner) watchBuild(ctx context.Context, id string, cancel context.CancelCauseFunc, stop <-chan struct{}) {
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-stop:
			return
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		t, err := r.store.Get(id)
		switch {
		case err != nil:
		case t.CancelRequested:
			cancel(errCancelledBeforeStart)
			return
		case !t.Deadline.IsZero() && !time.Now().Before(t.Deadline):
			cancel(errTimedOutBeforeStart)
			return
		}
	}
}

// buildEnded says why a build was stopped, when it was.
func buildEnded(ctx context.Context, err error) error {
	if cause := context.Cause(ctx); cause != nil && (errors.Is(cause, errCancelledBeforeStart) || errors.Is(cause, errTimedOutBeforeStart)) {
		return cause
	}
	return err
}

// errTimedOutBeforeStart ends a task whose deadline passed while its image
// was made.
var errTimedOutBeforeStart = errors.New("its timeout passed while its image was made, before Codex started")

// buildDevcontainer builds the repository's dev container Dockerfile as
// committed (see devcontainer_commit.go) and returns the image. The
// repository is read through a descriptor of the root checked to be the
// repository accepted with the task. Builds of one image are serialised
// across processes, and the image is checked after its build to be the
// one built from this content.
func (r *Runner) buildDevcontainer(ctx context.Context, t *store.Task, b *store.ImageBuild) (string, error) {
	if b.Commit == "" {
		return "", fmt.Errorf("the task's dev container build names no commit (it was accepted by an older codex-connector) — run the task again")
	}
	fd, err := unix.Open(t.RepoRoot, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return "", fmt.Errorf("open the repository %s for the build: %w", t.RepoRoot, err)
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return "", fmt.Errorf("stat the repository %s: %w", t.RepoRoot, err)
	}
	if t.RepoDev != 0 && (st.Dev != t.RepoDev || st.Ino != t.RepoIno) {
		return "", fmt.Errorf("%s is no longer the repository the task was given (was it moved, or replaced with a symlink?) — nothing was built; run the task again", t.RepoRoot)
	}
	// The descriptor, not the path: a swap of the path changes nothing of
	// what is read.
	repo, err := hostfs.OpenRepo(ctx, fmt.Sprintf("/proc/self/fd/%d", fd), &hostfs.Refusal{})
	if err != nil {
		return "", fmt.Errorf("open the git repository %s for the dev container build: %w", t.RepoRoot, err)
	}
	cc, err := openCommittedContext(repo, b)
	if err != nil {
		return "", err
	}
	tag := cc.tag()
	unlock, err := images.LockBuild(ctx, tag)
	if err != nil {
		return "", err
	}
	defer unlock()
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(cc.write(ctx, pw)) }()
	args := map[string]*string{}
	for k, v := range b.Args {
		args[k] = &v
	}
	spec := images.ContextBuild{Dockerfile: b.Dockerfile, Args: args, Target: b.Target, Network: "none",
		Labels: map[string]string{devcontainerLabel: tag}}
	if b.Network {
		spec.Network = ""
	}
	err = r.docker.BuildContext(ctx, tag, pr, spec)
	pr.CloseWithError(err)
	if err != nil {
		return "", fmt.Errorf("build the image of %s (%s in %s, commit %.12s), as you opted in for this repository: %w — fix and commit the Dockerfile (its RUN steps have %s), or set \"devcontainer\": true (the image only) or false in config.json", b.File, b.Dockerfile, b.Context, b.Commit, err, buildReach(b.Network))
	}
	img, err := r.docker.Image(ctx, tag)
	if err != nil {
		return "", engineError("inspect the dev container image "+tag+" just built", err)
	}
	if img.Labels[devcontainerLabel] != tag {
		return "", fmt.Errorf("the dev container image %s is not the one just built (its label %s is missing or another) — run the task again", tag, devcontainerLabel)
	}
	return tag, nil
}

// devcontainerLabel carries a dev container image's own tag, the hash of
// what it was built of, so that the image under the tag after the build is
// known to be this build's.
const devcontainerLabel = "codex-connector.devcontainer"

// buildReach says what a dev container build's RUN steps may reach.
func buildReach(network bool) string {
	if network {
		return "the engine's default network, as you opted in (buildNetwork)"
	}
	return "no network; set \"buildNetwork\": true in the repository's images.repos entry to let them install packages"
}

// Bounds of a dev container build context.
const (
	maxContextBytes = 2 << 30
	maxContextFiles = 200_000
	maxContextDepth = 64
)

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

// checkImageVolumes refuses an image that declares a volume at or below
// one of the container's own mounts: the engine would put an empty
// anonymous volume over it (the state directory, where Codex's last
// message goes, or the repository).
func checkImageVolumes(img images.TaskImage, spec backend.Spec) error {
	targets := []string{"/tmp"} // every run's tmpfs
	for _, m := range spec.Mounts {
		targets = append(targets, m.Target)
	}
	for _, v := range img.Volumes {
		v = filepath.Clean(v)
		for _, target := range targets {
			if v == target || strings.HasPrefix(v, target+"/") {
				return fmt.Errorf("the image %s declares a volume at %s, where the task has a mount of its own — use an image without that VOLUME", img.Ref, v)
			}
		}
	}
	return nil
}
