package main

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/codex-connector/codex-connector/images/imagestest"
)

// These tests stop and start a Docker engine of their own under a running
// task, as `systemctl restart docker` or a Docker Desktop update does.

// startOn runs codex-connector against the test's engine; env adds
// variables.
func startOn(t *testing.T, d *imagestest.Dockerd, home, image string, env ...string) *mcpServer {
	return startServerImage(t, home, image, append([]string{"DOCKER_HOST=" + d.Host}, env...)...)
}

func TestEngineRestartUnderARunningTask(t *testing.T) {
	repo := imagestest.Repo(t)

	t.Run("with live-restore the task goes on and its log has every line once", func(t *testing.T) {
		d := imagestest.StartDockerd(t, true)
		image := d.FakeCodex(t)
		home := t.TempDir()
		s := startOn(t, d, home, image)
		res := s.call(t, "codex_agent", map[string]any{"task": "lines 3000 2ms; say outlived the engine", "workingDirectory": repo, "sandbox": "danger-full-access", "async": true})
		if res.IsError {
			t.Fatal(text(res))
		}
		id := structured(t, res)["taskId"].(string)
		log := filepath.Join(home, "logs", id+".log")
		waitLines(t, log, 200)

		d.Stop(t)
		st := structured(t, s.call(t, "codex_status", map[string]any{"taskId": id}))
		if st["status"] != "running" {
			t.Fatalf("while the engine is down: %v", st)
		}
		// The follower notices when its log copy loses the engine.
		for i := 0; ; i++ {
			st := structured(t, s.call(t, "codex_status", map[string]any{"taskId": id}))
			if strings.Contains(fmt.Sprint(st["summary"]), "waiting for the Docker engine") {
				break
			}
			if i > 600 {
				t.Fatalf("status while the engine is down does not say what the task waits for: %v", st["summary"])
			}
			time.Sleep(50 * time.Millisecond)
		}
		d.Start(t)

		final := s.waitFor(t, id)
		if final["status"] != "completed" || final["result"] != "outlived the engine" {
			t.Fatalf("after the engine came back: %v", final)
		}
		checkNumberedLog(t, log, 3000)
	})

	t.Run("without live-restore the task ends with the reason and keeps its log, and the next one runs", func(t *testing.T) {
		d := imagestest.StartDockerd(t, false)
		image := d.FakeCodex(t)
		home := t.TempDir()
		s := startOn(t, d, home, image, "CODEX_CONNECTOR_MAX_RUNNING=1")
		res := s.call(t, "codex_agent", map[string]any{"task": "lines 100000 2ms; say never", "workingDirectory": repo, "sandbox": "danger-full-access", "async": true})
		id := structured(t, res)["taskId"].(string)
		// Queued behind it: its slot frees while the engine shuts down.
		res = s.call(t, "codex_agent", map[string]any{"task": "say waited for the engine", "workingDirectory": repo, "sandbox": "danger-full-access", "async": true})
		queued := structured(t, res)["taskId"].(string)
		log := filepath.Join(home, "logs", id+".log")
		waitLines(t, log, 200)

		d.Stop(t) // stops the container too
		time.Sleep(time.Second)
		d.Start(t)

		if final := s.waitFor(t, queued); final["status"] != "completed" || final["result"] != "waited for the engine" {
			t.Fatalf("the task queued behind, after the engine came back: %v", final)
		}
		final := s.waitFor(t, id)
		if final["status"] != "failed" || !strings.Contains(fmt.Sprint(final["error"]), "stop or restart of the Docker engine") {
			t.Fatalf("after the engine came back: %v", final)
		}
		n := logLines(log)
		if n < 200 {
			t.Fatalf("the log lost lines: %d", n)
		}
		checkNumberedLog(t, log, n)
	})

	t.Run("a cancel while the engine is down is carried out when it comes back", func(t *testing.T) {
		d := imagestest.StartDockerd(t, true)
		image := d.FakeCodex(t)
		s := startOn(t, d, t.TempDir(), image)
		res := s.call(t, "codex_agent", map[string]any{"task": "sleep 1h", "workingDirectory": repo, "sandbox": "danger-full-access", "async": true})
		id := structured(t, res)["taskId"].(string)
		waitContainerRunning(t, d.Client(t), id)
		d.Stop(t)
		res = s.call(t, "codex_cancel", map[string]any{"taskId": id})
		if !res.IsError || !strings.Contains(text(res), "the cancel is recorded") {
			t.Fatalf("cancel with the engine down: isError=%v %s", res.IsError, text(res))
		}
		d.Start(t)
		if final := s.waitFor(t, id); final["status"] != "cancelled" {
			t.Fatalf("after the engine came back: %v", final)
		}
	})

	t.Run("an engine that is down at start refuses tasks with a message, then works", func(t *testing.T) {
		d := imagestest.StartDockerd(t, false)
		image := d.FakeCodex(t)
		d.Stop(t)
		s := startOn(t, d, t.TempDir(), image)
		res := s.call(t, "codex_agent", map[string]any{"task": "say hi", "workingDirectory": repo, "sandbox": "danger-full-access"})
		if !res.IsError || !strings.Contains(text(res), "cannot reach the Docker engine") || !strings.Contains(text(res), "start Docker") {
			t.Fatalf("with the engine down: isError=%v %s", res.IsError, text(res))
		}
		if res := s.call(t, "codex_tasks", map[string]any{}); res.IsError {
			t.Fatalf("listing needs no engine: %s", text(res))
		}
		d.Start(t)
		res = s.call(t, "codex_agent", map[string]any{"task": "say engine is back", "workingDirectory": repo, "sandbox": "danger-full-access"})
		if res.IsError || structured(t, res)["result"] != "engine is back" {
			t.Fatalf("after the engine started: %s", text(res))
		}
	})

	t.Run("a server that starts while the engine is down adopts the task when it comes back", func(t *testing.T) {
		d := imagestest.StartDockerd(t, true)
		image := d.FakeCodex(t)
		home := t.TempDir()
		a := startOn(t, d, home, image)
		res := a.call(t, "codex_agent", map[string]any{"task": "lines 2000 2ms; say adopted late", "workingDirectory": repo, "sandbox": "danger-full-access", "async": true})
		id := structured(t, res)["taskId"].(string)
		log := filepath.Join(home, "logs", id+".log")
		waitLines(t, log, 200)
		a.kill(t)
		d.Stop(t)
		b := startOn(t, d, home, image)
		time.Sleep(time.Second)
		d.Start(t)
		final := b.waitFor(t, id)
		if final["status"] != "completed" || final["result"] != "adopted late" {
			t.Fatalf("after the engine came back: %v", final)
		}
		checkNumberedLog(t, log, 2000)
	})
}

// Users often set a daemon-wide log size (daemon.json "log-opts":
// {"max-size": ...}); a task's log must still resume with no gap after a
// restart, although the engine would rotate it.
func TestLogResumesUnderADaemonWideLogSize(t *testing.T) {
	d := imagestest.StartDockerd(t, false, "--log-opt", "max-size=100k")
	image := d.FakeCodex(t)
	home := t.TempDir()
	a := startOn(t, d, home, image)
	res := a.call(t, "codex_agent", map[string]any{"task": "lines 6000 200us; say all there", "workingDirectory": imagestest.Repo(t), "sandbox": "danger-full-access", "async": true})
	id := structured(t, res)["taskId"].(string)
	log := filepath.Join(home, "logs", id+".log")
	waitLines(t, log, 3000) // the engine's 100k holds about 1,200 such lines
	a.kill(t)
	b := startOn(t, d, home, image)
	final := b.waitFor(t, id)
	if final["status"] != "completed" || final["result"] != "all there" {
		t.Fatalf("after the restart: %v", final)
	}
	checkNumberedLog(t, log, 6000)
}
