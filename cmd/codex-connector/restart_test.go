package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/codex-connector/codex-connector/images/imagestest"
	"github.com/codex-connector/codex-connector/store"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/client"
	sdk "github.com/modelcontextprotocol/go-sdk/mcp"
)

// checkNumberedLog checks that the task's log holds "line 000001" to
// "line N" each exactly once, in order.
func checkNumberedLog(t *testing.T, path string, n int) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	next := 1
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "line ") {
			continue
		}
		if want := fmt.Sprintf("line %06d", next); line != want {
			t.Fatalf("log has %q where %q belongs: a gap or a duplicate", line, want)
		}
		next++
	}
	if next-1 != n {
		t.Fatalf("log has %d numbered lines, want %d", next-1, n)
	}
}

func logLines(path string) int {
	data, _ := os.ReadFile(path)
	return strings.Count(string(data), "\nline ")
}

// waitLines waits until the task's log holds at least n numbered lines.
func waitLines(t *testing.T, log string, n int) {
	t.Helper()
	for i := 0; logLines(log) < n; i++ {
		if i > 1500 {
			t.Fatalf("the task printed %d lines in 30s, want %d", logLines(log), n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitContainerRunning waits until the task's container runs, so that a kill
// lands in the phase the test means.
// waitContainerRunning waits until the task's Codex runs in its container:
// past the launch gate, which holds Codex until the server has confirmed
// the mounts (a server killed before that leaves a container that runs
// nothing of the task, and the next server starts it afresh).
func waitContainerRunning(t *testing.T, engine *client.Client, id string) {
	t.Helper()
	for i := 0; ; i++ {
		info, err := engine.ContainerInspect(context.Background(), "codex-connector-"+id)
		if err == nil && info.State.Running && codexStarted(engine, id) {
			return
		}
		if i > 1000 {
			t.Fatalf("the container of task %s never ran Codex: %v", id, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// codexStarted says whether the fake Codex has printed its first line.
func codexStarted(engine *client.Client, id string) bool {
	rc, err := engine.ContainerLogs(context.Background(), "codex-connector-"+id, container.LogsOptions{ShowStdout: true, ShowStderr: true})
	if err != nil {
		return false
	}
	defer rc.Close()
	data, _ := io.ReadAll(io.LimitReader(rc, 1<<20))
	return bytes.Contains(data, []byte("fakecodex args"))
}

func TestTasksSurviveAKilledServer(t *testing.T) {
	engine := imagestest.Engine(t)
	repo := imagestest.Repo(t)

	t.Run("a running task is adopted and its log has every line once", func(t *testing.T) {
		home := t.TempDir()
		a := startServerAt(t, home)
		res := a.call(t, "codex_agent", map[string]any{"task": "lines 3000 2ms; say counted", "workingDirectory": repo, "async": true})
		id := structured(t, res)["taskId"].(string)
		log := filepath.Join(home, "logs", id+".log")
		waitLines(t, log, 200)
		a.kill(t)
		b := startServerAt(t, home)
		final := b.waitFor(t, id)
		if final["status"] != "completed" || final["result"] != "counted" {
			t.Fatalf("after the restart: %v", final)
		}
		checkNumberedLog(t, log, 3000)
	})

	// These two are about what a server finds after a time when nothing
	// followed the task: no standby is left to follow it meanwhile.
	t.Run("a task that ended while no server ran is finished from its container", func(t *testing.T) {
		home := t.TempDir()
		a := startServerAt(t, home, noFollower)
		res := a.call(t, "codex_agent", map[string]any{"task": "sleep 1s; lines 100; say finished alone", "workingDirectory": repo, "async": true})
		id := structured(t, res)["taskId"].(string)
		waitContainerRunning(t, engine, id)
		a.kill(t)
		for i := 0; ; i++ {
			info, err := engine.ContainerInspect(context.Background(), "codex-connector-"+id)
			if err == nil && info.State.Status == "exited" {
				break
			}
			if i > 600 {
				t.Fatalf("the container did not exit: %v", err)
			}
			time.Sleep(20 * time.Millisecond)
		}
		b := startServerAt(t, home)
		final := b.waitFor(t, id)
		if final["status"] != "completed" || final["result"] != "finished alone" {
			t.Fatalf("after the restart: %v", final)
		}
		checkNumberedLog(t, filepath.Join(home, "logs", id+".log"), 100)
	})

	t.Run("a queued task runs after the restart, once", func(t *testing.T) {
		home := t.TempDir()
		a := startServerAt(t, home, "CODEX_CONNECTOR_MAX_RUNNING=1")
		first := structured(t, a.call(t, "codex_agent", map[string]any{"task": "sleep 2s; say first", "workingDirectory": repo, "async": true}))["taskId"].(string)
		queued := structured(t, a.call(t, "codex_agent", map[string]any{"task": "lines 5; say second", "workingDirectory": repo, "async": true}))["taskId"].(string)
		waitContainerRunning(t, engine, first)
		if st := structured(t, a.call(t, "codex_status", map[string]any{"taskId": queued})); st["status"] != "queued" {
			t.Fatalf("second task with one slot: %v", st["status"])
		}
		a.kill(t)
		b := startServerAt(t, home, "CODEX_CONNECTOR_MAX_RUNNING=1")
		for id, want := range map[string]string{first: "first", queued: "second"} {
			if final := b.waitFor(t, id); final["status"] != "completed" || final["result"] != want {
				t.Fatalf("task %s after the restart: %v", id, final)
			}
		}
		checkNumberedLog(t, filepath.Join(home, "logs", queued+".log"), 5)
		// The adopted task held the one slot: the queued one waited for it.
		st := store.New(filepath.Join(home, "tasks.db"), 5*time.Second)
		f, _ := st.Get(first)
		q, _ := st.Get(queued)
		if q.StartedAt.Before(f.FinishedAt) {
			t.Errorf("with one slot the queued task started at %s, before the adopted one ended at %s", q.StartedAt, f.FinishedAt)
		}
	})

	t.Run("a timeout fires after the restart", func(t *testing.T) {
		home := t.TempDir()
		a := startServerAt(t, home)
		res := a.call(t, "codex_agent", map[string]any{"task": "sleep 1h", "workingDirectory": repo, "async": true, "timeoutMs": 4000})
		id := structured(t, res)["taskId"].(string)
		waitContainerRunning(t, engine, id)
		a.kill(t)
		b := startServerAt(t, home)
		final := b.waitFor(t, id)
		if final["status"] != "timed_out" || !strings.Contains(fmt.Sprint(final["error"]), "timed out after 4s") {
			t.Fatalf("after the restart: %v", final)
		}
	})

	t.Run("a task whose container vanished fails with the reason", func(t *testing.T) {
		home := t.TempDir()
		a := startServerAt(t, home, noFollower)
		res := a.call(t, "codex_agent", map[string]any{"task": "sleep 1h", "workingDirectory": repo, "async": true})
		id := structured(t, res)["taskId"].(string)
		waitContainerRunning(t, engine, id)
		a.kill(t)
		if err := engine.ContainerRemove(context.Background(), "codex-connector-"+id, container.RemoveOptions{Force: true}); err != nil {
			t.Fatal(err)
		}
		b := startServerAt(t, home)
		final := b.waitFor(t, id)
		if final["status"] != "failed" || !strings.Contains(fmt.Sprint(final["error"]), "container is gone") {
			t.Fatalf("after the restart: %v", final)
		}
	})
}

func TestTwoServersShareOneHome(t *testing.T) {
	engine := imagestest.Engine(t)
	repo := imagestest.Repo(t)
	home := t.TempDir()
	a := startServerAt(t, home, "CODEX_CONNECTOR_LEASE=2s")
	b := startServerAt(t, home, "CODEX_CONNECTOR_LEASE=2s")

	fromA := structured(t, a.call(t, "codex_agent", map[string]any{"task": "sleep 1h", "workingDirectory": repo, "async": true}))["taskId"].(string)
	fromB := structured(t, b.call(t, "codex_agent", map[string]any{"task": "say from b", "workingDirectory": repo}))["taskId"].(string)
	t.Run("each lists the other's tasks", func(t *testing.T) {
		for _, s := range []*mcpServer{a, b} {
			text := text(s.call(t, "codex_tasks", map[string]any{}))
			if !strings.Contains(text, fromA) || !strings.Contains(text, fromB) {
				t.Fatalf("list lacks a task:\n%s", text)
			}
		}
	})
	t.Run("one cancels the other's task", func(t *testing.T) {
		waitContainerRunning(t, engine, fromA)
		res := b.call(t, "codex_cancel", map[string]any{"taskId": fromA})
		if res.IsError || structured(t, res)["status"] != "cancelled" {
			t.Fatalf("cancel from the other server: %s", text(res))
		}
	})
	t.Run("calls to both at once never fail on the database lock", func(t *testing.T) {
		var wg sync.WaitGroup
		errs := make(chan string, 400)
		for _, s := range []*mcpServer{a, b} {
			for g := 0; g < 4; g++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := 0; i < 20; i++ {
						name, args := "codex_tasks", map[string]any{"limit": 5}
						// One start per goroutine: writes without the container
						// churn that deadlocks Docker 20.10 (moby/moby#46661).
						if i == 0 {
							name, args = "codex_agent", map[string]any{"task": "say busy", "workingDirectory": repo, "async": true}
						}
						res, err := s.session.CallTool(context.Background(), &sdk.CallToolParams{Name: name, Arguments: args})
						switch {
						case err != nil:
							errs <- fmt.Sprintf("%s: %v", name, err)
						case res.IsError:
							errs <- fmt.Sprintf("%s: %s", name, text(res))
						}
					}
				}()
			}
		}
		wg.Wait()
		close(errs)
		for e := range errs {
			t.Error(e)
		}
	})
	t.Run("the other takes over when the follower dies", func(t *testing.T) {
		res := a.call(t, "codex_agent", map[string]any{"task": "lines 400 10ms; say survived", "workingDirectory": repo, "async": true})
		id := structured(t, res)["taskId"].(string)
		waitContainerRunning(t, engine, id)
		a.kill(t)
		final := b.waitFor(t, id)
		if final["status"] != "completed" || final["result"] != "survived" {
			t.Fatalf("after the follower died: %v", final)
		}
		checkNumberedLog(t, filepath.Join(home, "logs", id+".log"), 400)
	})
}

func TestEgressKeepsServingAcrossARestart(t *testing.T) {
	engine := imagestest.Engine(t)
	srv := imagestest.StartHostServer(t, engine, "reached")
	home := t.TempDir()
	cfg := fmt.Sprintf(`{"allowedHosts": [%q]}`, srv.Addr)
	if err := os.WriteFile(filepath.Join(home, "config.json"), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	a := startServerAt(t, home)
	res := a.call(t, "codex_agent", map[string]any{"task": fmt.Sprintf("sleep 2s; get http://%s/; say fetched", srv.Addr),
		"workingDirectory": imagestest.Repo(t), "sandbox": "workspace-write", "async": true})
	id := structured(t, res)["taskId"].(string)
	waitContainerRunning(t, engine, id)
	a.kill(t)
	b := startServerAt(t, home)
	final := b.waitFor(t, id)
	log, _ := os.ReadFile(filepath.Join(home, "logs", id+".log"))
	if final["status"] != "completed" || !strings.Contains(string(log), "GET http://"+srv.Addr+"/ HTTP/1.1 → allowed") ||
		!strings.Contains(fmt.Sprint(final["commands"]), "exitCode:0") {
		t.Fatalf("after the restart: %v\n%s", final, log)
	}
}

// A follower frozen past its lease (SIGSTOP: every call it makes, to the
// engine and to the database, hangs) loses its task to the other server,
// which follows it to its end. When the first resumes it writes nothing
// more for the task: not a line of its log, not its record, and every line
// the task printed is in the log exactly once.
func TestAFollowerStoppedPastItsLeaseWritesNothingMore(t *testing.T) {
	repo := imagestest.Repo(t)
	home := t.TempDir()
	a := startServerAt(t, home, "CODEX_CONNECTOR_LEASE=2s")
	b := startServerAt(t, home, "CODEX_CONNECTOR_LEASE=2s")
	id := structured(t, a.call(t, "codex_agent", map[string]any{"task": "lines 300 20ms; say survived", "workingDirectory": repo, "async": true}))["taskId"].(string)
	log := filepath.Join(home, "logs", id+".log")
	waitLines(t, log, 20)

	if err := a.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	resumed := false
	t.Cleanup(func() {
		if !resumed {
			a.cmd.Process.Signal(syscall.SIGCONT)
		}
	})
	final := b.waitFor(t, id)
	if final["status"] != "completed" || final["result"] != "survived" {
		t.Fatalf("after the follower froze: %v", final)
	}
	logBefore, err := os.ReadFile(log)
	if err != nil {
		t.Fatal(err)
	}
	db := store.New(filepath.Join(home, "tasks.db"), 10*time.Second)
	record := func() string {
		t.Helper()
		task, err := db.Get(id)
		if err != nil {
			t.Fatal(err)
		}
		data, _ := json.Marshal(task)
		return string(data)
	}
	recordBefore := record()

	if err := a.cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	resumed = true
	// The first server learns that it lost the task (from its renewal,
	// from its log copy finding the lease lapsed, or from the record when
	// it finds the container gone) and lets it go.
	t.Logf("the first server: %s", a.waitLogged(t, "task "+id+": ", "no longer follow"))
	// It answers, so whatever it was doing when it resumed has run.
	if st := structured(t, a.call(t, "codex_status", map[string]any{"taskId": id})); st["status"] != "completed" {
		t.Fatalf("the first server sees the task as %v", st["status"])
	}

	if logAfter, _ := os.ReadFile(log); string(logAfter) != string(logBefore) {
		t.Errorf("the log changed after the first server resumed: %d bytes, was %d", len(logAfter), len(logBefore))
	}
	if recordAfter := record(); recordAfter != recordBefore {
		t.Errorf("the record changed after the first server resumed:\n%s\nwas\n%s", recordAfter, recordBefore)
	}
	checkNumberedLog(t, log, 300)
}
