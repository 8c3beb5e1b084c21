package runner

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/codex-connector/codex-connector/images/imagestest"
	"github.com/codex-connector/codex-connector/store"
)

// exitCodes maps each command of the task's summary to its exit code.
func exitCodes(t *testing.T, task *store.Task) map[string]int {
	t.Helper()
	out := map[string]int{}
	for _, c := range task.Summary.Commands {
		if c.ExitCode == nil {
			t.Fatalf("command %q has no exit code", c.Command)
		}
		out[c.Command] = *c.ExitCode
	}
	return out
}

func TestRestrictedNetwork(t *testing.T) {
	allowed := imagestest.StartHostServer(t, imagestest.Engine(t), "hello from allowed")
	other := imagestest.StartHostServer(t, imagestest.Engine(t), "hello from other")
	h := newHarness(t, func(c *Config) { c.Egress.AllowedHosts = []string{allowed.Addr} })
	script := fmt.Sprintf("get http://%[1]s/; tunnel %[1]s; get http://%[2]s/; tunnel %[2]s; dial %[1]s; dial %[2]s; resolve api.openai.com", allowed.Addr, other.Addr)

	t.Run("workspace-write reaches an allowed host only through the proxy", func(t *testing.T) {
		task := h.startAndWait(t, Spec{Prompt: script, WorkingDirectory: newRepo(t), Sandbox: WorkspaceWrite})
		log := readFile(t, h.LogPath(task.ID))
		got := exitCodes(t, task)
		for cmd, want := range map[string]int{
			"get http://" + allowed.Addr + "/": 0, "tunnel " + allowed.Addr: 0, // through the proxy: allowed
			"get http://" + other.Addr + "/": 1, "tunnel " + other.Addr: 1, // through the proxy: refused
			"dial " + allowed.Addr: 1, "dial " + other.Addr: 1, // around the proxy: no route
			"resolve api.openai.com": 1, // no DNS
		} {
			if got[cmd] != want {
				t.Errorf("%s exited %d, want %d\n%s", cmd, got[cmd], want, log)
			}
		}
		for _, want := range []string{
			"codex-connector egress: GET http://" + allowed.Addr + "/ HTTP/1.1 → allowed",
			"codex-connector egress: CONNECT " + other.Addr + " HTTP/1.1 → denied",
			other.Addr + " is not an allowed host for this task",
		} {
			if !strings.Contains(log, want) {
				t.Errorf("the task's log lacks %q:\n%s", want, log)
			}
		}
		if other.Hits() != 0 {
			t.Errorf("the server that is not allowed got %d requests", other.Hits())
		}
		if allowed.Hits() == 0 {
			t.Error("the allowed server got no request")
		}
	})
	t.Run("read-only reaches the model API only, not the user's allowed hosts", func(t *testing.T) {
		task := h.startAndWait(t, Spec{Prompt: "get http://" + allowed.Addr + "/", WorkingDirectory: newRepo(t), Sandbox: ReadOnly})
		if exitCodes(t, task)["get http://"+allowed.Addr+"/"] != 1 {
			t.Fatalf("a read-only task reached an allowed host:\n%s", readFile(t, h.LogPath(task.ID)))
		}
	})
	t.Run("danger-full-access reaches both servers directly", func(t *testing.T) {
		task := h.startAndWait(t, Spec{Prompt: fmt.Sprintf("dial %s; dial %s; get http://%s/", allowed.Addr, other.Addr, other.Addr), WorkingDirectory: newRepo(t), Sandbox: DangerFullAccess})
		for cmd, code := range exitCodes(t, task) {
			if code != 0 {
				t.Errorf("%s exited %d:\n%s", cmd, code, readFile(t, h.LogPath(task.ID)))
			}
		}
	})
}

func TestWorkspaceWriteCannotPlantCodeForTheHost(t *testing.T) {
	h := newHarness(t, nil)
	repo := newRepo(t)
	// A repository without a hooks directory: the task must not be able to
	// create one either.
	if err := os.RemoveAll(filepath.Join(repo, ".git", "hooks")); err != nil {
		t.Fatal(err)
	}
	config := readFile(t, filepath.Join(repo, ".git", "config"))
	task := h.startAndWait(t, Spec{Prompt: "write .git/hooks/pre-commit evil; write .git/config [core]; write src.txt fine", WorkingDirectory: repo, Sandbox: WorkspaceWrite})
	got := exitCodes(t, task)
	if got["write .git/hooks/pre-commit"] == 0 || got["write .git/config"] == 0 || got["write src.txt"] != 0 {
		t.Fatalf("exit codes %v", got)
	}
	if _, err := os.Stat(filepath.Join(repo, ".git", "hooks", "pre-commit")); err == nil {
		t.Fatal("a hook was planted")
	}
	if readFile(t, filepath.Join(repo, ".git", "config")) != config {
		t.Fatal(".git/config changed")
	}
	if readFile(t, filepath.Join(repo, "src.txt")) != "fine\n" {
		t.Fatal("an ordinary write failed")
	}
}

func TestHardeningOnEveryLevel(t *testing.T) {
	h := newHarness(t, nil)
	for _, level := range SandboxLevels {
		t.Run(level, func(t *testing.T) {
			task, err := h.Start(context.Background(), Spec{Prompt: "write /usr/planted x; sleep 1h", WorkingDirectory: newRepo(t), Sandbox: level})
			if err != nil {
				t.Fatal(err)
			}
			h.waitStatus(t, task.ID, store.Running)
			running, _ := h.Get(task.ID)
			info, err := h.engine.ContainerInspect(context.Background(), running.ContainerID)
			if err != nil {
				t.Fatal(err)
			}
			hc := info.HostConfig
			if !hc.ReadonlyRootfs || len(hc.CapDrop) != 1 || hc.CapDrop[0] != "ALL" || !strings.Contains(strings.Join(hc.SecurityOpt, ","), "no-new-privileges") ||
				hc.Init == nil || !*hc.Init || hc.PidsLimit == nil || *hc.PidsLimit == 0 || hc.Memory == 0 || hc.NanoCPUs == 0 || hc.Privileged {
				t.Errorf("host config %+v", hc)
			}
			if info.Config.User != "1000:1000" {
				t.Errorf("user %q", info.Config.User)
			}
			if wantNet := map[string]string{ReadOnly: "none", WorkspaceWrite: "none", DangerFullAccess: "bridge"}[level]; string(hc.NetworkMode) != wantNet {
				t.Errorf("network %s, want %s", hc.NetworkMode, wantNet)
			}
			for _, m := range info.Mounts {
				if strings.Contains(m.Source, "docker.sock") || m.Source == os.Getenv("HOME") {
					t.Errorf("mounted %s", m.Source)
				}
			}
			for i := 0; ; i++ {
				if p, _ := h.Progress(task.ID); p.Commands > 0 {
					break
				}
				if i > 1000 {
					t.Fatal("the write was never tried")
				}
				time.Sleep(20 * time.Millisecond)
			}
			h.Cancel(context.Background(), task.ID)
			if code, ok := exitCodes(t, h.waitFinal(t, task.ID))["write /usr/planted"]; !ok || code == 0 {
				t.Errorf("write into the image's root filesystem: tried %v, exit %d", ok, code)
			}
		})
	}
}

func TestLimitsStopRunawayTasks(t *testing.T) {
	h := newHarness(t, func(c *Config) {
		c.Limits = Limits{MemoryBytes: 64 << 20, NanoCPUs: 1e9, Pids: 32, TmpBytes: 16 << 20}
	})
	t.Run("a fork bomb hits the pids limit", func(t *testing.T) {
		task := h.startAndWait(t, Spec{Prompt: "spawn 500; say survived", WorkingDirectory: newRepo(t)})
		log := readFile(t, h.LogPath(task.ID))
		if !strings.Contains(log, "resource temporarily unavailable") || strings.Contains(log, "started 500") {
			t.Fatalf("the pids limit did not hold:\n%s", log)
		}
	})
	t.Run("a memory hog is killed and reported", func(t *testing.T) {
		task := h.startAndWait(t, Spec{Prompt: "alloc 512; say survived", WorkingDirectory: newRepo(t)})
		if task.Status != store.Failed || !strings.Contains(task.Error, "out of memory") {
			t.Fatalf("status %s error %q", task.Status, task.Error)
		}
	})
	t.Run("the runner stays healthy", func(t *testing.T) {
		task := h.startAndWait(t, Spec{Prompt: "say still here", WorkingDirectory: newRepo(t)})
		if task.Status != store.Completed || task.Result != "still here" {
			t.Fatalf("status %s error %q", task.Status, task.Error)
		}
	})
}

func TestRefusedWorkingDirectories(t *testing.T) {
	root := t.TempDir()
	outside := newRepo(t) // a repository in another temporary directory
	inside := filepath.Join(root, "repo")
	if err := os.Rename(newRepo(t), inside); err != nil {
		t.Fatal(err)
	}
	escape := filepath.Join(root, "escape")
	if err := os.Symlink(outside, escape); err != nil {
		t.Fatal(err)
	}
	h := newHarness(t, func(c *Config) { c.AllowedRoots = []string{root} })
	for _, tc := range []struct {
		name, dir, want string
	}{
		{"outside the allowed roots", outside, "outside the allowed roots"},
		{"a symlink from a root to outside it", escape, "outside the allowed roots"},
		{"the root itself", root, "is an allowed root itself"},
		{"the file system root", "/", "/ is refused"},
		{"a relative path", "repo", "absolute path"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := h.Start(context.Background(), Spec{Prompt: "x", WorkingDirectory: tc.dir})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want %q", err, tc.want)
			}
		})
	}
	t.Run("a repository inside a root runs", func(t *testing.T) {
		if task := h.startAndWait(t, Spec{Prompt: "say ok", WorkingDirectory: inside}); task.Status != store.Completed {
			t.Fatalf("%s: %s", task.Status, task.Error)
		}
	})
}
