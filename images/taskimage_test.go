package images_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/codex-connector/codex-connector/images"
	"github.com/codex-connector/codex-connector/images/imagestest"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/client"
)

// layerBaseEnv names the base a helper process puts Codex onto.
const layerBaseEnv = "CODEX_CONNECTOR_TEST_LAYER_BASE"

// TestLayerInAnotherProcess is the other process of
// TestOneTaskImageWhenBuildsRace; alone it does nothing.
func TestLayerInAnotherProcess(t *testing.T) {
	base := os.Getenv(layerBaseEnv)
	if base == "" {
		return
	}
	engine := imagestest.Engine(t)
	ti, err := layer(t, engine, base)
	if err != nil {
		t.Fatal(err)
	}
	os.Stdout.WriteString("\nlayered:" + ti.ID + "\n")
}

func layer(t *testing.T, engine *client.Client, base string) (images.TaskImage, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cimg, err := images.Codex{Ref: imagestest.FakeCodex(t)}.Inspect(ctx, engine)
	if err != nil {
		return images.TaskImage{}, err
	}
	return images.Layer(ctx, engine, base, cimg)
}

// TestOneTaskImageWhenBuildsRace: two launches in this process and one in
// another put Codex onto the same new base at once. One image is built:
// each gets the one the task image's tag names, and no building tag or
// second image is left behind.
func TestOneTaskImageWhenBuildsRace(t *testing.T) {
	engine := imagestest.Engine(t)
	ctx := context.Background()
	// A base no task image was made of yet: Debian with a label of its own.
	b := make([]byte, 6)
	rand.Read(b)
	base := "codex-connector-test/race-base:" + hex.EncodeToString(b)
	buildBase(t, engine, base, "FROM codex-connector/debian:bookworm\nLABEL race="+hex.EncodeToString(b)+"\n")
	bimg, err := engine.ImageInspect(ctx, base)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { removeMadeOf(t, engine, bimg.ID, base) })

	var wg sync.WaitGroup
	ids := make([]string, 3)
	errs := make([]error, 3)
	for i := range 2 {
		wg.Go(func() {
			ti, err := layer(t, engine, base)
			ids[i], errs[i] = ti.ID, err
		})
	}
	wg.Go(func() {
		cmd := exec.Command(os.Args[0], "-test.run=^TestLayerInAnotherProcess$", "-test.count=1", "-test.v")
		cmd.Env = append(os.Environ(), layerBaseEnv+"="+base)
		out, err := cmd.CombinedOutput()
		errs[2] = err
		for _, line := range strings.Split(string(out), "\n") {
			if id, ok := strings.CutPrefix(line, "layered:"); ok {
				ids[2] = id
			}
		}
		if ids[2] == "" && err == nil {
			t.Errorf("the other process printed no image:\n%s", out)
		}
	})
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("launch %d: %v", i, err)
		}
	}
	made := madeOf(t, engine, bimg.ID)
	if len(made) != 1 {
		t.Fatalf("%d task images made of the base, want 1: %v", len(made), made)
	}
	for i, id := range ids {
		if id != made[0].ID {
			t.Errorf("launch %d got image %s, the tag names %s", i, id, made[0].ID)
		}
	}
	// Nothing of the builds is left under a tag of their own.
	all, err := engine.ImageList(ctx, image.ListOptions{All: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, img := range all {
		for _, tag := range img.RepoTags {
			if strings.Contains(tag, "-building") && strings.Contains(tag, images.TaskRepo) && img.Labels[images.BaseIDLabel] == bimg.ID {
				t.Errorf("a build's own tag is left: %s", tag)
			}
		}
	}
}

// madeOf lists the tagged task images whose label names base id baseID.
func madeOf(t *testing.T, engine *client.Client, baseID string) []image.Summary {
	t.Helper()
	list, err := engine.ImageList(context.Background(), image.ListOptions{
		Filters: filters.NewArgs(filters.Arg("label", images.BaseIDLabel+"="+baseID), filters.Arg("reference", images.TaskRepo)),
	})
	if err != nil {
		t.Fatal(err)
	}
	return list
}

func removeMadeOf(t *testing.T, engine *client.Client, baseID, base string) {
	ctx := context.Background()
	list, _ := engine.ImageList(ctx, image.ListOptions{Filters: filters.NewArgs(filters.Arg("label", images.BaseIDLabel+"="+baseID))})
	for _, img := range list {
		engine.ImageRemove(ctx, img.ID, image.RemoveOptions{Force: true, PruneChildren: true})
	}
	engine.ImageRemove(ctx, base, image.RemoveOptions{PruneChildren: true})
}

func buildBase(t *testing.T, engine *client.Client, tag, dockerfile string) {
	t.Helper()
	if err := images.BuildFiles(context.Background(), engine, tag, map[string][]byte{"Dockerfile": []byte(dockerfile)}, nil); err != nil {
		t.Fatalf("build %s: %v", tag, err)
	}
}
