package runner

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/codex-connector/codex-connector/internal/hostfs"
	"github.com/codex-connector/codex-connector/internal/hostfs/hostfstest"
	"github.com/codex-connector/codex-connector/store"
)

// waitRunning waits until the task's container runs, and returns its id.
func (h *harness) waitRunning(t *testing.T, id string) string {
	t.Helper()
	h.waitStatus(t, id, store.Running)
	task, err := h.Get(id)
	hostfstest.Must(t, err)
	return task.ContainerID
}

// numberedLines returns the numbers of the "line N" lines of a log, in
// order, and the other lines.
func numberedLines(t *testing.T, path string) (nums []int, other []string) {
	t.Helper()
	f, err := os.Open(path)
	hostfstest.Must(t, err)
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var n int
		if _, err := fmt.Sscanf(sc.Text(), "line %d", &n); err == nil && strings.HasPrefix(sc.Text(), "line ") {
			nums = append(nums, n)
		} else {
			other = append(other, sc.Text())
		}
	}
	hostfstest.Must(t, sc.Err())
	return nums, other
}

// endsCut says whether a log ends with a line of codex-connector's that
// says where and why it was cut, and returns what came before it.
func endsCut(log string) (string, bool) {
	body := strings.TrimSuffix(log, "\n")
	i := strings.LastIndexByte(body, '\n') + 1
	last := body[i:]
	return log[:i], strings.HasPrefix(last, "codex-connector: the log was cut here") && strings.HasSuffix(last, "; the task was stopped")
}

// nulLines returns the numbers of the lines a `nuls` step printed, in order,
// and fails t if anything else comes between them but their empty lines.
func nulLines(t *testing.T, log string) []int {
	t.Helper()
	var nums []int
	lines := strings.Split(log, "\n")
	for i, l := range lines {
		if n, ok := strings.CutSuffix(l, strings.Repeat("\x00", 16)); ok && len(n) == 6 {
			num, err := strconv.Atoi(n)
			hostfstest.Must(t, err)
			if i+1 < len(lines) && lines[i+1] != "" {
				t.Fatalf("line %d of the flood is followed by %q, not its empty line", num, lines[i+1])
			}
			nums = append(nums, num)
		}
	}
	return nums
}

// consecutive fails t unless nums are from, from+1, … : every line once,
// in order, none left out.
func consecutive(t *testing.T, nums []int, from int) {
	t.Helper()
	for i, n := range nums {
		if n != from+i {
			t.Fatalf("line %d where line %d should be: a duplicate, a gap or a step back", n, from+i)
		}
	}
}

func TestLogCap(t *testing.T) {
	const limit = 1 << 20
	h := newHarness(t, func(c *Config) { c.Limits.LogBytes = limit })

	t.Run("a flood past the cap is cut there, and the task stopped with the reason", func(t *testing.T) {
		task, err := h.Start(context.Background(), Spec{Prompt: "flood 5000000; sleep 1h", WorkingDirectory: newRepo(t)})
		hostfstest.Must(t, err)
		info, err := h.engine.ContainerInspect(context.Background(), h.waitRunning(t, task.ID))
		hostfstest.Must(t, err)
		if lc := info.HostConfig.LogConfig; lc.Type != "json-file" || lc.Config["max-size"] != fmt.Sprint(engineLogFactor*limit) || lc.Config["max-file"] != "1" {
			t.Errorf("the engine keeps the output as %+v", lc)
		}
		final := h.waitFinal(t, task.ID)
		if final.Status != store.Failed || !strings.Contains(final.Error, "passed the log cap of 1 MiB (limits.logMB)") {
			t.Fatalf("%s: %q", final.Status, final.Error)
		}
		log := readFile(t, h.LogPath(task.ID))
		// The flood ran (the cap fired), and the log ends at the cap, or
		// where the engine's copy was last seen whole before it: under
		// load, possibly before the flood's first line.
		body, cut := endsCut(log)
		if !cut || int64(len(body)) > limit+1 || final.LogBytes != int64(len(log)) {
			t.Fatalf("log of %d bytes (record says %d), ending %q", len(log), final.LogBytes, log[max(0, len(log)-300):])
		}
		t.Logf("the log: %d bytes of the flood, then %q", len(body), log[len(body):])
	})

	t.Run("short lines that fit the engine's copy are all copied, each once", func(t *testing.T) {
		// 20,000 lines of 12 bytes: the engine stores some 76 bytes for
		// each, 1.5 MB, less than half its copy.
		final := h.startAndWait(t, Spec{Prompt: "lines 20000; say counted", WorkingDirectory: newRepo(t)})
		if final.Status != store.Completed || final.Result != "counted" {
			t.Fatalf("%s: %q", final.Status, final.Error)
		}
		nums, _ := numberedLines(t, h.LogPath(final.ID))
		consecutive(t, nums, 1)
		if len(nums) != 20000 {
			t.Fatalf("%d of 20000 lines", len(nums))
		}
	})

	t.Run("short lines past what the engine's copy holds stop the task, every line before once and in order", func(t *testing.T) {
		// 80,000 lines of 12 bytes stay below the cap; the engine stores
		// each as a JSON line several times as long, 6 MB, more than its
		// copy holds. They begin a second in, so that the engine's copy is
		// watched before they fill it: on a fast machine the flood, the
		// stop and the container's removal are over in well under one.
		task, err := h.Start(context.Background(), Spec{Prompt: "sleep 1s; lines 80000; sleep 1h", WorkingDirectory: newRepo(t)})
		hostfstest.Must(t, err)
		id := h.waitRunning(t, task.ID)
		// Until the task ends (and its container goes), the engine's copy
		// stays within its cap, and the one message that made it full.
		// The record names the container before the engine starts it, and
		// the engine names its log file only at the start: it is looked
		// for until it is named.
		var most int64
		logPath := ""
		for i := 0; ; i++ {
			if logPath == "" {
				if info, err := h.engine.ContainerInspect(context.Background(), id); err == nil {
					logPath = info.LogPath
				}
			}
			if fi, err := os.Stat(logPath); logPath != "" && err == nil {
				most = max(most, fi.Size())
			}
			if now, err := h.Get(task.ID); err == nil && now.Status.Final() {
				break
			}
			if i > 6000 {
				t.Fatal("the task did not end")
			}
			time.Sleep(10 * time.Millisecond)
		}
		if most == 0 || most > engineLogFactor*limit+16<<10 {
			t.Errorf("the engine's copy held up to %d bytes; its cap is %d", most, engineLogFactor*limit)
		}
		final := h.waitFinal(t, task.ID)
		if final.Status != store.Failed || !strings.Contains(final.Error, "passed the log cap of 1 MiB (limits.logMB)") {
			t.Fatalf("%s: %q", final.Status, final.Error)
		}
		log := readFile(t, h.LogPath(task.ID))
		body, cut := endsCut(log)
		if !cut {
			t.Fatalf("the log does not end with the cut: %q", log[max(0, len(log)-300):])
		}
		nums, other := numberedLines(t, h.LogPath(task.ID))
		consecutive(t, nums, 1)
		// The cut comes where the copy last saw the engine's copy whole:
		// under load, possibly before the first line.
		if len(nums) >= 80000 {
			t.Fatalf("%d of 80000 lines before the cut", len(nums))
		}
		t.Logf("%d of 80000 lines (%d bytes; the engine's copy held up to %d), then %q", len(nums), len(body), most, other[len(other)-1])
	})
}

// A task that floods its output with what the engine's JSON copy inflates
// most (NULs, empty lines), then does something: what it did is in the log
// and in "Commands run", every line once and in order, or the task is
// stopped for the log cap.
func TestLogFloodTheEngineInflates(t *testing.T) {
	const limit = 1 << 20
	h := newHarness(t, func(c *Config) { c.Limits.LogBytes = limit })
	// Each step begins a second in, as Codex's first command would: the
	// copy follows the container by then.
	t.Run("a flood the engine's copy cannot hold: the task is stopped with the reason", func(t *testing.T) {
		// 40,000 pairs: 960 KB in the log, below the cap; some 9.8 MB in
		// the engine's copy, which holds 4 MB.
		repo := newRepo(t)
		final := h.startAndWait(t, Spec{Prompt: "sleep 1s; nuls 40000; write flood-marker flooded; lines 3; say done", WorkingDirectory: repo})
		if data, err := os.ReadFile(filepath.Join(repo, "flood-marker")); err != nil || string(data) != "flooded\n" {
			t.Fatalf("the flood did not run to its end: the marker says %q, %v", data, err)
		}
		if final.Status != store.Failed || !strings.Contains(final.Error, "passed the log cap of 1 MiB (limits.logMB)") {
			t.Fatalf("%s: %q; commands %v", final.Status, final.Error, exitCodes(t, final))
		}
		log := readFile(t, h.LogPath(final.ID))
		body, cut := endsCut(log)
		if !cut {
			t.Fatalf("the log does not end with the cut: %q", log[max(0, len(log)-300):])
		}
		nums := nulLines(t, body)
		consecutive(t, nums, 1)
		if len(nums) >= 40000 {
			t.Fatalf("%d of 40000 lines of the flood before the cut", len(nums))
		}
		t.Logf("%d of 40000 pairs (%d bytes), then %q", len(nums), len(body), log[len(body):])
	})
	t.Run("a flood the engine's copy holds: every line, and the command after it", func(t *testing.T) {
		// 2,000 pairs: some 490 KB in the engine's copy.
		repo := newRepo(t)
		final := h.startAndWait(t, Spec{Prompt: "sleep 1s; nuls 2000; write flood-marker flooded; lines 3; say done", WorkingDirectory: repo})
		if data, err := os.ReadFile(filepath.Join(repo, "flood-marker")); err != nil || string(data) != "flooded\n" {
			t.Fatalf("the flood did not run to its end: the marker says %q, %v", data, err)
		}
		if final.Status != store.Completed || final.Result != "done" {
			t.Fatalf("%s: %q", final.Status, final.Error)
		}
		ran(t, final, "nuls")
		ran(t, final, "write flood-marker")
		log := readFile(t, h.LogPath(final.ID))
		nums := nulLines(t, log)
		consecutive(t, nums, 1)
		lines, _ := numberedLines(t, h.LogPath(final.ID))
		consecutive(t, lines, 1)
		if len(nums) != 2000 || len(lines) != 3 || strings.Index(log, "001999") > strings.Index(log, `"command":"write flood-marker"`) {
			t.Fatalf("%d of 2000 pairs, %d of 3 lines, the write command at %d", len(nums), len(lines), strings.Index(log, `"command":"write flood-marker"`))
		}
	})
}

// A server that stops while its task goes on printing: the engine's copy
// of the output fills and starts afresh meanwhile, so the next server can
// no longer read what came between; it cuts the log where its checkpoint
// says, with a line that says output is missing after it, writes no line
// twice, and the task ends for the log cap.
func TestLogResumesAfterTheEngineCutItsCopy(t *testing.T) {
	const limit = 64 << 10
	short := func(c *Config) { c.Limits.LogBytes, c.Lease = limit, 2*time.Second }
	first := newHarness(t, short)
	repo := newRepo(t)
	// 300 lines while the first server copies; then, once it is gone, 6,000
	// more, 450 KB in the engine's copy, which holds 256 KiB.
	task, err := first.Start(context.Background(), Spec{Prompt: "lines 300; await go-on; lines 6000; say counted", WorkingDirectory: repo})
	hostfstest.Must(t, err)
	containerID := first.waitRunning(t, task.ID)
	for i := 0; !strings.Contains(readLog(first.LogPath(task.ID)), "line 000300\n"); i++ {
		if i > 3000 {
			t.Fatal("the task printed too little")
		}
		time.Sleep(20 * time.Millisecond)
	}
	first.stop()
	hostfstest.Must(t, os.WriteFile(filepath.Join(repo, "go-on"), nil, 0o644))
	for i := 0; ; i++ {
		info, err := first.engine.ContainerInspect(context.Background(), containerID)
		hostfstest.Must(t, err)
		if !info.State.Running {
			break
		}
		if i > 3000 {
			t.Fatal("the task did not end")
		}
		time.Sleep(20 * time.Millisecond)
	}
	second := newHarness(t, func(c *Config) { short(c); c.Home = first.home })
	final := second.waitFinal(t, task.ID)
	if final.Status != store.Failed || !strings.Contains(final.Error, "passed the log cap of "+hostfs.HumanSize(limit)+" (limits.logMB)") {
		t.Fatalf("%s: %q", final.Status, final.Error)
	}
	log := readFile(t, second.LogPath(task.ID))
	body, cut := endsCut(log)
	if !cut || !strings.Contains(log[len(body):], "filled and started afresh while no codex-connector copied it, so what the task printed after this point is missing") {
		t.Fatalf("the log does not end saying output is missing: %q", log[max(0, len(log)-300):])
	}
	nums, _ := numberedLines(t, second.LogPath(task.ID))
	consecutive(t, nums, 1)
	if len(nums) == 0 || len(nums) > 300 {
		t.Errorf("%d lines before the cut; the first server copied 300", len(nums))
	}
	t.Logf("%d of 6300 lines; the log says: %s", len(nums), log[len(body):])
}

func TestStateDirectoryCap(t *testing.T) {
	// A record large enough for the long script of the deep nest below.
	h := newHarness(t, func(c *Config) { c.Limits.StateBytes, c.Limits.RecordBytes = 16<<20, 1<<20 })
	t.Run("a task that fills its state directory past the cap is stopped with the reason", func(t *testing.T) {
		task := h.startAndWait(t, Spec{Prompt: "fill /codex-connector/codex-home/big 50000000; sleep 1h", WorkingDirectory: newRepo(t)})
		if code, ok := exitCodes(t, task)["fill /codex-connector/codex-home/big"]; !ok || code != 0 {
			t.Fatalf("the fill did not run: %v", exitCodes(t, task))
		}
		if task.Status != store.Failed || !strings.Contains(task.Error, "uses more than 16 MiB on disk (limits.stateMB)") {
			t.Fatalf("%s: %q", task.Status, task.Error)
		}
	})
	t.Run("a sparse file counts what it uses, not what it claims", func(t *testing.T) {
		task := h.startAndWait(t, Spec{Prompt: "sparse /codex-connector/codex-home/holes 100000000000; sleep 5s; say fine", WorkingDirectory: newRepo(t)})
		if code, ok := exitCodes(t, task)["sparse /codex-connector/codex-home/holes"]; !ok || code != 0 {
			t.Fatalf("the sparse file was not made: %v", exitCodes(t, task))
		}
		if task.Status != store.Completed || task.Result != "fine" {
			t.Fatalf("%s: %q", task.Status, task.Error)
		}
	})
	t.Run("a directory too deep to measure stops the task", func(t *testing.T) {
		var script strings.Builder
		dir := "/codex-connector/codex-home/d"
		for i := 0; i <= hostfs.MaxWalkDepth; i++ {
			fmt.Fprintf(&script, "mkdir %s 755;", dir)
			dir += "/d"
		}
		script.WriteString("sleep 1h")
		task := h.startAndWait(t, Spec{Prompt: script.String(), WorkingDirectory: newRepo(t)})
		if task.Status != store.Failed || !strings.Contains(task.Error, "cannot be measured") || !strings.Contains(task.Error, "nested more than") {
			t.Fatalf("%s: %q", task.Status, task.Error)
		}
	})
}
