package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/codex-connector/codex-connector/images/imagestest"
	"github.com/codex-connector/codex-connector/runner"
	"github.com/codex-connector/codex-connector/store"
	cerrdefs "github.com/containerd/errdefs"
)

// noFollower starts a server with no standby: for tests of what a server
// finds after a time when nothing followed the tasks.
const noFollower = "CODEX_CONNECTOR_FOLLOW_AFTER_EXIT=false"

func homeProcesses(home string) []int { return imagestest.HomeProcesses(home) }

func killHomeProcesses(home string) { imagestest.KillHomeProcesses(home) }

// waitHomeIdle waits until no process of home is left: the follower exits
// by itself once nothing is live.
func waitHomeIdle(t *testing.T, home string) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Minute)
	for len(homeProcesses(home)) > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("processes of the home still run with nothing live: %v", homeProcesses(home))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// openHome reads the records of home directly, as no server runs to ask.
func openHome(home string) *store.Store {
	return store.New(filepath.Join(home, "tasks.db"), 5*time.Second)
}

// waitEndedFor bounds waitEnded; WAIT_ENDED shortens it to debug.
var waitEndedFor = func() time.Duration {
	if d, err := time.ParseDuration(os.Getenv("WAIT_ENDED")); err == nil {
		return d
	}
	return 3 * time.Minute
}()

// waitEnded waits, with no server alive, until every task has ended, and
// returns the records.
func waitEnded(t *testing.T, home string, ids ...string) map[string]*store.Task {
	t.Helper()
	st := openHome(home)
	deadline := time.Now().Add(waitEndedFor)
	out := map[string]*store.Task{}
	for len(out) < len(ids) {
		for _, id := range ids {
			if task, err := st.Get(id); err == nil && task.Status.Final() {
				out[id] = task
			}
		}
		if len(out) < len(ids) && time.Now().After(deadline) {
			log, _ := os.ReadFile(filepath.Join(home, "server.log"))
			t.Fatalf("with no server alive, only %d of %d tasks ended; server.log:\n%s", len(out), len(ids), log)
		}
		time.Sleep(100 * time.Millisecond)
	}
	return out
}

// leave ends the client the way Claude Code does when its window closes:
// stdin closes and the server exits. kill ends it with SIGKILL instead.
func (s *mcpServer) leave(t *testing.T, kill bool) {
	t.Helper()
	if kill {
		s.kill(t)
		return
	}
	s.session.Close()
	s.cmd.Wait()
	s.killed = true // nothing left for the cleanup to cancel
}

// startAsync starts an async task and returns its id.
func (s *mcpServer) startAsync(t *testing.T, args map[string]any) string {
	t.Helper()
	args["async"] = true
	res := s.call(t, "codex_agent", args)
	if res.IsError {
		t.Fatal(text(res))
	}
	return structured(t, res)["taskId"].(string)
}

// assertNothingLeft checks that no container of the home's tasks and no
// egress proxy is left.
func assertNothingLeft(t *testing.T, home string) {
	t.Helper()
	engine := imagestest.Engine(t)
	out, err := dockerPS(home)
	if err != nil {
		t.Fatal(err)
	}
	if len(out) > 0 {
		t.Errorf("task containers left with nothing live: %v", out)
	}
	if _, err := engine.ContainerInspect(context.Background(), runner.ProxyName(home)); !cerrdefs.IsNotFound(err) {
		t.Errorf("the egress proxy is left with nothing live: %v", err)
	}
}

func TestTasksFinishWithNobodyWatching(t *testing.T) {
	repo := imagestest.Repo(t)
	for _, kill := range []bool{false, true} {
		how := "the client leaves"
		if kill {
			how = "the server is killed"
		}
		t.Run(how+": an async task runs to completed, with its log and result, and nothing is left", func(t *testing.T) {
			home := t.TempDir()
			s := startServerAt(t, home)
			id := s.startAsync(t, map[string]any{"task": "lines 400 5ms; say done unattended", "workingDirectory": repo, "sandbox": "workspace-write"})
			s.leave(t, kill)
			task := waitEnded(t, home, id)[id]
			if task.Status != store.Completed {
				t.Fatalf("status %s: %s", task.Status, task.Error)
			}
			checkNumberedLog(t, filepath.Join(home, "logs", id+".log"), 400)
			if result, err := os.ReadFile(filepath.Join(home, "logs", id+".result")); err != nil || string(result) != "done unattended" {
				t.Errorf("result %q, %v", result, err)
			}
			waitHomeIdle(t, home)
			assertNothingLeft(t, home)
		})
		t.Run(how+": five async tasks through a limit of 2 all complete, never more than 2 at once", func(t *testing.T) {
			home := t.TempDir()
			s := startServerAt(t, home, "CODEX_CONNECTOR_MAX_RUNNING=2")
			var ids []string
			for i := 0; i < 5; i++ {
				ids = append(ids, s.startAsync(t, map[string]any{"task": fmt.Sprintf("lines 100 10ms; say task %d", i), "workingDirectory": repo, "sandbox": "read-only"}))
			}
			s.leave(t, kill)
			tasks := waitEnded(t, home, ids...)
			for i, id := range ids {
				task := tasks[id]
				if task.Status != store.Completed || task.Summary == nil || task.Summary.LastMessage != fmt.Sprintf("task %d", i) {
					t.Errorf("task %d: %s %s %+v", i, task.Status, task.Error, task.Summary)
				}
				checkNumberedLog(t, filepath.Join(home, "logs", id+".log"), 100)
			}
			// Never more than 2 at once: at each start, count the others
			// that had started and not yet finished.
			for _, a := range tasks {
				n := 0
				for _, b := range tasks {
					if !b.StartedAt.After(a.StartedAt) && b.FinishedAt.After(a.StartedAt) {
						n++
					}
				}
				if n > 2 {
					t.Errorf("%d tasks ran at once when %s started", n, a.ID)
				}
			}
			waitHomeIdle(t, home)
			assertNothingLeft(t, home)
		})
		t.Run(how+": a timeout fires at its deadline, and the next server sees timed_out with the whole log", func(t *testing.T) {
			home := t.TempDir()
			s := startServerAt(t, home)
			// The task marks in the repository when it has printed all its
			// lines: a loaded machine may start it so late that the
			// timeout cuts the printing short.
			printed := fmt.Sprintf("printed-%t", kill)
			id := s.startAsync(t, map[string]any{"task": "lines 50 1ms; write " + printed + " x; sleep 1h", "workingDirectory": repo, "sandbox": "workspace-write", "timeoutMs": 8000})
			s.leave(t, kill)
			task := waitEnded(t, home, id)[id]
			if task.Status != store.TimedOut || task.FinishedAt.Before(task.Deadline) {
				t.Fatalf("status %s at %s (deadline %s): %s", task.Status, task.FinishedAt, task.Deadline, task.Error)
			}
			lines := 50
			if _, err := os.Stat(filepath.Join(repo, printed)); err != nil {
				lines = logLines(filepath.Join(home, "logs", id+".log"))
				t.Logf("the timeout came before the task printed all its lines; checking the %d it printed", lines)
			}
			waitHomeIdle(t, home)
			assertNothingLeft(t, home)
			// It ended with nobody watching; a server that starts later
			// reports it as it is.
			next := startServerAt(t, home)
			st := structured(t, next.call(t, "codex_status", map[string]any{"taskId": id}))
			if st["status"] != "timed_out" {
				t.Fatalf("the next server sees %v", st)
			}
			checkNumberedLog(t, filepath.Join(home, "logs", id+".log"), lines)
		})
	}
}

// A server that starts while the follower runs the tasks takes them back:
// the follower hands them over and exits, and the log has every line once.
func TestAServerTakesTheTasksBackFromTheFollower(t *testing.T) {
	repo := imagestest.Repo(t)
	home := t.TempDir()
	s := startServerAt(t, home)
	id := s.startAsync(t, map[string]any{"task": "lines 3000 3ms; say back with a server", "workingDirectory": repo, "sandbox": "danger-full-access"})
	log := filepath.Join(home, "logs", id+".log")
	waitLines(t, log, 100)
	s.leave(t, false)
	// The follower copies the log on.
	before := logLines(log)
	waitLines(t, log, before+300)
	next := startServerAt(t, home)
	next.waitLogged(t, "task "+id, "taken over")
	final := next.waitFor(t, id)
	if final["status"] != "completed" || final["result"] != "back with a server" {
		t.Fatalf("%v", final)
	}
	checkNumberedLog(t, log, 3000)
	server, _ := os.ReadFile(filepath.Join(home, "server.log"))
	for _, want := range []string{"following them", "handing the tasks back"} {
		if !strings.Contains(string(server), want) {
			t.Errorf("server.log does not say %q:\n%s", want, server)
		}
	}
}

// dockerPS lists the ids of the home's task containers, running or not.
func dockerPS(home string) ([]string, error) {
	out, err := exec.Command("docker", "ps", "-aq", "--filter", "label="+runner.LabelHome+"="+runner.HomeLabel(home)).Output()
	if err != nil {
		return nil, fmt.Errorf("docker ps: %w", err)
	}
	return strings.Fields(string(out)), nil
}

// A config.json broken while the server ran does not strand its tasks: the
// follower keeps the configuration the server started with, and says so.
func TestAConfigBrokenMeanwhileDoesNotStrandTheTasks(t *testing.T) {
	home := t.TempDir()
	s := startServerAt(t, home)
	id := s.startAsync(t, map[string]any{"task": "lines 20 5ms; say despite the typo", "workingDirectory": imagestest.Repo(t)})
	writeConfig(t, home, `{"maxRunning": "two"}`)
	s.leave(t, false)
	if task := waitEnded(t, home, id)[id]; task.Status != store.Completed {
		t.Fatalf("status %s: %s", task.Status, task.Error)
	}
	waitHomeIdle(t, home)
	if log, _ := os.ReadFile(filepath.Join(home, "server.log")); !strings.Contains(string(log), "the configuration no longer reads") {
		t.Errorf("server.log does not say why the follower kept the old configuration:\n%s", log)
	}
}
