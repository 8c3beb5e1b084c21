package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/codex-connector/codex-connector/images/imagestest"
	"github.com/codex-connector/codex-connector/runner"
	"github.com/codex-connector/codex-connector/store"
	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/client"
	sdk "github.com/modelcontextprotocol/go-sdk/mcp"
)

// The soak: tasks of the fake Codex, each printing numbered lines, run
// through a server that is SIGKILLed at random moments and restarted at
// once, beside a second server that runs on the same home the whole time,
// while tasks are still being submitted; the test's own engine (live-restore
// on) restarts once among the kills. At the end every task has ended exactly
// once, completed, having run once, with every line of its log once and in
// order, and nothing is left behind: no task container, no egress piece of
// an ended task, no temporary file, no process of the home, and no egress
// proxy once the home is gone.
//
// The normal suite runs a short version. `make soak` runs a long one:
//
//	SOAK_TASKS  tasks (default 8)
//	SOAK_KILLS  kills of the first server (default 3 per 8 tasks)
//	SOAK_SEED   replays the random choices of an earlier run (it prints its seed)
//
//	SOAK_ENGINE_ANYTIME=1  stops the engine at its random moment even if a
//	            task is being launched then (see below)
//
// What a seed fixes is the plan (the tasks, the gaps, where the engine
// restart falls); where a kill lands in a task's life is up to the machine.
//
// The engine restart meets three things the engine does (Docker 20.10.24,
// each seen in its own log, which the soak keeps with the home when it
// fails), and the soak is shaped around them, not blind to them:
//   - A container that exits while the engine is down loses what it printed
//     meanwhile (see soakEngineGate): no task ends while the engine is down.
//   - The one message its log copier holds when the engine exits is lost:
//     the engine's own copy of the output (kept by keepEngineLogs) then
//     lacks that line, taken in across the restart. Such a task's log must
//     hold exactly the engine's copy, and the lines are counted apart.
//   - Stopped while a container starts and none runs, a live-restore engine
//     finds nothing to keep and stops every container, the one that
//     finished starting included. And a launch the engine's shutdown cuts
//     short fails the task ("read progress: unexpected EOF" from a build,
//     a container killed before its mounts are confirmed), where the README
//     says a launch waits for the engine: a gap in the runner, not fixed
//     here. So the engine stops only once no task is being launched (each
//     is queued, or running with its Codex started); SOAK_ENGINE_ANYTIME=1
//     stops it at its random moment all the same. Beware: a container
//     start the shutdown cuts short can leave its containerd-shim (and
//     even the container's process) running on the machine after the
//     test's engine is gone; look with `ps` afterwards.

type soakPlan struct {
	tasks, kills int
	seed         uint64
	// engineAnytime stops the engine without waiting for launches to end.
	engineAnytime bool
}

func soakPlanFromEnv(t *testing.T) soakPlan {
	t.Helper()
	number := func(name string, def int) int {
		v := os.Getenv(name)
		if v == "" {
			return def
		}
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			t.Fatalf("%s must be a whole number of at least 1, got %q", name, v)
		}
		return n
	}
	p := soakPlan{tasks: number("SOAK_TASKS", 8)}
	p.kills = number("SOAK_KILLS", max(1, p.tasks*3/8))
	p.engineAnytime = os.Getenv("SOAK_ENGINE_ANYTIME") == "1"
	p.seed = uint64(time.Now().UnixNano())
	if v := os.Getenv("SOAK_SEED"); v != "" {
		seed, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			t.Fatalf("SOAK_SEED must be a number printed by an earlier run, got %q", v)
		}
		p.seed = seed
	}
	return p
}

// soakTask is one task of the soak, as the test submits it.
type soakTask struct {
	n       int
	repo    string
	sandbox string
	lines   int
	prompt  string
	result  string
	id      string // once its record is known
}

// onceFile is the file each run of the task appends a line to.
func (st *soakTask) onceFile() string {
	return filepath.Join(st.repo, fmt.Sprintf("once-%02d.txt", st.n))
}

// soakServer is the killable server of the moment; dead is closed once it
// has been killed, so that a call cut short by the kill can be told from a
// failure of a server that lives.
type soakServer struct {
	*mcpServer
	dead chan struct{}
}

func TestSoak(t *testing.T) {
	plan := soakPlanFromEnv(t)
	rng := rand.New(rand.NewPCG(plan.seed, plan.seed^0x50a4))
	say := func(format string, args ...any) {
		t.Logf(format, args...)
		fmt.Printf("soak: "+format+"\n", args...)
	}
	say("seed %d (replay with SOAK_SEED=%d): %d tasks, %d kills", plan.seed, plan.seed, plan.tasks, plan.kills)

	// Debug: the engine's log, kept with the home when the soak fails,
	// then says what it did with each container.
	d := imagestest.StartDockerd(t, true, "--debug")
	image := d.FakeCodex(t)
	engine := d.Client(t)
	dir := t.TempDir()
	home := filepath.Join(dir, "home")
	// Registered before the servers, so it runs after their cleanups:
	// nothing of this home outlives the test, whatever happened.
	t.Cleanup(func() {
		for _, pid := range homeProcesses(home) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	})
	env := []string{"CODEX_CONNECTOR_MAX_RUNNING=3", "CODEX_CONNECTOR_LEASE=3s"}
	// Docker drops what a container prints while a live-restore engine is
	// down if the container exits before the engine is back (20.10; see
	// soakEngineGate): no follower can copy it. So no task ends while the
	// engine is down: each waits for this file in its repository at its
	// end, and the file is there only while the engine is up. They print
	// through the restart all the same.
	const engineUp = ".soak-engine-up"
	repos := make([]string, min(plan.tasks, 3))
	for i := range repos {
		repos[i] = imagestest.Repo(t)
	}
	gate := soakEngineGate{repos: repos, name: engineUp}
	gate.open(t)
	tasks := make([]*soakTask, plan.tasks)
	for i := range tasks {
		st := &soakTask{n: i + 1, repo: repos[i%len(repos)], sandbox: "danger-full-access", lines: 500 + rng.IntN(2500)}
		if rng.IntN(2) == 0 {
			st.sandbox = "workspace-write" // through the egress proxy
		}
		st.result = fmt.Sprintf("soak task %02d done", st.n)
		st.prompt = fmt.Sprintf("append once-%02d.txt ran; lines %d %dms; await %s; say %s", st.n, st.lines, 1+rng.IntN(2), engineUp, st.result)
		tasks[i] = st
	}
	submitGaps := make([]time.Duration, len(tasks))
	for i := range submitGaps {
		if rng.IntN(3) > 0 { // a third come in bursts
			submitGaps[i] = time.Duration(rng.IntN(1200)) * time.Millisecond
		}
	}
	// More tasks run longer: the kills spread over about as long.
	killGaps := make([]time.Duration, plan.kills)
	stretch := max(1, float64(plan.tasks)/8)
	for i := range killGaps {
		killGaps[i] = time.Duration(stretch * float64(300*time.Millisecond+time.Duration(rng.IntN(2200))*time.Millisecond))
	}
	engineAfter := rng.IntN(plan.kills + 1) // the engine restarts after this many kills
	killWhileDown := rng.IntN(2) == 0       // and a server starts while it is down
	engineDownFor := 500*time.Millisecond + time.Duration(rng.IntN(2000))*time.Millisecond

	// Within the engine's data root, which dockerd makes a mount of its
	// own: a hard link cannot cross into another.
	engineLogs := filepath.Join(d.DataRoot(), "soak-kept-logs")
	defer keepEngineLogs(d, engineLogs)()

	began := time.Now()
	db := store.New(filepath.Join(home, "tasks.db"), 10*time.Second)
	b := startOn(t, d, home, image, env...)
	var mu sync.Mutex
	a := &soakServer{startOn(t, d, home, image, env...), make(chan struct{})}
	current := func() *soakServer {
		mu.Lock()
		defer mu.Unlock()
		return a
	}
	watch := watchRecords(db)
	defer watch.stop()

	// The submitter: each task to the killable server or to the other, at
	// random, while the kills go on.
	var engineRestarting atomic.Bool
	choices := make([]bool, len(tasks))
	for i := range choices {
		choices[i] = rng.IntN(2) == 0
	}
	var ambiguous atomic.Int32
	// Held by each submission, and by the engine restart while it waits
	// for the launches to end.
	var submitting sync.Mutex
	holding := false // the test's goroutine holds submitting
	submitted, abandon := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(submitted)
		for i, st := range tasks {
			select {
			case <-abandon:
				return
			case <-time.After(submitGaps[i]):
			}
			submitting.Lock()
			var to *soakServer
			if choices[i] {
				to = current()
			} else {
				to = &soakServer{b, nil}
			}
			if cut := submitSoakTask(t, to, &soakServer{b, nil}, db, st, &engineRestarting, abandon); cut {
				ambiguous.Add(1)
			}
			submitting.Unlock()
		}
	}()
	// Should the test end early, the submitter still reports to it: it
	// ends first, while the servers still answer.
	t.Cleanup(func() {
		close(abandon)
		if holding {
			submitting.Unlock()
		}
		<-submitted
	})

	// The chaos, on the test's goroutine: servers start and the engine
	// stops and starts only there.
	kills, lastKill := 0, time.Duration(0)
	kill := func() {
		mu.Lock()
		old := a
		mu.Unlock()
		old.kill(t)
		close(old.dead)
		kills++
		lastKill = time.Since(began)
		next := &soakServer{startOn(t, d, home, image, env...), make(chan struct{})}
		mu.Lock()
		a = next
		mu.Unlock()
	}
	var engineStopped, engineBack time.Time
	for i := 0; i <= plan.kills; i++ {
		if i == engineAfter {
			engineRestarting.Store(true)
			// No task ends from here on, so none frees a slot for a launch.
			gate.close(t)
			if !plan.engineAnytime {
				submitting.Lock()
				holding = true
				awaitNoLaunch(t, db, home)
			}
			engineStopped = time.Now()
			d.Stop(t)
			if killWhileDown && i < plan.kills {
				kill() // the new server starts with no engine to answer
				i++
			}
			time.Sleep(engineDownFor)
			d.Start(t)
			engineBack = time.Now()
			gate.open(t)
			if holding {
				submitting.Unlock()
				holding = false
			}
			// A server that started while the engine was down negotiates
			// the API version within seconds of its return.
			go func() { time.Sleep(5 * time.Second); engineRestarting.Store(false) }()
		}
		if i >= plan.kills {
			break
		}
		time.Sleep(killGaps[i])
		kill()
	}
	<-submitted
	for _, st := range tasks {
		if st.id == "" {
			t.Fatalf("task %02d was never accepted", st.n)
		}
	}

	// Every task ends; generous, since the machine may be busy.
	waitAllFinal(t, db, tasks, 10*time.Minute)
	settled := time.Since(began)

	// What a task leaves on the engine and in the egress directory goes
	// after its end is recorded, by its follower, or by a later sweep when
	// a kill fell in between (a container only once it is a minute old):
	// waited for while the servers run.
	var leftovers []string
	for deadline := time.Now().Add(3 * time.Minute); ; {
		leftovers = soakLeftovers(engine, home, tasks)
		if len(leftovers) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	for _, l := range leftovers {
		t.Errorf("left behind: %s", l)
	}

	// Both servers end as Claude Code ends them: stdin closes.
	for _, s := range []*mcpServer{current().mcpServer, b} {
		closeServer(t, s)
	}
	lastClosed := time.Now()
	// Nothing of the home runs on once its servers are gone: a process
	// that hands tasks on may take a moment to see there are none.
	var stray []int
	for {
		stray = homeProcesses(home)
		if len(stray) == 0 || time.Since(lastClosed) > 30*time.Second {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	for _, pid := range stray {
		cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		t.Errorf("process %d (%s) of the home still runs 30s after the last server closed", pid, bytes.ReplaceAll(cmdline, []byte{0}, []byte{' '}))
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	watch.stop()
	for _, v := range watch.violations() {
		t.Errorf("a task ended more than once: %s", v)
	}
	for _, f := range soakStrayFiles(home, tasks) {
		t.Errorf("left in the home: %s", f)
	}

	linesChecked, engineLost := 0, 0
	for _, st := range tasks {
		t.Run(fmt.Sprintf("task %02d completed once with every line once", st.n), func(t *testing.T) {
			task, err := db.Get(st.id)
			if err != nil {
				t.Fatal(err)
			}
			defer func() {
				if t.Failed() {
					t.Logf("task %02d is %s (%s, %d lines): %s", st.n, st.id, st.sandbox, st.lines, st.prompt)
					t.Logf("container %.12s: %s", task.ContainerID, engineCopy(engineLogs, task.ContainerID))
				}
			}()
			if task.Status != store.Completed || task.Result != st.result {
				t.Fatalf("task %s (%s): %s %q, result %q", st.id, st.sandbox, task.Status, task.Error, task.Result)
			}
			// Each run appends a line: one line is one run.
			if got, err := os.ReadFile(st.onceFile()); err != nil || string(got) != "ran\n" {
				t.Fatalf("%s = %q (%v): the task ran %d times", st.onceFile(), got, err, strings.Count(string(got), "\n"))
			}
			log := filepath.Join(home, "logs", st.id+".log")
			if kept, ok := engineNumbered(engineLogs, task.ContainerID); ok {
				if lost, ok := lostAtRestart(kept, st.lines, engineStopped, engineBack); ok && len(lost) > 0 {
					// Lines the engine itself lost at its restart (see the
					// top): the log holds every line it had, once, in order.
					checkLogIsEngineCopy(t, log, kept)
					t.Logf("the engine lost line %v of task %02d at its restart; the log has every other line once, in order", lost, st.n)
					engineLost += len(lost)
					linesChecked += len(kept)
					return
				}
			}
			checkNumberedLog(t, log, st.lines)
			linesChecked += st.lines
		})
	}

	takeovers := 0
	if data, err := os.ReadFile(filepath.Join(home, "server.log")); err == nil {
		takeovers = strings.Count(string(data), ": taken over from ")
	} else {
		t.Errorf("read the server log: %v", err)
	}
	say("%d tasks, %d kills (the last at %s), 1 engine restart, %d takeovers, %d submissions cut by a kill, %d lines checked (%d lost by the engine at its restart); all ended at %s, wall time %s",
		len(tasks), kills, lastKill.Round(100*time.Millisecond), takeovers, ambiguous.Load(), linesChecked, engineLost, settled.Round(100*time.Millisecond), time.Since(began).Round(100*time.Millisecond))

	if t.Failed() {
		// What went wrong is in the home: keep it.
		kept := filepath.Join(os.TempDir(), fmt.Sprintf("soak-home-%d", plan.seed))
		if out, err := exec.Command("cp", "-a", home, kept).CombinedOutput(); err != nil {
			t.Logf("keep the home: %v %s", err, out)
		} else {
			// And what the engine said and kept, which goes with it.
			_ = exec.Command("cp", d.LogFile(), filepath.Join(kept, "dockerd.log")).Run()
			_ = exec.Command("cp", "-a", engineLogs, filepath.Join(kept, "engine-logs")).Run()
			say("the home is kept in %s, with the engine's log and its copies of the tasks' output", kept)
		}
		return
	}
	// The egress proxy serves the home as long as it exists; once it is
	// deleted, the next server on the engine removes the proxy.
	if err := os.RemoveAll(home); err != nil {
		t.Fatalf("remove the home: %v", err)
	}
	sweeper := startOn(t, d, filepath.Join(dir, "other-home"), image)
	for i := 0; ; i++ {
		_, err := engine.ContainerInspect(context.Background(), runner.ProxyName(home))
		if cerrdefs.IsNotFound(err) {
			break
		}
		if i > 600 {
			t.Errorf("the egress proxy of the deleted home is still there a minute after a server started: %v", err)
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	closeServer(t, sweeper)
}

// soakEngineGate is a file in each repository that the soak's tasks wait
// for before they end.
//
// The reason, reproduced with no codex-connector: on a live-restore engine
// (Docker 20.10.24), run a container that prints 1,600 lines 2 ms apart,
// stop the engine after 1 s (SIGTERM), start it 6 s later: the container
// exited meanwhile, and `docker logs` holds the ~830 lines printed before
// the stop, none of the rest; started again after 0.5 s, while it still
// runs, the container's log holds all 1,600.
type soakEngineGate struct {
	repos []string
	name  string
}

func (g soakEngineGate) open(t *testing.T) {
	t.Helper()
	for _, repo := range g.repos {
		if err := os.WriteFile(filepath.Join(repo, g.name), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// close removes the file, then waits for the tasks that were past it to
// exit: they only print their last message.
func (g soakEngineGate) close(t *testing.T) {
	t.Helper()
	for _, repo := range g.repos {
		if err := os.Remove(filepath.Join(repo, g.name)); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(time.Second)
}

// submitSoakTask starts a task through to, and records its id. A call that
// the kill of to cut short may or may not have recorded the task: the
// database says which, and a task that was not recorded goes to other.
// Refusals while the engine restarts are tried again. It reports whether a
// kill cut the call short.
func submitSoakTask(t *testing.T, to, other *soakServer, db *store.Store, st *soakTask, engineRestarting *atomic.Bool, abandon <-chan struct{}) (cut bool) {
	args := map[string]any{"task": st.prompt, "workingDirectory": st.repo, "sandbox": st.sandbox, "async": true}
	for deadline := time.Now().Add(5 * time.Minute); time.Now().Before(deadline); {
		select {
		case <-abandon:
			return cut
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		res, err := to.session.CallTool(ctx, &sdk.CallToolParams{Name: "codex_agent", Arguments: args})
		cancel()
		if err != nil {
			select {
			case <-to.dead:
			case <-time.After(time.Minute):
				t.Errorf("start task %02d: %v, and its server was not killed", st.n, err)
				return false
			}
			cut = true
			if id := recordedWith(t, db, st.prompt); id != "" {
				st.id = id
				return cut
			}
			to = other
			continue
		}
		if res.IsError {
			if strings.Contains(text(res), "cannot reach the Docker engine") || engineRestarting.Load() {
				time.Sleep(300 * time.Millisecond)
				continue
			}
			t.Errorf("start task %02d: %s", st.n, text(res))
			return cut
		}
		var out struct {
			TaskID string `json:"taskId"`
		}
		data, _ := json.Marshal(res.StructuredContent)
		if err := json.Unmarshal(data, &out); err != nil || out.TaskID == "" {
			t.Errorf("start task %02d: no task id in %s", st.n, data)
			return cut
		}
		st.id = out.TaskID
		return cut
	}
	t.Errorf("start task %02d: refused for 5 minutes", st.n)
	return cut
}

// keepEngineLogs hard-links the engine's own copy of each container's
// output (json-file) into dir as soon as the container appears, until the
// returned stop is called: the copy then outlives the container, and a
// line missing from a task's log can be told from one the engine never had.
func keepEngineLogs(d *imagestest.Dockerd, dir string) (stop func()) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return func() {}
	}
	quit, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		for {
			found, _ := filepath.Glob(filepath.Join(d.DataRoot(), "containers", "*", "*-json.log"))
			for _, src := range found {
				dst := filepath.Join(dir, filepath.Base(src))
				if _, err := os.Lstat(dst); errors.Is(err, fs.ErrNotExist) {
					_ = os.Link(src, dst)
				}
			}
			select {
			case <-quit:
				return
			case <-time.After(100 * time.Millisecond):
			}
		}
	}()
	return func() { close(quit); <-done }
}

// engineLine is a numbered line of the engine's own copy of a container's
// output, and when the engine took it in.
type engineLine struct {
	n  int
	at time.Time
}

// engineNumbered reads the numbered lines of the engine's own copy of a
// container's output, kept by keepEngineLogs; ok is false when it was not
// kept.
func engineNumbered(dir, containerID string) (lines []engineLine, ok bool) {
	f, err := os.Open(filepath.Join(dir, containerID+"-json.log"))
	if err != nil {
		return nil, false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	for sc.Scan() {
		var m struct {
			Log  string    `json:"log"`
			Time time.Time `json:"time"`
		}
		if json.Unmarshal(sc.Bytes(), &m) != nil || !strings.HasPrefix(m.Log, "line ") {
			continue
		}
		if n, err := strconv.Atoi(strings.TrimSpace(strings.TrimPrefix(m.Log, "line "))); err == nil {
			lines = append(lines, engineLine{n, m.Time})
		}
	}
	return lines, sc.Err() == nil
}

// lostAtRestart returns the lines, of 1 to want, that the engine's own copy
// lacks, if each of its gaps spans the engine's restart: the line before
// it taken in before the engine was back, the line after it once it had
// been stopped. ok is false for any other copy: one with a line twice or
// out of order, a gap at another time, or missing its last lines.
func lostAtRestart(lines []engineLine, want int, stopped, back time.Time) (lost []int, ok bool) {
	if stopped.IsZero() || len(lines) == 0 || lines[len(lines)-1].n != want {
		return nil, false
	}
	next := 1
	for i, l := range lines {
		if l.n < next {
			return nil, false
		}
		if l.n > next {
			if i == 0 || !lines[i-1].at.Before(back) || !l.at.After(stopped) {
				return nil, false
			}
			for k := next; k < l.n; k++ {
				lost = append(lost, k)
			}
		}
		next = l.n + 1
	}
	return lost, true
}

// checkLogIsEngineCopy checks that the log's numbered lines are exactly
// those of the engine's own copy, in its order.
func checkLogIsEngineCopy(t *testing.T, path string, engine []engineLine) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	i := 0
	for _, line := range strings.Split(string(data), "\n") {
		if !strings.HasPrefix(line, "line ") {
			continue
		}
		if i >= len(engine) || line != fmt.Sprintf("line %06d", engine[i].n) {
			want := "nothing more"
			if i < len(engine) {
				want = fmt.Sprintf("line %06d", engine[i].n)
			}
			t.Fatalf("log has %q where the engine's own copy has %s", line, want)
		}
		i++
	}
	if i != len(engine) {
		t.Fatalf("log has %d numbered lines, the engine's own copy %d", i, len(engine))
	}
}

// engineCopy says what the engine's own copy of a container's output holds
// of the numbered lines.
func engineCopy(dir, containerID string) string {
	lines, ok := engineNumbered(dir, containerID)
	if !ok {
		return "the engine's own copy of its output was not kept"
	}
	next := 1
	var gaps []string
	for _, l := range lines {
		if l.n != next && len(gaps) < 5 {
			gaps = append(gaps, fmt.Sprintf("line %d where %d belongs (taken in at %s)", l.n, next, l.at.Format("15:04:05.000")))
		}
		next = l.n + 1
	}
	if len(gaps) == 0 {
		return fmt.Sprintf("the engine's own copy of its output holds %d numbered lines, each once and in order", len(lines))
	}
	return fmt.Sprintf("the engine's own copy of its output holds %d numbered lines, with %s", len(lines), strings.Join(gaps, "; "))
}

// awaitNoLaunch waits until no task is being launched: each one that has
// not ended is queued, or running with its Codex started (it has printed,
// so its gate opened). A launch that never ends fails the test.
func awaitNoLaunch(t *testing.T, db *store.Store, home string) {
	t.Helper()
	var launching []string
	quietFor := 0
	for deadline := time.Now().Add(2 * time.Minute); quietFor < 2; {
		if time.Now().After(deadline) {
			t.Fatalf("tasks still launching after 2 minutes:\n%s", strings.Join(launching, "\n"))
		}
		time.Sleep(200 * time.Millisecond)
		all, _, err := db.List(store.Filter{Statuses: []store.Status{store.Running}})
		if err != nil {
			launching = []string{err.Error()}
			quietFor = 0
			continue
		}
		launching = launching[:0]
		for _, task := range all {
			data, _ := os.ReadFile(filepath.Join(home, "logs", task.ID+".log"))
			if !bytes.Contains(data, []byte("fakecodex args")) {
				launching = append(launching, fmt.Sprintf("%s (follower %s, container %.12s)", task.ID, task.Follower, task.ContainerID))
			}
		}
		if len(launching) > 0 {
			quietFor = 0
			continue
		}
		quietFor++
	}
}

// recordedWith returns the id of the task recorded with prompt, if any.
func recordedWith(t *testing.T, db *store.Store, prompt string) string {
	all, _, err := db.List(store.Filter{})
	if err != nil {
		t.Errorf("list tasks: %v", err)
		return ""
	}
	id := ""
	for _, task := range all {
		if task.Prompt == prompt {
			if id != "" {
				t.Errorf("two records of one submission: %s and %s", id, task.ID)
			}
			id = task.ID
		}
	}
	return id
}

// waitAllFinal waits until every task's record is final.
func waitAllFinal(t *testing.T, db *store.Store, tasks []*soakTask, limit time.Duration) {
	t.Helper()
	var open []string
	for deadline := time.Now().Add(limit); ; {
		open = open[:0]
		for _, st := range tasks {
			task, err := db.Get(st.id)
			if err != nil || !task.Status.Final() {
				open = append(open, fmt.Sprintf("%02d %s: %v %v", st.n, st.id, statusOf(task), err))
			}
		}
		if len(open) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("tasks not ended after %s:\n%s", limit, strings.Join(open, "\n"))
		}
		time.Sleep(250 * time.Millisecond)
	}
}

func statusOf(task *store.Task) string {
	if task == nil {
		return "no record"
	}
	return fmt.Sprintf("%s (follower %s)", task.Status, task.Follower)
}

// recordWatch reads every record a few times a second and notes any final
// record that changes afterwards, or goes back to queued or running: a task
// whose end was recorded twice.
type recordWatch struct {
	quit     chan struct{}
	done     chan struct{}
	stopOnce sync.Once
	mu       sync.Mutex
	bad      []string
}

func watchRecords(db *store.Store) *recordWatch {
	w := &recordWatch{quit: make(chan struct{}), done: make(chan struct{})}
	final := map[string]string{}
	reported := map[string]bool{}
	go func() {
		defer close(w.done)
		for {
			all, _, err := db.List(store.Filter{})
			if err == nil {
				for _, task := range all {
					data, _ := json.Marshal(task)
					first, ended := final[task.ID]
					switch {
					case !ended && task.Status.Final():
						final[task.ID] = string(data)
					case ended && first != string(data) && !reported[task.ID]:
						reported[task.ID] = true
						w.mu.Lock()
						w.bad = append(w.bad, fmt.Sprintf("task %s: first\n%s\nthen\n%s", task.ID, first, data))
						w.mu.Unlock()
					}
				}
			}
			select {
			case <-w.quit:
				return
			case <-time.After(200 * time.Millisecond):
			}
		}
	}()
	return w
}

func (w *recordWatch) stop() {
	w.stopOnce.Do(func() { close(w.quit) })
	<-w.done
}

func (w *recordWatch) violations() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]string(nil), w.bad...)
}

// soakLeftovers lists what ended tasks still have on the engine and in the
// egress directory.
func soakLeftovers(engine *client.Client, home string, tasks []*soakTask) []string {
	var out []string
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	list, err := engine.ContainerList(ctx, container.ListOptions{All: true,
		Filters: filters.NewArgs(filters.Arg("label", runner.LabelHome+"="+runner.HomeLabel(home)))})
	if err != nil {
		return []string{fmt.Sprintf("list containers: %v", err)}
	}
	for _, c := range list {
		out = append(out, fmt.Sprintf("container %s of task %s (%s)", c.ID[:12], c.Labels[runner.LabelTask], c.State))
	}
	// The helpers that ready cache volumes, which a kill may strand; the
	// proxy of the home is the one container that stays.
	helpers, err := engine.ContainerList(ctx, container.ListOptions{All: true,
		Filters: filters.NewArgs(filters.Arg("label", runner.LabelHomePath+"="+home))})
	if err != nil {
		return []string{fmt.Sprintf("list containers: %v", err)}
	}
	for _, c := range helpers {
		if c.Labels[runner.LabelComponent] != "egress" {
			out = append(out, fmt.Sprintf("helper container %s (%s, %s)", c.ID[:12], c.Labels[runner.LabelComponent], c.State))
		}
	}
	for _, st := range tasks {
		for _, p := range []string{
			filepath.Join(home, "egress", "policies", st.id+".json"),
			filepath.Join(home, "egress", "sockets", st.id),
			filepath.Join(home, "egress", st.id),
		} {
			if _, err := os.Lstat(p); !errors.Is(err, fs.ErrNotExist) {
				out = append(out, fmt.Sprintf("egress piece %s of ended task %02d (%v)", p, st.n, err))
			}
		}
	}
	return out
}

// soakStrayFiles lists temporary files anywhere in the home, and files of
// logs/ and runs/ that belong to no task.
func soakStrayFiles(home string, tasks []*soakTask) []string {
	ids := map[string]bool{}
	for _, st := range tasks {
		ids[st.id] = true
	}
	var out []string
	_ = filepath.WalkDir(home, func(p string, e fs.DirEntry, err error) error {
		if err == nil && strings.Contains(e.Name(), ".tmp") {
			out = append(out, "temporary file "+p)
		}
		return nil
	})
	logs, _ := os.ReadDir(filepath.Join(home, "logs"))
	for _, e := range logs {
		id, _, _ := strings.Cut(e.Name(), ".")
		if !ids[id] && !strings.Contains(e.Name(), ".tmp") {
			out = append(out, "log file of no task "+e.Name())
		}
	}
	runs, _ := os.ReadDir(filepath.Join(home, "runs"))
	for _, e := range runs {
		if !ids[e.Name()] {
			out = append(out, "state directory of no task "+e.Name())
		}
	}
	return out
}

// closeServer ends a server as Claude Code does, by closing its stdin, and
// waits for it to exit.
func closeServer(t *testing.T, s *mcpServer) {
	t.Helper()
	s.killed = true // nothing for the cleanup to stop
	s.session.Close()
	exited := make(chan struct{})
	go func() { s.cmd.Wait(); close(exited) }()
	select {
	case <-exited:
	case <-time.After(time.Minute):
		s.cmd.Process.Kill()
		<-exited
		t.Errorf("server %d still running a minute after its stdin closed", s.cmd.Process.Pid)
	}
}
