package runner

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/codex-connector/codex-connector/images/imagestest"
	"github.com/codex-connector/codex-connector/store"
)

// secretDir is a host directory no task may see, holding a file any user
// can read: if it is ever mounted into a task, the task reads it.
func secretDir(t *testing.T) (dir, secret string) {
	t.Helper()
	dir = t.TempDir()
	secret = "host secret " + filepath.Base(dir)
	if err := os.WriteFile(filepath.Join(dir, "secret.txt"), []byte(secret), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir, secret
}

// TestMountSourcesAreCheckedAtLaunch plants, from inside one task, the
// symlinks that would make a later task mount a host directory of the
// attacker's choosing, and swaps a queued task's repository; the later task
// must mount none of it.
func TestMountSourcesAreCheckedAtLaunch(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.MaxRunning = 1 })
	t.Run("a symlink planted under .git by a workspace-write task is never a mount source", func(t *testing.T) {
		repo := newRepo(t)
		dir, secret := secretDir(t)
		// The attack that worked before: a submodule git directory whose
		// info/ is a symlink, bound read-only at launch by the next task.
		plant := h.startAndWait(t, Spec{Prompt: "mkdir .git/modules 755; mkdir .git/modules/evil 755; write .git/modules/evil/HEAD ref: refs/heads/master; symlink " + dir + " .git/modules/evil/info; write planted.txt yes",
			WorkingDirectory: repo, Sandbox: WorkspaceWrite})
		if exitCodes(t, plant)["write planted.txt"] != 0 {
			t.Fatalf("the planting task did not run:\n%s", readFile(t, h.LogPath(plant.ID)))
		}
		if code := exitCodes(t, plant)["mkdir .git/modules"]; code == 0 {
			t.Error("the task could write under .git")
		}
		read := h.startAndWait(t, Spec{Prompt: "read .git/modules/evil/info/secret.txt", WorkingDirectory: repo, Sandbox: WorkspaceWrite})
		if log := readFile(t, h.LogPath(read.ID)); strings.Contains(log, secret) {
			t.Fatalf("the later task read the host's secret:\n%s", log)
		}
	})
	t.Run("a submodule path made a symlink by a danger-full-access task refuses a later workspace-write task", func(t *testing.T) {
		repo := repoWithSubmodules(t)
		dir, secret := secretDir(t)
		plant := h.startAndWait(t, Spec{Prompt: "remove lib/sub; symlink " + dir + " lib/sub", WorkingDirectory: repo, Sandbox: DangerFullAccess})
		if exitCodes(t, plant)["symlink lib/sub"] != 0 {
			t.Fatalf("the planting task did not run:\n%s", readFile(t, h.LogPath(plant.ID)))
		}
		later := h.startAndWait(t, Spec{Prompt: "read lib/sub/secret.txt", WorkingDirectory: repo, Sandbox: WorkspaceWrite})
		if later.Status != store.Failed || !strings.Contains(later.Error, "lib/sub") || !strings.Contains(later.Error, "symlink") {
			t.Fatalf("status %s, error %q", later.Status, later.Error)
		}
		if strings.Contains(readLog(h.LogPath(later.ID)), secret) {
			t.Fatal("the later task read the host's secret")
		}
	})
	for _, swap := range []struct {
		name string
		do   func(repo, other string) error
		want string
	}{
		{"by a symlink", func(repo, other string) error { return os.Symlink(other, repo) }, "through a symlink"},
		{"by a rename", func(repo, other string) error { return os.Rename(other, repo) }, "replaced by another directory"},
	} {
		t.Run("a repository swapped "+swap.name+" while its task waits is not mounted", func(t *testing.T) {
			blocker, err := h.Start(context.Background(), Spec{Prompt: "sleep 2s", WorkingDirectory: newRepo(t)})
			if err != nil {
				t.Fatal(err)
			}
			h.waitStatus(t, blocker.ID, store.Running)
			repo := newRepo(t)
			queued, err := h.Start(context.Background(), Spec{Prompt: "read secret.txt", WorkingDirectory: repo, Sandbox: WorkspaceWrite})
			if err != nil {
				t.Fatal(err)
			}
			if got, _ := h.Get(queued.ID); got.Status != store.Queued {
				t.Fatalf("the task is %s, want queued behind the other", got.Status)
			}
			other, secret := secretDir(t)
			if err := os.Rename(repo, repo+".orig"); err != nil {
				t.Fatal(err)
			}
			if err := swap.do(repo, other); err != nil {
				t.Fatal(err)
			}
			task := h.waitFinal(t, queued.ID)
			if task.Status != store.Failed || !strings.Contains(task.Error, swap.want) {
				t.Fatalf("status %s, error %q", task.Status, task.Error)
			}
			if strings.Contains(readLog(h.LogPath(task.ID)), secret) {
				t.Fatal("the swapped-in directory was mounted")
			}
		})
	}
}

func TestRepositoryWhoseGitIsASymlinkIsRefused(t *testing.T) {
	h := newHarness(t, nil)
	repo := newRepo(t)
	real := filepath.Join(t.TempDir(), "gitdir")
	if err := os.Rename(filepath.Join(repo, ".git"), real); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(real, filepath.Join(repo, ".git")); err != nil {
		t.Fatal(err)
	}
	_, err := h.Start(context.Background(), Spec{Prompt: "say hi", WorkingDirectory: repo})
	if !errors.Is(err, ErrInvalidTask) || !strings.Contains(err.Error(), ".git is a symlink") {
		t.Fatalf("got %v", err)
	}
}

func TestTheCeilingHoldsAtAcceptAndAtLaunch(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.MaxSandbox = WorkspaceWrite })
	repo := newRepo(t)
	_, err := h.Start(context.Background(), Spec{Prompt: "say hi", WorkingDirectory: repo, Sandbox: DangerFullAccess})
	if !errors.Is(err, ErrInvalidTask) || !strings.Contains(err.Error(), "maxSandbox workspace-write") {
		t.Fatalf("got %v", err)
	}
	task := h.startAndWait(t, Spec{Prompt: "say hi", WorkingDirectory: repo})
	if task.Sandbox != WorkspaceWrite || task.Status != store.Completed {
		t.Fatalf("sandbox %s, status %s (%s)", task.Sandbox, task.Status, task.Error)
	}
	// A task queued under a higher ceiling (another server, an older
	// config) does not run above the one in force when it launches.
	above := &store.Task{ID: store.NewID(time.Now()), Prompt: "write escaped.txt x", WorkingDirectory: repo, RepoRoot: repo,
		Sandbox: DangerFullAccess, Image: task.Image, Status: store.Queued, CreatedAt: time.Now().UTC(), User: task.User}
	above.ContainerName = containerName(above.ID)
	if err := h.store.Create(above); err != nil {
		t.Fatal(err)
	}
	h.reconcile(context.Background())
	got := h.waitFinal(t, above.ID)
	if got.Status != store.Failed || !strings.Contains(got.Error, "maxSandbox") || lexists(filepath.Join(repo, "escaped.txt")) {
		t.Fatalf("status %s, error %q", got.Status, got.Error)
	}
}

// TestRealCodexCannotPlantAMountSource: the real Codex, told to by its
// model, plants symlinks to a host directory in a danger-full-access task,
// where the repository is all its own; a later workspace-write task on the
// same repository is never given that directory.
func TestRealCodexCannotPlantAMountSource(t *testing.T) {
	repo := repoWithSubmodules(t)
	dir, secret := secretDir(t)
	model := imagestest.StartModelServer(t, imagestest.Engine(t),
		// Before, a git directory under .git/modules had its info/ bound
		// read-only at the next launch: wherever it pointed.
		imagestest.Turn{Command: "mkdir -p .git/modules/evil && echo 'ref: refs/heads/main' > .git/modules/evil/HEAD && ln -s " + dir + " .git/modules/evil/info && echo planted > planted.txt"},
		imagestest.Turn{Message: "done"},
		imagestest.Turn{Command: "cat .git/modules/evil/info/secret.txt"},
		imagestest.Turn{Message: "done"},
		imagestest.Turn{Command: "mv lib/sub lib/sub-old && ln -s " + dir + " lib/sub"},
		imagestest.Turn{Message: "done"},
	)
	h := newCodexHarness(t, model)
	run := func(sandbox string) *store.Task {
		return h.startAndWait(t, Spec{Prompt: "go on", WorkingDirectory: repo, Sandbox: sandbox, Model: "gpt-5-codex"})
	}
	plant := run(DangerFullAccess)
	if target, _ := os.Readlink(filepath.Join(repo, ".git", "modules", "evil", "info")); plant.Status != store.Completed || target != dir || !lexists(filepath.Join(repo, "planted.txt")) {
		t.Fatalf("the planting task did not run: %s (%s)\n%s", plant.Status, plant.Error, readLog(h.LogPath(plant.ID)))
	}
	read := run(WorkspaceWrite)
	if log := readLog(h.LogPath(read.ID)); read.Status != store.Completed || !strings.Contains(log, "secret.txt") || strings.Contains(log, secret) {
		t.Fatalf("the reading task: %s (%s); it must run the cat and not see the secret:\n%s", read.Status, read.Error, log)
	}
	if plant := run(DangerFullAccess); plant.Status != store.Completed {
		t.Fatalf("the second planting task: %s (%s)", plant.Status, plant.Error)
	}
	later := run(WorkspaceWrite)
	if later.Status != store.Failed || !strings.Contains(later.Error, "lib/sub") || !strings.Contains(later.Error, "symlink") {
		t.Fatalf("status %s, error %q", later.Status, later.Error)
	}
	if n := len(model.Requests()); n != 6 {
		t.Fatalf("%d model requests, want 6: the refused task must not have run", n)
	}
}
