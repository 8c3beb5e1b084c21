package docker

import (
	"context"

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
