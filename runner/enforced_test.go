package runner

import (
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/codex-connector/codex-connector/backend/docker"
	"github.com/codex-connector/codex-connector/images/imagestest"
	"github.com/codex-connector/codex-connector/store"
	"github.com/docker/docker/client"
)

// On an engine whose runs get no limits (rootless Podman on this
// machine's cgroup v1) a task does not start, and says why and what to
// set; once the config accepts exactly what is given up, it passes, and
// its record says which limits did not hold and on which engine.
func TestLimitsThatDoNotHoldAreRefusedUntilAccepted(t *testing.T) {
	if _, err := os.Stat("/sys/fs/cgroup/cgroup.controllers"); err == nil {
		t.Skip("this machine has cgroup v2: the test needs an engine that drops limits, which rootless Podman on cgroup v1 is")
	}
	e := imagestest.StartRootless(t, imagestest.Podman)
	cli := e.Client(t)
	ref := e.FakeCodex(t)
	onPodman := func(*client.Client) docker.Engine { return cli }
	h := newHarnessWith(t, func(c *Config) { c.Image.Ref = ref }, onPodman, nil)
	task := h.startAndWait(t, Spec{Prompt: "say hi", WorkingDirectory: newRepo(t), Sandbox: DangerFullAccess})
	for _, want := range []string{"not started: Podman ", "rootless", "does not enforce the memory, cpu, pids limits", `"limits": {"acceptUnenforced": ["memory", "cpu", "pids"]}`} {
		if task.Status != store.Failed || !strings.Contains(task.Error, want) {
			t.Fatalf("status %s, error %q: lacks %q", task.Status, task.Error, want)
		}
	}
	if task.ContainerID != "" {
		t.Fatalf("a run was made: %s", task.ContainerID)
	}

	// Accepting one of them is not enough.
	h = newHarnessWith(t, func(c *Config) { c.Image.Ref = ref; c.Limits.AcceptUnenforced = []string{"memory"} }, onPodman, nil)
	task = h.startAndWait(t, Spec{Prompt: "say hi", WorkingDirectory: newRepo(t), Sandbox: DangerFullAccess})
	if task.Status != store.Failed || !strings.Contains(task.Error, "does not enforce the cpu, pids limits") {
		t.Fatalf("status %s, error %q", task.Status, task.Error)
	}

	// Accepted, the task passes the check, and its record says what did
	// not hold. A server run by root for a repository of another user than
	// the engine's then stops at the next thing a rootless engine cannot
	// do, with why: the engine's user namespace has no id for that user.
	// (A server run by the engine's user runs the task through: cmd's
	// TestTasksRunOnARootlessEngineAsItsUser.)
	h = newHarnessWith(t, func(c *Config) { c.Image.Ref = ref; c.Limits.AcceptUnenforced = UnenforceableLimits }, onPodman, nil)
	task = h.startAndWait(t, Spec{Prompt: "say hi", WorkingDirectory: newRepo(t), Sandbox: DangerFullAccess})
	if en := task.Engine; en == nil || !strings.HasPrefix(en.Name, "Podman ") || !strings.Contains(en.Name, "rootless") || !slices.Equal(en.Unenforced, UnenforceableLimits) {
		t.Fatalf("the record does not say what did not hold: %+v (error %q)", task.Engine, task.Error)
	}
	if task.Status != store.Failed || strings.Contains(task.Error, "not enforce") || !strings.Contains(task.Error, "has no id for them inside its runs") ||
		!strings.Contains(task.Error, "run codex-connector as the user whose engine it is") || task.ContainerID != "" {
		t.Fatalf("status %s, error %q, container %q", task.Status, task.Error, task.ContainerID)
	}
}
