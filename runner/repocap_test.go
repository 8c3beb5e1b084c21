package runner

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/codex-connector/codex-connector/internal/hostfs"
	"github.com/codex-connector/codex-connector/internal/hostfs/hostfstest"
	"github.com/codex-connector/codex-connector/store"
)

// A task that fills the work tree is stopped at limits.repoMB with the
// reason, counted from what the tree used when the run began: a sparse
// file of 50 GB beside it counts what it holds, nothing, and is no reason.
func TestATaskThatFillsTheWorkTreeIsStoppedAtTheCap(t *testing.T) {
	const limit = 8 << 20
	h := newHarness(t, func(c *Config) { c.Limits.RepoBytes = limit })
	repo := newRepo(t)
	// What is there before the run does not count against the cap.
	hostfstest.Must(t, os.WriteFile(filepath.Join(repo, "before.bin"), make([]byte, 2*limit), 0o644))
	const fill = 64 << 20
	task := h.startAndWait(t, Spec{Prompt: fmt.Sprintf("sparse hole.img %d; fill blob.bin %d; await %s; say never stopped",
		int64(50)<<30, fill, filepath.Join(repo, "never")), WorkingDirectory: repo, Sandbox: WorkspaceWrite})
	ran(t, task, "sparse hole.img")
	ran(t, task, "fill blob.bin")
	if fi, err := os.Stat(filepath.Join(repo, "blob.bin")); err != nil || fi.Size() != fill {
		t.Fatalf("the task did not write its %d bytes: %v %v", fill, fi, err)
	}
	if task.Status != store.Failed || !strings.Contains(task.Error, "added more than 8 MiB on disk to the work tree (limits.repoMB)") {
		t.Fatalf("status %s: %q; the task that filled the work tree was not stopped at the cap", task.Status, task.Error)
	}
}

// What a task keeps under its cap, sparse files included, stops nothing.
func TestATaskUnderTheWorkTreeCapCompletes(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.Limits.RepoBytes = 8 << 20 })
	repo := newRepo(t)
	// Long enough for the watch to measure the tree a few times.
	task := h.startAndWait(t, Spec{Prompt: fmt.Sprintf("sparse hole.img %d; fill small.bin %d; sleep 5s; say kept", int64(50)<<30, 1<<20),
		WorkingDirectory: repo, Sandbox: WorkspaceWrite})
	ran(t, task, "sparse hole.img")
	if task.Status != store.Completed {
		t.Fatalf("status %s: %q", task.Status, task.Error)
	}
}

// The cost of one measure of the work tree, the watch's every round, on a
// repository of a size many are: 3,000 files in 150 directories.
func BenchmarkMeasureAWorkTreeOf3000Files(b *testing.B) {
	root := b.TempDir()
	for d := 0; d < 150; d++ {
		dir := filepath.Join(root, fmt.Sprintf("pkg%03d", d))
		if err := os.Mkdir(dir, 0o755); err != nil {
			b.Fatal(err)
		}
		for f := 0; f < 20; f++ {
			if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("file%02d.go", f)), make([]byte, 4096+f*100), 0o644); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ResetTimer()
	for b.Loop() {
		if _, err := hostfs.TreeUsage(root, 0); err != nil {
			b.Fatal(err)
		}
	}
}
