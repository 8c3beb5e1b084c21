package runner

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/codex-connector/codex-connector/backend/docker"
	"github.com/codex-connector/codex-connector/images/imagestest"
	"github.com/codex-connector/codex-connector/store"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/client"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// TestACacheCarriesNothingAcrossTrustDomains: a workspace-write task in an
// untrusted repository plants files in every cache it gets (where a
// poisoned module, package or wheel would go). A later task of the same
// repository at the same level finds them (the cache works, and the
// planting really happened); a task of another repository, at either
// writable level, and a danger-full-access task of the same repository,
// which may write .git and reach the network, find none of it.
func TestACacheCarriesNothingAcrossTrustDomains(t *testing.T) {
	caches := []string{"go", "npm", "pip"}
	h := newHarness(t, func(c *Config) { c.Caches = caches })
	untrusted, other := newRepo(t), newRepo(t)
	planted := func(name string) string { return cacheMount + "/" + name + "/planted" }
	var plant, read []string
	for _, name := range caches {
		plant = append(plant, "write "+planted(name)+" evil-"+name)
		read = append(read, "read "+planted(name))
	}
	task := h.startAndWait(t, Spec{Prompt: strings.Join(plant, "; ") + "; say planted", WorkingDirectory: untrusted, Sandbox: WorkspaceWrite})
	if task.Status != store.Completed {
		t.Fatalf("the planting task: %s (%s)", task.Status, task.Error)
	}
	for _, name := range caches {
		ran(t, task, "write "+planted(name))
	}
	readIn := func(repo, level string) string {
		task := h.startAndWait(t, Spec{Prompt: strings.Join(read, "; ") + "; say read", WorkingDirectory: repo, Sandbox: level})
		if task.Status != store.Completed {
			t.Fatalf("the reading task: %s (%s)", task.Status, task.Error)
		}
		return readFile(t, h.LogPath(task.ID))
	}
	t.Run("the same repository at the same level shares its caches", func(t *testing.T) {
		log := readIn(untrusted, WorkspaceWrite)
		for _, name := range caches {
			if !strings.Contains(log, "read "+planted(name)+": evil-"+name) {
				t.Errorf("the %s cache did not keep what the first task wrote:\n%s", name, log)
			}
		}
	})
	for _, c := range []struct{ name, repo, level string }{
		{"another repository at workspace-write gets caches of its own", other, WorkspaceWrite},
		{"another repository at danger-full-access gets caches of its own", other, DangerFullAccess},
		{"the same repository at danger-full-access gets caches of its own", untrusted, DangerFullAccess},
	} {
		t.Run(c.name, func(t *testing.T) {
			log := readIn(c.repo, c.level)
			for _, name := range caches {
				if strings.Contains(log, "evil-"+name) || !strings.Contains(log, "read "+planted(name)+": open "+planted(name)+": no such file or directory") {
					t.Errorf("the %s cache at %s:\n%s", name, c.level, log)
				}
			}
		})
	}
}

// countHelpers counts the cache-init helper containers a runner creates.
type countHelpers struct {
	*client.Client
	helpers atomic.Int32
}

func (c *countHelpers) ContainerCreate(ctx context.Context, cfg *container.Config, host *container.HostConfig, net *network.NetworkingConfig, p *ocispec.Platform, name string) (container.CreateResponse, error) {
	if cfg.Labels[LabelComponent] == "cache-init" {
		c.helpers.Add(1)
	}
	return c.Client.ContainerCreate(ctx, cfg, host, net, p, name)
}

// TestACacheVolumeIsReadiedOnceInItsLife: the helper that hands a new
// cache volume to its user runs once for the volume, not once per process:
// a one-shot client (a second runner of the home) starts none. A volume
// removed and made anew is readied again.
func TestACacheVolumeIsReadiedOnceInItsLife(t *testing.T) {
	repo := newRepo(t)
	home := t.TempDir()
	runOn := func() int32 {
		count := &countHelpers{}
		h := newHarnessOn(t, func(c *Config) { c.Home, c.Caches = home, []string{"go", "pip"} }, func(cli *client.Client) docker.Engine {
			count.Client = cli
			return count
		})
		defer h.stop()
		task := h.startAndWait(t, Spec{Prompt: "write " + cacheMount + "/go/mine ok; say done", WorkingDirectory: repo, Sandbox: WorkspaceWrite})
		if task.Status != store.Completed {
			t.Fatalf("%s (%s)", task.Status, task.Error)
		}
		ran(t, task, "write "+cacheMount+"/go/mine")
		return count.helpers.Load()
	}
	if n := runOn(); n != 1 {
		t.Fatalf("the first task's runner made %d helpers, want 1", n)
	}
	if n := runOn(); n != 0 {
		t.Fatalf("a second runner of the home made %d helpers for volumes readied before, want 0", n)
	}
	vols, err := CacheVolumes(context.Background(), docker.New(imagestest.Engine(t)), "")
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range vols {
		if v.Labels[LabelCacheRepo] == repo && v.Labels[LabelCache] == "go" {
			if err := docker.New(imagestest.Engine(t)).RemoveVolume(context.Background(), v.Name); err != nil {
				t.Fatal(err)
			}
		}
	}
	if n := runOn(); n != 1 {
		t.Fatalf("after the go cache was removed, %d helpers, want 1", n)
	}
}
