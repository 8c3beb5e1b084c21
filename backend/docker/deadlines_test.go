package docker

import (
	"context"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/codex-connector/codex-connector/backend"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/client"
	"github.com/docker/docker/errdefs"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// deadlineSeen records, per call, how long the context it was given had
// left (0: no deadline).
type deadlineSeen struct {
	Engine // nil: only the overridden calls are made
	left   map[string]time.Duration
}

func (d *deadlineSeen) note(name string, ctx context.Context) {
	if dl, ok := ctx.Deadline(); ok {
		d.left[name] = time.Until(dl)
	} else {
		d.left[name] = 0
	}
}

func (d *deadlineSeen) ImageInspect(ctx context.Context, _ string, _ ...client.ImageInspectOption) (image.InspectResponse, error) {
	d.note("ImageInspect", ctx)
	return image.InspectResponse{}, nil
}
func (d *deadlineSeen) ContainerCreate(ctx context.Context, _ *container.Config, _ *container.HostConfig, _ *network.NetworkingConfig, _ *ocispec.Platform, _ string) (container.CreateResponse, error) {
	d.note("ContainerCreate", ctx)
	return container.CreateResponse{}, nil
}
func (d *deadlineSeen) ContainerStart(ctx context.Context, _ string, _ container.StartOptions) error {
	d.note("ContainerStart", ctx)
	return nil
}
func (d *deadlineSeen) ContainerWait(ctx context.Context, _ string, _ container.WaitCondition) (<-chan container.WaitResponse, <-chan error) {
	d.note("ContainerWait", ctx)
	return nil, nil
}
func (d *deadlineSeen) ContainerLogs(ctx context.Context, _ string, _ container.LogsOptions) (io.ReadCloser, error) {
	d.note("ContainerLogs", ctx)
	return nil, nil
}
func (d *deadlineSeen) ContainerStop(ctx context.Context, _ string, _ container.StopOptions) error {
	d.note("ContainerStop", ctx)
	return nil
}
func (d *deadlineSeen) ContainerInspect(ctx context.Context, _ string) (container.InspectResponse, error) {
	d.note("ContainerInspect", ctx)
	return container.InspectResponse{}, nil
}
func (d *deadlineSeen) ContainerRemove(ctx context.Context, _ string, _ container.RemoveOptions) error {
	d.note("ContainerRemove", ctx)
	return nil
}
func (d *deadlineSeen) ContainerList(ctx context.Context, _ container.ListOptions) ([]container.Summary, error) {
	d.note("ContainerList", ctx)
	return nil, nil
}
func (d *deadlineSeen) ImageList(ctx context.Context, _ image.ListOptions) ([]image.Summary, error) {
	d.note("ImageList", ctx)
	return nil, nil
}
func (d *deadlineSeen) ImageRemove(ctx context.Context, _ string, _ image.RemoveOptions) ([]image.DeleteResponse, error) {
	d.note("ImageRemove", ctx)
	return nil, nil
}
func (d *deadlineSeen) NetworkList(ctx context.Context, _ network.ListOptions) ([]network.Summary, error) {
	d.note("NetworkList", ctx)
	return nil, nil
}

// Every engine call the runner makes through its engine has a deadline,
// except following logs and waiting for an exit, which last as long as the
// task; a stop's deadline covers its grace.
func TestEveryEngineCallHasADeadline(t *testing.T) {
	seen := &deadlineSeen{left: map[string]time.Duration{}}
	eng := WithDeadlines(seen)
	if WithDeadlines(eng) != eng {
		t.Error("wrapping twice nests the deadlines")
	}
	ctx := context.Background()
	grace := 100
	eng.ImageInspect(ctx, "i")
	eng.ContainerCreate(ctx, nil, nil, nil, nil, "c")
	eng.ContainerStart(ctx, "c", container.StartOptions{})
	eng.ContainerWait(ctx, "c", container.WaitConditionNextExit)
	eng.ContainerLogs(ctx, "c", container.LogsOptions{})
	eng.ContainerStop(ctx, "c", container.StopOptions{Timeout: &grace})
	eng.ContainerInspect(ctx, "c")
	eng.ContainerRemove(ctx, "c", container.RemoveOptions{})
	eng.ContainerList(ctx, container.ListOptions{})
	eng.ImageList(ctx, image.ListOptions{})
	eng.ImageRemove(ctx, "i", image.RemoveOptions{})
	eng.NetworkList(ctx, network.ListOptions{})
	if len(seen.left) != 12 {
		t.Fatalf("calls seen: %v", seen.left)
	}
	for name, left := range seen.left {
		switch name {
		case "ContainerWait", "ContainerLogs":
			if left != 0 {
				t.Errorf("%s has a deadline (%s): it lasts as long as the task", name, left)
			}
		case "ContainerStop":
			if left <= time.Duration(grace)*time.Second {
				t.Errorf("%s: its deadline (%s) does not cover its grace of %ds", name, left, grace)
			}
		default:
			if left <= 0 || left > changeDeadline {
				t.Errorf("%s: deadline %s, want one of at most %s", name, left, changeDeadline)
			}
		}
	}
}

// An engine's internal error is trouble worth trying again, unless it is
// the run's own: its runtime cannot start it, or a mount source is not the
// engine's to open.
func TestInternalErrorsOfTheRunItselfAreNotTrouble(t *testing.T) {
	for _, c := range []struct {
		msg     string
		trouble bool
	}{
		{"failed to update store for object type *libnetwork.endpoint: open : no such file or directory", true},
		{"OCI runtime start failed: starting container: running in root network namespace: unknown", false},
		{"OCI runtime create failed: container_linux.go:380: starting container process caused: read init-p: connection reset by peer: unknown", true},
		{"make cli opts(): making volume mountpoint for volume /home/u/.codex-connector/runs/x: mkdir /home/u: permission denied", false},
		{"unknown or invalid runtime name: runsc", false},
	} {
		err := Classify(errdefs.System(errors.New(c.msg)))
		if got := errors.Is(err, backend.ErrTrouble); got != c.trouble {
			t.Errorf("%q: trouble %v, want %v", c.msg, got, c.trouble)
		}
	}
}
