// Package runner owns the life of a task: where it may run, the container
// that executes it (its mounts, user, limits and network), copying its logs,
// reading Codex's event stream, timeouts, cancellation and the concurrency
// limit. It knows nothing of MCP.
package runner

import (
	"context"
	"fmt"
	"io"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/build"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/volume"
	"github.com/docker/docker/client"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// engine is the part of the Docker API the runner uses. *client.Client
// satisfies it; tests may wrap it to produce faults a real engine cannot
// produce on demand.
type engine interface {
	ImageInspect(ctx context.Context, ref string, opts ...client.ImageInspectOption) (image.InspectResponse, error)
	ContainerCreate(ctx context.Context, config *container.Config, host *container.HostConfig, net *network.NetworkingConfig, platform *ocispec.Platform, name string) (container.CreateResponse, error)
	ContainerStart(ctx context.Context, id string, opts container.StartOptions) error
	ContainerWait(ctx context.Context, id string, cond container.WaitCondition) (<-chan container.WaitResponse, <-chan error)
	ContainerLogs(ctx context.Context, id string, opts container.LogsOptions) (io.ReadCloser, error)
	ContainerStop(ctx context.Context, id string, opts container.StopOptions) error
	ContainerInspect(ctx context.Context, id string) (container.InspectResponse, error)
	ContainerRemove(ctx context.Context, id string, opts container.RemoveOptions) error
	ContainerList(ctx context.Context, opts container.ListOptions) ([]container.Summary, error)
	ImageList(ctx context.Context, opts image.ListOptions) ([]image.Summary, error)
	ImageRemove(ctx context.Context, ref string, opts image.RemoveOptions) ([]image.DeleteResponse, error)
	NetworkList(ctx context.Context, opts network.ListOptions) ([]network.Summary, error)
	VolumeCreate(ctx context.Context, opts volume.CreateOptions) (volume.Volume, error)
	VolumeList(ctx context.Context, opts volume.ListOptions) (volume.ListResponse, error)
	VolumeRemove(ctx context.Context, id string, force bool) error
}

// imageBuilder builds helper images (the egress proxy).
type imageBuilder interface {
	ImageBuild(ctx context.Context, buildContext io.Reader, options build.ImageBuildOptions) (build.ImageBuildResponse, error)
}

// engineError adds to err what a user can do when the engine itself is the
// problem, so that a stopped daemon reads as such and not as a failed task.
func engineError(op string, err error) error {
	if client.IsErrConnectionFailed(err) {
		return fmt.Errorf("%s: cannot reach the Docker engine: %w — start Docker (e.g. `sudo systemctl start docker`), or point DOCKER_HOST at its socket", op, err)
	}
	return fmt.Errorf("%s: %w", op, err)
}

// engineTrouble says whether a launch failed because of the engine rather
// than the task: it does not answer (worth waiting for, however long), or it
// answers with internal errors, as a shutting-down engine does ("failed to
// update store for object type *libnetwork.endpoint"), worth a few tries.
func engineTrouble(err error, tries int) bool {
	if client.IsErrConnectionFailed(err) {
		return true
	}
	return tries <= 4 && (cerrdefs.IsInternal(err) || cerrdefs.IsUnavailable(err))
}

// sleep waits for d, or returns false when the lifetime ends first.
func (r *Runner) sleep(d time.Duration) bool {
	select {
	case <-r.lifetime.Done():
		return false
	case <-time.After(d):
		return true
	}
}

// awaitEngine waits while the engine does not answer, then returns the
// container as the engine sees it (or the engine's error about it); it
// returns ctx's error when that ends first.
func (r *Runner) awaitEngine(ctx context.Context, nameOrID string) (container.InspectResponse, error) {
	pause := 500 * time.Millisecond
	for {
		// Pause first: an engine restart takes longer than this, and a
		// wait that fails for another reason must not spin.
		select {
		case <-ctx.Done():
			return container.InspectResponse{}, ctx.Err()
		case <-time.After(pause):
		}
		info, err := r.engine.ContainerInspect(ctx, nameOrID)
		if !client.IsErrConnectionFailed(err) {
			return info, err
		}
		pause = min(2*pause, 5*time.Second)
	}
}
