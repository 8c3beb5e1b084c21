package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/codex-connector/codex-connector/images/imagestest"
	"github.com/docker/docker/api/types/container"
)

// doctor names a rootless engine for what it is, and says which limits
// its runs do not get (on this machine's cgroup v1, none of them), failing
// until config.json accepts exactly that; then it passes, saying so.
func TestDoctorNamesARootlessEngineAndTheLimitsItDrops(t *testing.T) {
	for _, c := range []struct{ kind, name string }{{imagestest.Podman, "Podman "}, {imagestest.RootlessDocker, "Docker "}} {
		t.Run(c.kind, func(t *testing.T) {
			e := imagestest.StartRootless(t, c.kind)
			home := cliHome(t)
			env := withEnv(cliEnv(t, home), "DOCKER_HOST="+e.Host, "CODEX_CONNECTOR_IMAGE="+e.FakeCodex(t), "OPENAI_API_KEY=sk-test")
			res := cli(t, env, "/", "doctor")
			if !strings.Contains(res.stdout, "pass  docker      "+c.name) || !strings.Contains(res.stdout, ", rootless, cgroup v") {
				t.Fatalf("doctor does not name the engine:\n%s\n%s", res, e.Log())
			}
			if _, err := os.Stat("/sys/fs/cgroup/cgroup.controllers"); err == nil {
				t.Logf("cgroup v2 here: what the engine enforces depends on delegation:\n%s", res)
				return
			}
			for _, want := range []string{"FAIL  limits      memory, cpu, pids NOT enforced on tasks by " + c.name, "tasks will not start",
				`"limits": {"acceptUnenforced": ["memory", "cpu", "pids"]}`} {
				if res.code != 1 || !strings.Contains(res.stdout, want) {
					t.Errorf("doctor lacks %q:\n%s", want, res)
				}
			}
			if err := os.WriteFile(filepath.Join(home, "config.json"), []byte(`{"limits": {"acceptUnenforced": ["memory", "cpu", "pids"]}}`), 0o600); err != nil {
				t.Fatal(err)
			}
			res = cli(t, env, "/", "doctor")
			if !strings.Contains(res.stdout, "pass  limits      memory, cpu, pids NOT enforced") || !strings.Contains(res.stdout, "accepted by limits.acceptUnenforced") {
				t.Errorf("doctor with the limits accepted:\n%s", res)
			}
		})
	}
}

// asRootlessUser readies codex-connector for the user of e, as they would
// run it: the binary where they can run it, their own data directory and
// config.json (accepting the limits this machine's cgroup v1 drops), and
// the environment of their `~/.mcp.json` entry.
func asRootlessUser(t *testing.T, e *imagestest.RootlessEngine) (bin string, env []string) {
	t.Helper()
	bin = filepath.Join(e.Dir, "bin", "codex-connector")
	data, err := os.ReadFile(binary(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(bin), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, data, 0o755); err != nil {
		t.Fatal(err)
	}
	home := filepath.Join(e.Dir, "home", ".codex-connector")
	if err := os.MkdirAll(home, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(home, "config.json"), []byte(`{"limits": {"acceptUnenforced": ["memory", "cpu", "pids"]}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	e.Own(t, filepath.Join(e.Dir, "bin"))
	e.Own(t, filepath.Join(e.Dir, "home"))
	env = []string{"PATH=/usr/local/bin:/usr/bin:/bin", "OPENAI_API_KEY=sk-test", "CODEX_CONNECTOR_IMAGE=" + e.FakeCodex(t),
		"CODEX_CONNECTOR_ALLOWED_ROOTS=" + e.Dir, "CODEX_CONNECTOR_STOP_GRACE=1s"}
	return bin, env
}

// A task runs at every level on a rootless engine, with codex-connector
// run by the engine's own user as it is on a shared machine: what it
// writes in the repository is the user's, and a read-only task writes
// nothing.
func TestTasksRunOnARootlessEngineAsItsUser(t *testing.T) {
	for _, kind := range []string{imagestest.Podman, imagestest.RootlessDocker} {
		t.Run(kind, func(t *testing.T) {
			e := imagestest.StartRootless(t, kind)
			bin, env := asRootlessUser(t, e)
			repo := e.Repo(t)
			for _, level := range []string{"danger-full-access", "workspace-write", "read-only"} {
				cmd := e.Command(repo, env, bin, "run", "--sandbox", level, "write out-"+level+".txt made; say done at "+level)
				out, err := cmd.CombinedOutput()
				if err != nil || !strings.Contains(string(out), "done at "+level) || !strings.Contains(string(out), " completed after ") {
					t.Fatalf("%s: %v\n%s\nengine:\n%s", level, err, out, e.Log())
				}
				fi, err := os.Lstat(filepath.Join(repo, "out-"+level+".txt"))
				if level == "read-only" {
					if err == nil {
						t.Fatalf("a read-only task wrote the repository")
					}
					continue
				}
				if err != nil {
					t.Fatalf("%s: the task's file is not there: %v\n%s", level, err, out)
				}
				if st := fi.Sys().(*syscall.Stat_t); int(st.Uid) != e.UID || int(st.Gid) != e.GID {
					t.Fatalf("%s: the task's file is %d:%d, not the user's %d:%d", level, st.Uid, st.Gid, e.UID, e.GID)
				}
			}
		})
	}
}

// Another ordinary user of the machine, with an engine of their own,
// reaches nothing of the first user's tasks: not their engine, not their
// data directory or repository, not the processes of a running task. The
// control first: the first user does reach each.
func TestAnotherUserReachesNothingOfARootlessUsersTasks(t *testing.T) {
	a := imagestest.StartRootless(t, imagestest.Podman)
	b := imagestest.StartRootless(t, imagestest.RootlessDocker)
	bin, env := asRootlessUser(t, a)
	repo := a.Repo(t)
	out, err := a.Command(repo, env, bin, "run", "--detach", "--sandbox", "workspace-write", "write secret.txt s3cret; say started; sleep 2m").CombinedOutput()
	if err != nil {
		t.Fatalf("run: %v\n%s", err, out)
	}
	id, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
	defer a.Command(repo, env, bin, "cancel", id).Run()
	cli := a.Client(t)
	var pid int
	for deadline := time.Now().Add(time.Minute); pid == 0; time.Sleep(200 * time.Millisecond) {
		if time.Now().After(deadline) {
			status, _ := a.Command(repo, env, bin, "status", id).CombinedOutput()
			t.Fatalf("the task never ran:\n%s\nengine:\n%s", status, a.Log())
		}
		list, _ := cli.ContainerList(context.Background(), container.ListOptions{})
		for _, c := range list {
			if c.Labels["codex-connector.task"] == id {
				if info, err := cli.ContainerInspect(context.Background(), c.ID); err == nil && info.State.Running {
					pid = info.State.Pid
				}
			}
		}
	}
	logs := filepath.Join(a.Dir, "home", ".codex-connector", "logs", id+".log")
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(200 * time.Millisecond) {
		if _, err := os.Stat(filepath.Join(repo, "secret.txt")); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the task never wrote its file")
		}
	}
	for _, probe := range []struct{ what, cmd string }{
		{"the engine", "docker -H " + a.Host + " ps"},
		{"the data directory", "cat " + logs},
		{"the repository", "cat " + filepath.Join(repo, "secret.txt")},
		{"the task's environment", fmt.Sprintf("cat /proc/%d/environ", pid)},
		{"the task's files", fmt.Sprintf("ls /proc/%d/root/", pid)},
	} {
		// The control: the first user reaches it.
		if out, err := a.Command("/", env, "sh", "-c", probe.cmd).CombinedOutput(); err != nil {
			t.Fatalf("%s: the first user cannot reach it either, so this proves nothing: %v\n%s", probe.what, err, out)
		}
		out, err := b.Command("/", nil, "sh", "-c", probe.cmd).CombinedOutput()
		if err == nil || !strings.Contains(string(out), "ermission denied") {
			t.Errorf("another user reached %s (%s): %v\n%s", probe.what, probe.cmd, err, out)
		}
	}
}

// On a rootless engine the egress policy holds as on a rootful one: a
// workspace-write task reaches the hosts config.json allows and no other,
// and a read-only task none of them; the proxy, which runs as the user's
// id inside, serves both.
func TestEgressHoldsOnARootlessEngine(t *testing.T) {
	ip := imagestest.DefaultRouteAddress(t)
	for _, kind := range []string{imagestest.Podman, imagestest.RootlessDocker} {
		t.Run(kind, func(t *testing.T) {
			allowed := imagestest.StartHostServerAt(t, ip, "reached")
			denied := imagestest.StartHostServerAt(t, ip, "reached")
			e := imagestest.StartRootless(t, kind)
			bin, env := asRootlessUser(t, e)
			config := fmt.Sprintf(`{"limits": {"acceptUnenforced": ["memory", "cpu", "pids"]}, "allowedHosts": [%q]}`, allowed.Addr)
			if err := os.WriteFile(filepath.Join(e.Dir, "home", ".codex-connector", "config.json"), []byte(config), 0o600); err != nil {
				t.Fatal(err)
			}
			repo := e.Repo(t)
			steps := "get http://" + allowed.Addr + "/; get http://" + denied.Addr + "/; say checked"
			out, err := e.Command(repo, env, bin, "run", "--sandbox", "workspace-write", steps).CombinedOutput()
			if err != nil || allowed.Hits() != 1 || denied.Hits() != 0 {
				t.Fatalf("workspace-write: %v; allowed host reached %d times, the other %d\n%s\nengine:\n%s", err, allowed.Hits(), denied.Hits(), out, e.Log())
			}
			if !strings.Contains(string(out), denied.Addr+" is not an allowed host for this task") {
				t.Errorf("the refusal is not told:\n%s", out)
			}
			out, err = e.Command(repo, env, bin, "run", "--sandbox", "read-only", steps).CombinedOutput()
			if err != nil || allowed.Hits() != 1 || denied.Hits() != 0 {
				t.Fatalf("read-only: %v; allowed host reached %d times, the other %d\n%s", err, allowed.Hits(), denied.Hits(), out)
			}
		})
	}
}
