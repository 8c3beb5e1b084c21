package docker

import (
	"context"
	"errors"
	"io"

	"github.com/codex-connector/codex-connector/images"
	"github.com/docker/docker/api/types/image"
)

// The images tasks run on are the engine's: the Codex image, Codex put
// onto a toolchain base (images.Layer), and the dev container images built
// from a repository's committed Dockerfile. Which image a task gets is the
// scheduler's choice; making it ready is here.

// CodexImage is the Codex image as the engine has it.
type CodexImage struct {
	ref string
	img image.InspectResponse
}

// Codex inspects the Codex image c.
func (b *Backend) Codex(ctx context.Context, c images.Codex) (CodexImage, error) {
	img, err := c.Inspect(ctx, b.eng)
	if err != nil {
		return CodexImage{}, Error("check the Codex image", err)
	}
	return CodexImage{ref: c.Ref, img: img}, nil
}

// Plain is a task image that is the Codex image itself.
func (c CodexImage) Plain() images.TaskImage { return images.CodexImage(c.ref, c.img) }

// CanBuild says whether the engine client can build images.
func (b *Backend) CanBuild() bool { return b.builder != nil }

// errCannotBuild is a build asked of a client that cannot build.
var errCannotBuild = errors.New("this engine client cannot build images")

// layerEngine is the engine with the builder, as images.Layer wants them.
type layerEngine struct {
	Engine
	ImageBuilder
}

// Layer puts Codex onto the image base (images.Layer): built once per pair
// of image ids, FROM what was inspected.
func (b *Backend) Layer(ctx context.Context, base string, codex CodexImage) (images.TaskImage, error) {
	if b.builder == nil {
		return images.TaskImage{}, errCannotBuild
	}
	ti, err := images.Layer(ctx, layerEngine{b.eng, b.builder}, base, codex.img)
	if err != nil {
		return ti, Error("make the task's image", err)
	}
	return ti, nil
}

// BuildContext builds the image tag from a build context (images.BuildContext).
func (b *Backend) BuildContext(ctx context.Context, tag string, buildContext io.Reader, spec images.ContextBuild) error {
	if b.builder == nil {
		return errCannotBuild
	}
	return images.BuildContext(ctx, b.builder, tag, buildContext, spec)
}

// Image is an image as the engine has it.
type Image struct {
	ID string
	// Names are the tags and digests the image carries.
	Names  []string
	Labels map[string]string
}

// Image inspects the image ref; one the engine lacks wraps
// backend.ErrNotFound.
func (b *Backend) Image(ctx context.Context, ref string) (Image, error) {
	img, err := b.eng.ImageInspect(ctx, ref)
	if err != nil {
		return Image{}, Classify(err)
	}
	out := Image{ID: img.ID, Names: append(append([]string(nil), img.RepoTags...), img.RepoDigests...)}
	if img.Config != nil {
		out.Labels = img.Config.Labels
	}
	return out, nil
}
