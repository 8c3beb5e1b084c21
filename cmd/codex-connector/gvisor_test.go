package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/codex-connector/codex-connector/images/imagestest"
	"github.com/codex-connector/codex-connector/store"
)

// gvisorHome readies a data directory whose config.json runs every task
// under the runsc runtime of d, and the environment of a server on d.
func gvisorHome(t *testing.T, d *imagestest.Dockerd, extra string) (home string, env []string) {
	t.Helper()
	home = cliHome(t)
	config := `{"images": {"runtime": "runsc"}` + extra + `}`
	if err := os.WriteFile(filepath.Join(home, "config.json"), []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	return home, withEnv(cliEnv(t, home), "DOCKER_HOST="+d.Host, "CODEX_CONNECTOR_IMAGE="+d.FakeCodex(t), "OPENAI_API_KEY=sk-test")
}

// logsHolding is the first task log in home that holds s.
func logsHolding(t *testing.T, home, s string) string {
	t.Helper()
	logs, _ := filepath.Glob(filepath.Join(home, "logs", "*.log"))
	for _, p := range logs {
		if data, err := os.ReadFile(p); err == nil && strings.Contains(string(data), s) {
			return string(data)
		}
	}
	return ""
}

// Under gVisor, doctor names the runtime and says its limits hold (read
// on the host, since the sentry shows them only in part), and a task runs
// at every level on gVisor's kernel: what it writes is the repository
// owner's, a read-only task writes nothing, and .git stays read-only to a
// workspace-write task. Its record names the runtime.
func TestTasksRunUnderGVisor(t *testing.T) {
	d := imagestest.StartGVisor(t)
	home, env := gvisorHome(t, d, "")
	res := cli(t, env, "/", "doctor")
	if res.code != 0 || !strings.Contains(res.stdout, "pass  runtime     runsc: memory, cpu and pids limits are enforced on its tasks; they run on a kernel of its own") {
		t.Fatalf("doctor under gVisor:\n%s", res)
	}
	repo := imagestest.Repo(t)
	for _, level := range []string{"danger-full-access", "workspace-write", "read-only"} {
		res := cli(t, env, repo, "run", "--sandbox", level, "read /proc/version; write out-"+level+".txt made; say done at "+level)
		if res.code != 0 || !strings.Contains(res.stdout, "done at "+level) {
			t.Fatalf("%s: %s\nengine log:\n%s", level, res, tail(d.LogFile()))
		}
		fi, err := os.Lstat(filepath.Join(repo, "out-"+level+".txt"))
		if level == "read-only" {
			if err == nil {
				t.Fatal("a read-only task wrote the repository")
			}
			continue
		}
		if err != nil {
			t.Fatalf("%s: the task's file is not there: %v", level, err)
		}
		if st := fi.Sys().(*syscall.Stat_t); st.Uid != imagestest.RepoUID || st.Gid != imagestest.RepoGID {
			t.Fatalf("%s: the task's file is %d:%d, not the repository owner's %d:%d", level, st.Uid, st.Gid, imagestest.RepoUID, imagestest.RepoGID)
		}
	}
	// Each ran on gVisor's kernel, not the host's.
	for _, level := range []string{"danger-full-access", "workspace-write", "read-only"} {
		if log := logsHolding(t, home, "done at "+level); !strings.Contains(log, "read /proc/version: Linux version") || !strings.Contains(log, "gvisor") {
			t.Errorf("%s: the task did not run on gVisor's kernel:\n%s", level, log)
		}
	}
	res = cli(t, env, repo, "run", "--sandbox", "workspace-write", "write .git/planted planted; say tried")
	if _, err := os.Stat(filepath.Join(repo, ".git", "planted")); err == nil {
		t.Fatalf("a workspace-write task under gVisor wrote in .git:\n%s", res)
	}
	if log := logsHolding(t, home, ".git/planted"); !strings.Contains(log, "read-only file system") {
		t.Errorf("the write to .git did not meet a read-only bind:\n%s", log)
	}
	tasks, _, err := store.New(filepath.Join(home, "tasks.db"), 10*time.Second).List(store.Filter{})
	if err != nil || len(tasks) != 4 {
		t.Fatalf("%d tasks recorded: %v", len(tasks), err)
	}
	for _, task := range tasks {
		if task.Engine == nil || task.Engine.Runtime != "runsc" || !strings.Contains(task.Engine.Name, "runtime runsc") {
			t.Errorf("task %s: the record does not name the runtime: %+v", task.ID, task.Engine)
		}
	}
}

// Under gVisor the egress policy holds: the proxy (on the engine's default
// runtime) serves the task through its socket, a workspace-write task
// reaches the allowed host and no other, a read-only task neither.
func TestEgressHoldsUnderGVisor(t *testing.T) {
	ip := imagestest.DefaultRouteAddress(t)
	allowed := imagestest.StartHostServerAt(t, ip, "reached")
	denied := imagestest.StartHostServerAt(t, ip, "reached")
	d := imagestest.StartGVisor(t)
	_, env := gvisorHome(t, d, fmt.Sprintf(`, "allowedHosts": [%q]`, allowed.Addr))
	repo := imagestest.Repo(t)
	steps := "get http://" + allowed.Addr + "/; get http://" + denied.Addr + "/; say checked"
	res := cli(t, env, repo, "run", "--sandbox", "workspace-write", steps)
	if res.code != 0 || allowed.Hits() != 1 || denied.Hits() != 0 {
		t.Fatalf("workspace-write: allowed host reached %d times, the other %d\n%s", allowed.Hits(), denied.Hits(), res)
	}
	res = cli(t, env, repo, "run", "--sandbox", "read-only", steps)
	if res.code != 0 || allowed.Hits() != 1 || denied.Hits() != 0 {
		t.Fatalf("read-only: allowed host reached %d times, the other %d\n%s", allowed.Hits(), denied.Hits(), res)
	}
}

// A task under gVisor that takes more memory than its limit is stopped
// for it, and one that starts processes gets no more than its limit: the
// limits hold on the host's cgroup of the sandbox.
func TestTheLimitsHoldUnderGVisor(t *testing.T) {
	d := imagestest.StartGVisor(t)
	home, env := gvisorHome(t, d, `, "limits": {"memoryMB": 128}`)
	repo := imagestest.Repo(t)
	res := cli(t, env, repo, "run", "--sandbox", "workspace-write", "write before.txt ran; alloc 600; write after.txt ran; say survived")
	if _, err := os.Stat(filepath.Join(repo, "before.txt")); err != nil {
		t.Fatalf("the task never ran: %v\n%s", err, res)
	}
	if _, err := os.Stat(filepath.Join(repo, "after.txt")); err == nil || strings.Contains(res.stdout, "survived") {
		t.Fatalf("the task took 600 MB under a limit of 128 MB:\n%s\n%s", res, logsHolding(t, home, "before.txt"))
	}
	t.Logf("%s", res)
}

// tail is the end of the file at path, for a failure's message.
func tail(path string) string {
	data, _ := os.ReadFile(path)
	return string(data[max(0, len(data)-3000):])
}
