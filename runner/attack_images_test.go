package runner

import (
	"context"
	"strings"
	"testing"

	"github.com/codex-connector/codex-connector/images"
	"github.com/codex-connector/codex-connector/images/imagestest"
	"github.com/codex-connector/codex-connector/store"
)

// TestARepositoryCannotNameAnotherRepositorysImage: a dev container file
// names an image by what the engine resolves besides names (its id, a
// prefix of it, sha256:…), or by a name of an image codex-connector made
// (another repository's task image carries its labels). Each is refused
// once resolved, with the reason; the same image named by its tag runs.
func TestARepositoryCannotNameAnotherRepositorysImage(t *testing.T) {
	marker := markerImage(t, "another repositorys image")
	eng := imagestest.Engine(t)
	img, err := eng.ImageInspect(context.Background(), marker)
	if err != nil {
		t.Fatal(err)
	}
	hexID := strings.TrimPrefix(img.ID, "sha256:")
	// A copy of what codex-connector makes, under a name a repository may
	// write: the labels of a task image.
	labelled := "codex-connector-test/labelled:x"
	if err := images.BuildFiles(context.Background(), eng, labelled, map[string][]byte{
		"Dockerfile": []byte("FROM " + marker + "\nLABEL " + images.BaseLabel + "=" + marker + "\n")}, nil); err != nil {
		t.Fatal(err)
	}
	h := newHarness(t, func(c *Config) { c.Toolchains = Toolchains{Devcontainer: true} })
	run := func(t *testing.T, name string) (*store.Task, string) {
		t.Helper()
		repo := newRepo(t)
		writeRepoFiles(t, repo, map[string]string{".devcontainer/devcontainer.json": `{"image": "` + name + `"}`})
		task := h.startAndWait(t, Spec{Prompt: "read /etc/codex-connector-marker; say done", WorkingDirectory: repo, Sandbox: WorkspaceWrite})
		return task, readLog(h.LogPath(task.ID))
	}
	t.Run("named by its tag, it runs (the control)", func(t *testing.T) {
		task, log := run(t, marker)
		if task.Status != store.Completed || !strings.Contains(log, "another repositorys image") {
			t.Fatalf("%s (%s):\n%s", task.Status, task.Error, log)
		}
	})
	for _, c := range []struct{ what, name, reason string }{
		{"its id", img.ID, "resolves as an image id"},
		// Not a reference at all: the file is not used, and the task
		// runs on the Codex image alone, with the reason in its notes.
		{"its hex id", hexID, ""},
		{"a prefix of its id", hexID[:12], "resolves as an image id"},
		{"an image with codex-connector's labels", labelled, "an image codex-connector made"},
	} {
		t.Run("named by "+c.what+", it is refused", func(t *testing.T) {
			task, log := run(t, c.name)
			if strings.Contains(log, "read /etc/codex-connector-marker: another") {
				t.Fatalf("the task ran on the image:\n%s", log)
			}
			if c.reason == "" {
				if task.BaseImage != "" || !strings.Contains(strings.Join(task.ImageNotes, " "), "the dev container file was not used") {
					t.Fatalf("base %q, notes %v", task.BaseImage, task.ImageNotes)
				}
				return
			}
			if task.Status != store.Failed || !strings.Contains(task.Error, c.reason) {
				t.Fatalf("%s (%s):\n%s", task.Status, task.Error, log)
			}
		})
	}
}
