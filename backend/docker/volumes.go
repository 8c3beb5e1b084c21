package docker

import (
	"context"
	"fmt"
	"slices"
	"strings"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/volume"
)

// CreateVolume makes the volume name with labels, or finds the one there
// is, and returns the labels it carries: those it was made with.
func (b *Backend) CreateVolume(ctx context.Context, name string, labels map[string]string) (map[string]string, error) {
	v, err := b.eng.VolumeCreate(ctx, volume.CreateOptions{Name: name, Labels: labels})
	if err != nil {
		return nil, Error("create the cache volume "+name, err)
	}
	return v.Labels, nil
}

// Volume is a volume as Volumes lists it.
type Volume struct {
	Name   string
	Labels map[string]string
	// Mountpoint is where the engine keeps the volume's files.
	Mountpoint string
}

// Volumes lists the volumes that carry every label of match, by name; a
// label whose value is "" matches any value.
func (b *Backend) Volumes(ctx context.Context, match map[string]string) ([]Volume, error) {
	resp, err := b.eng.VolumeList(ctx, volume.ListOptions{Filters: labelFilter(match)})
	if err != nil {
		return nil, Error("list the cache volumes", err)
	}
	out := make([]Volume, 0, len(resp.Volumes))
	for _, v := range resp.Volumes {
		out = append(out, Volume{Name: v.Name, Labels: v.Labels, Mountpoint: v.Mountpoint})
	}
	slices.SortFunc(out, func(a, b Volume) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

// RemoveVolume removes a volume; one in use by a running container is
// left, and the error says so. One already gone is success.
func (b *Backend) RemoveVolume(ctx context.Context, name string) error {
	err := b.eng.VolumeRemove(ctx, name, false)
	switch {
	case err == nil, cerrdefs.IsNotFound(err):
		return nil
	case cerrdefs.IsConflict(err):
		return fmt.Errorf("%s is in use by a running task: cancel it or wait for its end, then remove the cache again", name)
	}
	return Error("remove the cache volume "+name, err)
}
