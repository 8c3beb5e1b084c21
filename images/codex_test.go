package images

import (
	"context"
	"errors"
	"strings"
	"testing"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/client"
)

// noImages is an engine that has no image at all.
type noImages struct{}

func (noImages) ImageInspect(context.Context, string, ...client.ImageInspectOption) (image.InspectResponse, error) {
	return image.InspectResponse{}, cerrdefs.ErrNotFound
}

// A missing Codex image is fixed by the build that makes it: for another
// Codex version, the build of that version.
func TestAMissingCodexImageSaysWhichBuildMakesIt(t *testing.T) {
	for _, c := range []struct{ version, build string }{
		{DefaultCodexVersion, "`make image`"},
		{"", "`make image`"},
		{"0.171.0", "`make image CODEX_VERSION=0.171.0`"},
	} {
		err := Codex{Ref: RefOf(c.version), Version: c.version}.Check(context.Background(), noImages{})
		if !errors.Is(err, ErrMissing) || !strings.Contains(err.Error(), c.build) {
			t.Errorf("version %q: %v, want it to say %s", c.version, err, c.build)
		}
	}
}
