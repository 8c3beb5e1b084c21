// Package images owns the container images codex-connector runs: the Codex
// image built from Dockerfile.codex, the check that it is present and of the
// Codex version this binary was built for, and the build of helper images.
// It knows nothing of tasks.
package images

import (
	"context"
	"errors"
	"fmt"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/client"
)

// CodexVersionLabel is the image label that records which Codex CLI version
// an image carries; Dockerfile.codex sets it.
const CodexVersionLabel = "codex-connector.codex-version"

// DefaultCodexVersion is the Codex CLI version this codex-connector is built
// and tested against (see Dockerfile.codex and the Makefile).
const DefaultCodexVersion = "0.169.0"

// Repository is where `make image` puts the Codex image; its tag is the
// Codex version the image carries.
const Repository = "codex-connector/codex"

// DefaultRef is the image `make image` builds.
const DefaultRef = Repository + ":" + DefaultCodexVersion

// RefOf is the image `make image CODEX_VERSION=version` builds.
func RefOf(version string) string { return Repository + ":" + version }

// ErrMissing is returned when the Codex image is not in the engine.
var ErrMissing = errors.New("Codex image not found")

// ErrWrongVersion is returned when the image carries another Codex version.
var ErrWrongVersion = errors.New("Codex image has another Codex version")

type inspector interface {
	ImageInspect(ctx context.Context, ref string, opts ...client.ImageInspectOption) (image.InspectResponse, error)
}

// Codex names the image tasks run in and the Codex version it must carry
// ("" accepts any, for images that do not carry the label).
type Codex struct {
	Ref     string
	Version string
}

// Check says whether the image is there and carries the expected Codex
// version, and if not, how to fix it.
func (c Codex) Check(ctx context.Context, engine inspector) error {
	_, err := c.Inspect(ctx, engine)
	return err
}

// Inspect is Check that also returns the image, for a caller that goes on
// to use it.
func (c Codex) Inspect(ctx context.Context, engine inspector) (image.InspectResponse, error) {
	img, err := engine.ImageInspect(ctx, c.Ref)
	if cerrdefs.IsNotFound(err) {
		build := "make image"
		if c.Version != "" && c.Version != DefaultCodexVersion {
			build += " CODEX_VERSION=" + c.Version
		}
		return img, fmt.Errorf("%w: %s — build it with `%s` in the codex-connector source tree, or set CODEX_CONNECTOR_IMAGE to an image you have", ErrMissing, c.Ref, build)
	}
	if err != nil {
		return img, fmt.Errorf("inspect image %s: %w", c.Ref, err)
	}
	if c.Version == "" {
		return img, nil
	}
	var got string
	if img.Config != nil {
		got = img.Config.Labels[CodexVersionLabel]
	}
	if got != c.Version {
		if got == "" {
			got = "no version label"
		}
		return img, fmt.Errorf("%w: %s has %s, this codex-connector needs %s — rebuild it with `make image CODEX_VERSION=%s`", ErrWrongVersion, c.Ref, got, c.Version, c.Version)
	}
	return img, nil
}
