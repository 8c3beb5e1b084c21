package runner

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"os"
	"testing"
	"time"

	"github.com/codex-connector/codex-connector/backend/docker"
	"github.com/codex-connector/codex-connector/images/imagestest"
	"github.com/codex-connector/codex-connector/internal/hostfs/hostfstest"
	"github.com/codex-connector/codex-connector/store"
	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/image"
)

// backdate makes a task look as if it ended (or, if running, began) at when.
func (h *harness) backdate(t *testing.T, id string, when time.Time) {
	t.Helper()
	if _, err := h.store.Update(id, func(task *store.Task) error {
		task.CreatedAt = when
		if task.Status.Final() {
			task.FinishedAt = when
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}

func TestRetentionRemovesOnlyTasksThatEndedLongAgo(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.Retention = 30 * 24 * time.Hour })
	repo := newRepo(t)
	old := h.startAndWait(t, Spec{Prompt: "say old", WorkingDirectory: repo})
	recent := h.startAndWait(t, Spec{Prompt: "say recent", WorkingDirectory: repo})
	running, err := h.Start(context.Background(), Spec{Prompt: "sleep 1h", WorkingDirectory: repo})
	if err != nil {
		t.Fatal(err)
	}
	h.waitStatus(t, running.ID, store.Running)
	longAgo := time.Now().Add(-40 * 24 * time.Hour)
	h.backdate(t, old.ID, longAgo)
	h.backdate(t, running.ID, longAgo)

	h.housekeeping(context.Background())

	if _, err := h.store.Get(old.ID); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("the old task's record is still there: %v", err)
	}
	for _, p := range []string{h.LogPath(old.ID), h.ResultPath(old.ID), h.stateDir(old.ID)} {
		if hostfstest.Exists(p) {
			t.Errorf("left of the old task: %s", p)
		}
	}
	for _, id := range []string{recent.ID, running.ID} {
		if _, err := h.store.Get(id); err != nil {
			t.Errorf("task %s was removed: %v", id, err)
		}
		if !hostfstest.Exists(h.stateDir(id)) {
			t.Errorf("the state of task %s was removed", id)
		}
	}
	if !hostfstest.Exists(h.LogPath(recent.ID)) || !hostfstest.Exists(h.ResultPath(recent.ID)) {
		t.Errorf("the log or result of the recent task was removed")
	}
	if _, err := h.Cancel(context.Background(), running.ID); err != nil {
		t.Fatal(err)
	}
}

func TestNoRetentionKeepsEverything(t *testing.T) {
	h := newHarness(t, nil)
	task := h.startAndWait(t, Spec{Prompt: "say kept", WorkingDirectory: newRepo(t)})
	h.backdate(t, task.ID, time.Now().Add(-10*365*24*time.Hour))
	h.housekeeping(context.Background())
	if _, err := h.store.Get(task.ID); err != nil || !hostfstest.Exists(h.LogPath(task.ID)) || !hostfstest.Exists(h.ResultPath(task.ID)) {
		t.Fatalf("without a retention a task was removed: %v", err)
	}
}

// The egress proxy of a data directory that was deleted is removed; the
// proxy of a directory that exists stays.
func TestProxyOfADeletedHomeIsRemoved(t *testing.T) {
	eng := imagestest.Engine(t)
	gone, kept := newHarness(t, nil), newHarness(t, nil)
	for _, h := range []*harness{gone, kept} {
		if task := h.startAndWait(t, Spec{Prompt: "say via proxy", WorkingDirectory: newRepo(t), Sandbox: ReadOnly}); task.Status != store.Completed {
			t.Fatalf("restricted task: %s %s", task.Status, task.Error)
		}
	}
	if err := os.RemoveAll(gone.home); err != nil {
		t.Fatal(err)
	}
	kept.housekeeping(context.Background())
	if _, err := eng.ContainerInspect(context.Background(), gone.proxyName()); !cerrdefs.IsNotFound(err) {
		t.Errorf("the proxy of the deleted home is still there: %v", err)
	}
	if _, err := eng.ContainerInspect(context.Background(), kept.proxyName()); err != nil {
		t.Errorf("the proxy of the kept home is gone: %v", err)
	}
}

// Egress proxy images of other binaries, unused and old, are removed; the
// current binary's image stays.
func TestOldProxyImagesAreRemoved(t *testing.T) {
	eng := imagestest.Engine(t)
	h := newHarness(t, nil)
	if task := h.startAndWait(t, Spec{Prompt: "say via proxy", WorkingDirectory: newRepo(t), Sandbox: ReadOnly}); task.Status != store.Completed {
		t.Fatalf("restricted task: %s %s", task.Status, task.Error)
	}
	old := docker.HelperRepo + ":test-old-binary-" + homeLabel(h.home)
	loadOldImage(t, old, time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC), map[string]string{LabelProxyImageHome: homeLabel(h.home)})
	h.housekeeping(context.Background())
	if _, err := eng.ImageInspect(context.Background(), old); !cerrdefs.IsNotFound(err) {
		t.Errorf("the old proxy image is still there: %v", err)
	}
	proxyRef, _ := h.helpers.ImageRef()
	if _, err := eng.ImageInspect(context.Background(), proxyRef); err != nil {
		t.Errorf("the current proxy image is gone: %v", err)
	}
	t.Run("the proxy image built is labelled with its home", func(t *testing.T) {
		img, err := eng.ImageInspect(context.Background(), proxyRef)
		// Another home may have built it first, with this same binary.
		if err != nil || img.Config == nil || img.Config.Labels[LabelProxyImageHome] == "" {
			t.Errorf("the proxy image %s has no home label: %v", proxyRef, err)
		}
	})
}

// On a shared engine a server removes the old proxy images of its own home
// only: home B's housekeeping leaves home A's image, and images without a
// home label, which it cannot tell apart from another user's.
func TestHousekeepingLeavesTheProxyImagesOfOtherHomes(t *testing.T) {
	eng := imagestest.Engine(t)
	a, b := newHarness(t, nil), newHarness(t, nil)
	long := time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)
	ofA := docker.HelperRepo + ":test-old-binary-" + homeLabel(a.home)
	unlabelled := docker.HelperRepo + ":test-unlabelled-" + homeLabel(b.home)
	loadOldImage(t, ofA, long, map[string]string{LabelProxyImageHome: homeLabel(a.home)})
	loadOldImage(t, unlabelled, long, nil)
	b.housekeeping(context.Background())
	for _, ref := range []string{ofA, unlabelled} {
		if _, err := eng.ImageInspect(context.Background(), ref); err != nil {
			t.Errorf("home B's housekeeping removed %s: %v", ref, err)
		}
	}
	// The control: home A's own housekeeping removes it.
	a.housekeeping(context.Background())
	if _, err := eng.ImageInspect(context.Background(), ofA); !cerrdefs.IsNotFound(err) {
		t.Errorf("home A's housekeeping left its own old image: %v", err)
	}
	if _, err := eng.ImageInspect(context.Background(), unlabelled); err != nil {
		t.Errorf("home A's housekeeping removed an image of no home: %v", err)
	}
}

// loadOldImage loads a one-file image tagged ref, with labels, whose
// creation time is created: a build would date it now.
func loadOldImage(t *testing.T, ref string, created time.Time, labels map[string]string) {
	t.Helper()
	var layer bytes.Buffer
	lw := tar.NewWriter(&layer)
	_ = lw.WriteHeader(&tar.Header{Name: "old", Mode: 0o644, Size: 3, ModTime: created})
	_, _ = lw.Write([]byte("old"))
	_ = lw.Close()
	diff := sha256.Sum256(layer.Bytes())
	config, _ := json.Marshal(map[string]any{
		"architecture": "amd64", "os": "linux", "created": created.Format(time.RFC3339), "config": map[string]any{"Labels": labels},
		"rootfs": map[string]any{"type": "layers", "diff_ids": []string{"sha256:" + hex.EncodeToString(diff[:])}},
	})
	manifest, _ := json.Marshal([]map[string]any{{"Config": "config.json", "RepoTags": []string{ref}, "Layers": []string{"layer.tar"}}})
	var archive bytes.Buffer
	aw := tar.NewWriter(&archive)
	for name, data := range map[string][]byte{"layer.tar": layer.Bytes(), "config.json": config, "manifest.json": manifest} {
		_ = aw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(data))})
		_, _ = aw.Write(data)
	}
	_ = aw.Close()
	eng := imagestest.Engine(t)
	res, err := eng.ImageLoad(context.Background(), &archive)
	if err != nil {
		t.Fatalf("load an old image: %v", err)
	}
	out, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if _, err := eng.ImageInspect(context.Background(), ref); err != nil {
		t.Fatalf("load an old image: %v\n%s", err, out)
	}
	t.Cleanup(func() { _, _ = eng.ImageRemove(context.Background(), ref, image.RemoveOptions{Force: true}) })
}
