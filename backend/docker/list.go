package docker

import (
	"context"
	"strings"
	"time"

	"github.com/codex-connector/codex-connector/backend"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
)

// labelFilter is the engine's filter of what carries every label of match;
// a label whose value is "" matches any value.
func labelFilter(match map[string]string) filters.Args {
	f := filters.NewArgs()
	for k, v := range match {
		if v == "" {
			f.Add("label", k)
		} else {
			f.Add("label", k+"="+v)
		}
	}
	return f
}

// List lists the containers that carry every label of match.
func (b *Backend) List(ctx context.Context, match map[string]string) ([]backend.Listed, error) {
	list, err := b.eng.ContainerList(ctx, container.ListOptions{All: true, Filters: labelFilter(match)})
	if err != nil {
		return nil, Classify(err)
	}
	out := make([]backend.Listed, 0, len(list))
	for _, c := range list {
		name := ""
		if len(c.Names) > 0 {
			name = strings.TrimPrefix(c.Names[0], "/") // as the engine lists them
		}
		out = append(out, backend.Listed{Ref: backend.Ref{ID: c.ID, Name: name}, Labels: c.Labels,
			Created: time.Unix(c.Created, 0), Running: c.State == container.StateRunning})
	}
	return out, nil
}
