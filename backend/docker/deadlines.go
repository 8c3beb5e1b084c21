package docker

import (
	"context"
	"time"

	"github.com/docker/docker/api/types"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/system"
	"github.com/docker/docker/api/types/volume"
	"github.com/docker/docker/client"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Deadlines of engine calls, fitted to what each does: a call that asks
// (inspect, list) answers in well under a second on a healthy engine; one
// that changes a container (create, start, remove) may wait on the
// engine's storage and network setup. Past its deadline a call fails with
// context.DeadlineExceeded, which the caller treats as it treats any engine
// error; no call can hang a task, a sweep or a shutdown.
const (
	askDeadline    = 20 * time.Second
	changeDeadline = 60 * time.Second
	// stopDeadline is added to the stop's own grace (SIGTERM to SIGKILL).
	stopDeadline = 30 * time.Second
)

// deadlineEngine gives every engine call of the runner a deadline, after
// Nomad's dockerAPIQueryContext. Following logs and waiting for an exit
// last as long as the task: they have none, and end with their context.
type deadlineEngine struct{ Engine }

// WithDeadlines wraps eng, once.
func WithDeadlines(eng Engine) Engine {
	if d, ok := eng.(deadlineEngine); ok {
		return d
	}
	return deadlineEngine{eng}
}

func bounded[T any](ctx context.Context, d time.Duration, call func(context.Context) (T, error)) (T, error) {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	return call(ctx)
}

func (e deadlineEngine) ImageInspect(ctx context.Context, ref string, opts ...client.ImageInspectOption) (image.InspectResponse, error) {
	return bounded(ctx, askDeadline, func(ctx context.Context) (image.InspectResponse, error) {
		return e.Engine.ImageInspect(ctx, ref, opts...)
	})
}

func (e deadlineEngine) ContainerCreate(ctx context.Context, config *container.Config, host *container.HostConfig, net *network.NetworkingConfig, platform *ocispec.Platform, name string) (container.CreateResponse, error) {
	return bounded(ctx, changeDeadline, func(ctx context.Context) (container.CreateResponse, error) {
		return e.Engine.ContainerCreate(ctx, config, host, net, platform, name)
	})
}

func (e deadlineEngine) ContainerStart(ctx context.Context, id string, opts container.StartOptions) error {
	_, err := bounded(ctx, changeDeadline, func(ctx context.Context) (struct{}, error) {
		return struct{}{}, e.Engine.ContainerStart(ctx, id, opts)
	})
	return err
}

func (e deadlineEngine) ContainerStop(ctx context.Context, id string, opts container.StopOptions) error {
	d := stopDeadline
	if opts.Timeout != nil && *opts.Timeout > 0 {
		d += time.Duration(*opts.Timeout) * time.Second
	} else {
		d += 10 * time.Second // the engine's default grace
	}
	_, err := bounded(ctx, d, func(ctx context.Context) (struct{}, error) {
		return struct{}{}, e.Engine.ContainerStop(ctx, id, opts)
	})
	return err
}

func (e deadlineEngine) ContainerInspect(ctx context.Context, id string) (container.InspectResponse, error) {
	return bounded(ctx, askDeadline, func(ctx context.Context) (container.InspectResponse, error) {
		return e.Engine.ContainerInspect(ctx, id)
	})
}

func (e deadlineEngine) ContainerRemove(ctx context.Context, id string, opts container.RemoveOptions) error {
	_, err := bounded(ctx, changeDeadline, func(ctx context.Context) (struct{}, error) {
		return struct{}{}, e.Engine.ContainerRemove(ctx, id, opts)
	})
	return err
}

func (e deadlineEngine) ContainerList(ctx context.Context, opts container.ListOptions) ([]container.Summary, error) {
	return bounded(ctx, askDeadline, func(ctx context.Context) ([]container.Summary, error) {
		return e.Engine.ContainerList(ctx, opts)
	})
}

func (e deadlineEngine) ImageList(ctx context.Context, opts image.ListOptions) ([]image.Summary, error) {
	return bounded(ctx, askDeadline, func(ctx context.Context) ([]image.Summary, error) {
		return e.Engine.ImageList(ctx, opts)
	})
}

func (e deadlineEngine) ImageRemove(ctx context.Context, ref string, opts image.RemoveOptions) ([]image.DeleteResponse, error) {
	return bounded(ctx, changeDeadline, func(ctx context.Context) ([]image.DeleteResponse, error) {
		return e.Engine.ImageRemove(ctx, ref, opts)
	})
}

func (e deadlineEngine) NetworkList(ctx context.Context, opts network.ListOptions) ([]network.Summary, error) {
	return bounded(ctx, askDeadline, func(ctx context.Context) ([]network.Summary, error) {
		return e.Engine.NetworkList(ctx, opts)
	})
}

func (e deadlineEngine) VolumeCreate(ctx context.Context, opts volume.CreateOptions) (volume.Volume, error) {
	return bounded(ctx, changeDeadline, func(ctx context.Context) (volume.Volume, error) {
		return e.Engine.VolumeCreate(ctx, opts)
	})
}

func (e deadlineEngine) ServerVersion(ctx context.Context) (types.Version, error) {
	return bounded(ctx, askDeadline, e.Engine.ServerVersion)
}

func (e deadlineEngine) Info(ctx context.Context) (system.Info, error) {
	return bounded(ctx, askDeadline, e.Engine.Info)
}
