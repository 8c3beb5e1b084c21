package docker

import (
	"context"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
)

// How long remove waits for a removal already under way: a removal takes
// well under a second on a healthy engine, and seconds on a busy one.
const (
	removalPause = 200 * time.Millisecond
	removalWaits = 150
)

// remove removes the container; one that is already gone is success. So
// is one whose removal is already under way ("removal … is already in
// progress", a conflict: a server killed while it removed the container
// leaves its request to the engine): it waits for that removal to end.
func (b *Backend) remove(ctx context.Context, nameOrID string) error {
	err := b.eng.ContainerRemove(ctx, nameOrID, container.RemoveOptions{Force: true, RemoveVolumes: true})
	for tries := 0; cerrdefs.IsConflict(err) && tries < removalWaits; tries++ {
		select {
		case <-ctx.Done():
			return Error("remove container "+nameOrID, err)
		case <-time.After(removalPause):
		}
		err = b.eng.ContainerRemove(ctx, nameOrID, container.RemoveOptions{Force: true, RemoveVolumes: true})
	}
	if err == nil || cerrdefs.IsNotFound(err) {
		return nil
	}
	return Error("remove container "+nameOrID, err)
}
