package images

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/distribution/reference"
	"github.com/docker/docker/api/types/build"
	"github.com/docker/docker/api/types/image"
)

// Where a Codex image keeps the native Codex (Dockerfile.codex moves it
// there), and where a task image built on another base keeps its copy.
const (
	CodexDir     = "/opt/codex"
	taskCodexDir = "/opt/codex-connector/codex"
	// TaskCodex is the Codex command in a task image.
	TaskCodex = taskCodexDir + "/bin/codex"
)

// Labels of a task image.
const (
	// BaseLabel and BaseIDLabel name the image Codex was put onto.
	BaseLabel   = "codex-connector.base"
	BaseIDLabel = "codex-connector.base-id"
	// LacksLabel lists what Codex would like and the base does not have
	// (bash, git), separated by spaces; empty when nothing lacks.
	LacksLabel = "codex-connector.lacks"
)

// TaskRepo is the repository of task images; the tag is a hash of what
// they are made of.
const TaskRepo = "codex-connector/task"

// layerRecipe is part of every task image's hash: changing how task images
// are made (the Dockerfile below) changes it, so old ones are not reused.
const layerRecipe = "codex-on-base/1"

// ErrBaseMissing is returned when a base image is not in the engine and
// the engine could not pull it.
var ErrBaseMissing = errors.New("base image not found")

// TaskImage is an image a task runs in: a base image with the Codex CLI of
// a Codex image put onto it.
type TaskImage struct {
	Ref string // codex-connector/task:<hash>
	ID  string
	// Base and BaseID name the image it was made from.
	Base, BaseID string
	// Lacks lists what the base does not have that Codex would use.
	Lacks []string
	// Volumes are the paths the image declares as volumes: the engine makes
	// an anonymous volume at each, over whatever is mounted there.
	Volumes []string
	// CodexVersion is the Codex CLI version the image carries (its label).
	CodexVersion string
}

type layerEngine interface {
	inspector
	builder
	ImageRemove(ctx context.Context, ref string, opts image.RemoveOptions) ([]image.DeleteResponse, error)
}

// ErrBadRef is returned for a base that is not an image reference.
var ErrBadRef = errors.New("not an image reference")

// CheckRef refuses a base that is not an image reference: a name such as
// golang:1.23, optionally with a registry and a digest. Nothing else ever
// reaches a Dockerfile or the engine's API.
func CheckRef(ref string) error {
	if _, err := reference.ParseNormalizedNamed(ref); err != nil {
		return fmt.Errorf("%w: %q (%v) — name an image such as golang:1.23-bookworm", ErrBadRef, ref, err)
	}
	return nil
}

// Layer returns the task image of base and the Codex image cimg (as
// Codex.Inspect returned it), building it when the engine lacks it.
// Nothing of the base's own Node is needed: the Codex CLI is a static
// binary. The build is FROM the images' ids, so what was inspected is what
// is built on.
func Layer(ctx context.Context, engine layerEngine, base string, cimg image.InspectResponse) (TaskImage, error) {
	if err := CheckRef(base); err != nil {
		return TaskImage{}, err
	}
	bimg, err := inspectOrPull(ctx, engine, base)
	if err != nil {
		return TaskImage{}, err
	}
	if bimg.Config != nil && len(bimg.Config.OnBuild) > 0 {
		// ONBUILD steps would run in this build, with the network.
		return TaskImage{}, fmt.Errorf("%s has ONBUILD steps, which would run when Codex is put onto it — build an image FROM it yourself and name that one", base)
	}
	ti, built, err := existing(ctx, engine, base, bimg, cimg)
	if err != nil || built {
		return ti, err
	}
	// Another process may be building it now: wait for it, then look again,
	// so that one image is built and every task is recorded with it.
	unlock, err := LockBuild(ctx, ti.Ref)
	if err != nil {
		return TaskImage{}, err
	}
	defer unlock()
	if ti, built, err = existing(ctx, engine, base, bimg, cimg); err != nil || built {
		return ti, err
	}
	version := ""
	if cimg.Config != nil {
		version = cimg.Config.Labels[CodexVersionLabel]
	}
	// Built under a tag of this build's own, and tagged as the task image
	// only with its label: a build that dies half-way leaves no task image
	// without one, and its tag is removed with what it held. No cache: a
	// cached check prints nothing, and what lacks would be lost.
	building := buildingTag(ti.Ref)
	defer func() { _, _ = engine.ImageRemove(context.WithoutCancel(ctx), building, image.RemoveOptions{}) }()
	out, err := buildOutput(ctx, engine, building, layerDockerfile(base, bimg, cimg.ID, version), true)
	if err != nil {
		if strings.Contains(err.Error(), "stat /bin/sh: no such file") {
			return TaskImage{}, fmt.Errorf("put Codex onto %s: the image has no /bin/sh, and Codex runs its commands in a shell — choose an image that has one (a -slim variant rather than a distroless one)", base)
		}
		return TaskImage{}, fmt.Errorf("put Codex onto %s: %w", base, err)
	}
	// What lacks is known only once the check ran inside the base; a second,
	// instant build writes it on the image. The last match counts: the
	// check prints last.
	lacks := ""
	if m := lacksLine.FindAllStringSubmatch(out, -1); m != nil {
		lacks = strings.Join(strings.Fields(m[len(m)-1][1]), " ")
	}
	if _, err := buildOutput(ctx, engine, ti.Ref, fmt.Sprintf("FROM %s\nLABEL %s=%q\n", building, LacksLabel, lacks), false); err != nil {
		return TaskImage{}, fmt.Errorf("put Codex onto %s: %w", base, err)
	}
	got, err := engine.ImageInspect(ctx, ti.Ref)
	if err != nil {
		return TaskImage{}, fmt.Errorf("inspect task image %s after its build: %w", ti.Ref, err)
	}
	ti.fill(got)
	return ti, nil
}

// existing names the task image of bimg and cimg, and says whether the
// engine has it, filled in from it when it does.
func existing(ctx context.Context, engine inspector, base string, bimg, cimg image.InspectResponse) (TaskImage, bool, error) {
	ti := TaskImage{Ref: taskRef(bimg.ID, cimg.ID), Base: base, BaseID: bimg.ID}
	got, err := engine.ImageInspect(ctx, ti.Ref)
	if cerrdefs.IsNotFound(err) {
		return ti, false, nil
	}
	if err != nil {
		return ti, false, fmt.Errorf("inspect task image %s: %w", ti.Ref, err)
	}
	ti.fill(got)
	return ti, true, nil
}

func (ti *TaskImage) fill(img image.InspectResponse) {
	ti.ID, ti.Lacks = img.ID, lacksOf(img)
	if img.Config != nil {
		ti.CodexVersion = img.Config.Labels[CodexVersionLabel]
		for v := range img.Config.Volumes {
			ti.Volumes = append(ti.Volumes, v)
		}
		slices.Sort(ti.Volumes)
	}
}

func taskRef(baseID, codexID string) string {
	sum := sha256.Sum256([]byte(layerRecipe + "\x00" + baseID + "\x00" + codexID))
	return TaskRepo + ":" + hex.EncodeToString(sum[:8])
}

// CodexImage is the Codex image itself as a task image.
func CodexImage(ref string, img image.InspectResponse) TaskImage {
	ti := TaskImage{Ref: ref}
	ti.fill(img)
	return ti
}

// Planned says which task image Layer would make of base, and whether it
// is built, without building or pulling anything: for a person's check.
// A base the engine lacks gives ErrBaseMissing.
func Planned(ctx context.Context, engine inspector, base string, cimg image.InspectResponse) (TaskImage, bool, error) {
	if err := CheckRef(base); err != nil {
		return TaskImage{}, false, err
	}
	bimg, err := engine.ImageInspect(ctx, base)
	if cerrdefs.IsNotFound(err) {
		return TaskImage{Base: base}, false, fmt.Errorf("%w: %s is not on this machine; the first task pulls it, if a registry is reachable, or `docker pull` or build it", ErrBaseMissing, base)
	}
	if err != nil {
		return TaskImage{}, false, fmt.Errorf("inspect base image %s: %w", base, err)
	}
	return existing(ctx, engine, base, bimg, cimg)
}

// inspectOrPull inspects base, and pulls it (by a build FROM it, which pulls
// what is missing as `docker build` does) when the engine lacks it.
func inspectOrPull(ctx context.Context, engine layerEngine, base string) (image.InspectResponse, error) {
	img, err := engine.ImageInspect(ctx, base)
	if err == nil {
		return img, nil
	}
	if !cerrdefs.IsNotFound(err) {
		return img, fmt.Errorf("inspect base image %s: %w", base, err)
	}
	if _, err := buildOutput(ctx, engine, "", "FROM "+base+"\n", false); err != nil {
		return img, fmt.Errorf("%w: %s is not on this machine and could not be pulled (%v) — `docker pull %s` or build it, or choose another image in config.json", ErrBaseMissing, base, err, base)
	}
	img, err = engine.ImageInspect(ctx, base)
	if err != nil {
		return img, fmt.Errorf("inspect base image %s after pulling it: %w", base, err)
	}
	return img, nil
}

// lacksLine is what the check prints; the check's own text, which the build
// also prints, spells it apart so that it never matches.
var lacksLine = regexp.MustCompile(`codex-connector-lacks:\[([a-z ]*)\]`)

// defaultPath is the engine's PATH for an image that sets none.
const defaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// layerDockerfile copies the native Codex and a CA bundle out of the Codex
// image onto base. The check runs in the base's own shell: it fails the
// build only where there is no shell at all, and says what else lacks.
func layerDockerfile(base string, bimg image.InspectResponse, codexID, version string) string {
	path := defaultPath
	if bimg.Config != nil {
		for _, e := range bimg.Config.Env {
			if v, ok := strings.CutPrefix(e, "PATH="); ok && v != "" {
				path = v
			}
		}
	}
	check := `lacks=""; for t in bash git; do command -v "$t" >/dev/null 2>&1 || lacks="$lacks $t"; done; ` +
		// An image without CA certificates gets the Codex image's, which
		// hold the bundle `make image` was given: Codex and git need them.
		`if [ ! -s /etc/ssl/certs/ca-certificates.crt ]; then mkdir -p /etc/ssl/certs && cp ` + taskCodexDir + `/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt || lacks="$lacks ca-certificates"; fi; ` +
		`echo "codex-connector-""lacks:[$lacks]"`
	var b strings.Builder
	fmt.Fprintf(&b, "FROM %s AS codex\n", codexID)
	fmt.Fprintf(&b, "FROM %s\n", bimg.ID)
	fmt.Fprintf(&b, "USER 0:0\n") // numeric: an image may have no passwd file
	fmt.Fprintf(&b, "COPY --from=codex %s %s\n", CodexDir, taskCodexDir)
	fmt.Fprintf(&b, "COPY --from=codex /etc/ssl/certs/ca-certificates.crt %s/ca-certificates.crt\n", taskCodexDir)
	fmt.Fprintf(&b, "RUN [\"/bin/sh\", \"-c\", %q]\n", check)
	// Codex's directory comes first on PATH and holds nothing but Codex, so
	// it shadows none of the image's own tools; its ripgrep comes last, for
	// an image that has none.
	fmt.Fprintf(&b, "ENV PATH=%q\n", taskCodexDir+"/bin:"+path+":"+taskCodexDir+"/codex-path")
	// Nothing of the image runs before Codex, nor beside it: the gate must
	// be the first thing in the container (see backend/docker/gate.go).
	fmt.Fprintf(&b, "ENTRYPOINT []\nCMD []\nHEALTHCHECK NONE\n")
	fmt.Fprintf(&b, "LABEL %s=%q %s=%q %s=%q\n", CodexVersionLabel, version, BaseLabel, base, BaseIDLabel, bimg.ID)
	return b.String()
}

func lacksOf(img image.InspectResponse) []string {
	if img.Config == nil {
		return nil
	}
	return strings.Fields(img.Config.Labels[LacksLabel])
}

// buildOutput builds the one-file context dockerfile, tagged tag (none when
// empty), and returns what the build printed.
func buildOutput(ctx context.Context, engine builder, tag, dockerfile string, noCache bool) (string, error) {
	ctxTar, err := tarFiles(map[string][]byte{"Dockerfile": []byte(dockerfile)}, nil)
	if err != nil {
		return "", err
	}
	opts := build.ImageBuildOptions{NoCache: noCache}
	if tag != "" {
		opts.Tags = []string{tag}
	}
	name := tag
	if name == "" {
		name = "from " + strings.TrimPrefix(strings.TrimSpace(dockerfile), "FROM ")
	}
	out := &tailBuffer{max: 64 << 10}
	err = buildImage(ctx, engine, name, ctxTar, opts, out)
	return string(out.b), err
}

// tailBuffer keeps the last max bytes written to it: a build's output can
// be as long as the image's steps make it, and only its end is read.
type tailBuffer struct {
	b   []byte
	max int
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.b = append(t.b, p...)
	if over := len(t.b) - t.max; over > 0 {
		t.b = append(t.b[:0], t.b[over:]...)
	}
	return len(p), nil
}
