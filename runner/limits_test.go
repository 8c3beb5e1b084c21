package runner

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/codex-connector/codex-connector/store"
)

// waitRunning waits until the task's container runs, and returns its id.
func (h *harness) waitRunning(t *testing.T, id string) string {
	t.Helper()
	h.waitStatus(t, id, store.Running)
	task, err := h.Get(id)
	must(t, err)
	return task.ContainerID
}

// numberedLines returns the numbers of the "line N" lines of a log, in
// order, and the other lines.
func numberedLines(t *testing.T, path string) (nums []int, other []string) {
	t.Helper()
	f, err := os.Open(path)
	must(t, err)
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
	must(t, sc.Err())
	return nums, other
}

// strictlyIncreasing fails t at the first number that repeats or goes back.
func strictlyIncreasing(t *testing.T, nums []int) (gaps int) {
	t.Helper()
	for i := 1; i < len(nums); i++ {
		if nums[i] <= nums[i-1] {
			t.Fatalf("line %d follows line %d: a duplicate or a step back", nums[i], nums[i-1])
		}
		if nums[i] != nums[i-1]+1 {
			gaps++
		}
	}
	return gaps
}

func TestLogCap(t *testing.T) {
	const limit = 1 << 20
	h := newHarness(t, func(c *Config) { c.Limits.LogBytes = limit })

	t.Run("a flood past the cap is cut there, and the task stopped with the reason", func(t *testing.T) {
		task, err := h.Start(context.Background(), Spec{Prompt: "flood 5000000; sleep 1h", WorkingDirectory: newRepo(t)})
		must(t, err)
		info, err := h.engine.ContainerInspect(context.Background(), h.waitRunning(t, task.ID))
		must(t, err)
		if lc := info.HostConfig.LogConfig; lc.Type != "json-file" || lc.Config["max-size"] != fmt.Sprint(limit) || lc.Config["max-file"] != "1" {
			t.Errorf("the engine keeps the output as %+v", lc)
		}
		final := h.waitFinal(t, task.ID)
		if final.Status != store.Failed || !strings.Contains(final.Error, "passed the log cap of 1 MiB (limits.logMB)") {
			t.Fatalf("%s: %q", final.Status, final.Error)
		}
		log := readFile(t, h.LogPath(task.ID))
		cut := cutLine(limit)
		// The flood ran (its lines fill the log), and the log ends at the cap.
		if !strings.Contains(log, strings.Repeat("x", 99)+"\n") || !strings.HasSuffix(log, cut) || int64(len(log)) > limit+1+int64(len(cut)) || final.LogBytes != int64(len(log)) {
			t.Fatalf("log of %d bytes (record says %d), ending %q", len(log), final.LogBytes, log[max(0, len(log)-200):])
		}
	})

	t.Run("the engine's own copy stays within the cap, and the copy has no line twice", func(t *testing.T) {
		// 80,000 lines of 12 bytes stay below the cap; the engine stores
		// each as a JSON line several times as long, so its copy fills and
		// starts afresh several times meanwhile.
		task, err := h.Start(context.Background(), Spec{Prompt: "lines 80000; sleep 1h", WorkingDirectory: newRepo(t)})
		must(t, err)
		containerID := h.waitRunning(t, task.ID)
		for i := 0; !strings.Contains(readLog(h.LogPath(task.ID)), "line 080000\n"); i++ {
			if i > 3000 {
				t.Fatal("the last line never reached the log")
			}
			time.Sleep(20 * time.Millisecond)
		}
		info, err := h.engine.ContainerInspect(context.Background(), containerID)
		must(t, err)
		fi, err := os.Stat(info.LogPath)
		must(t, err)
		// At most the cap, and the one message that made it full.
		if fi.Size() > limit+4096 {
			t.Errorf("the engine's copy holds %d bytes, more than the cap of %d", fi.Size(), limit)
		}
		nums, _ := numberedLines(t, h.LogPath(task.ID))
		gaps := strictlyIncreasing(t, nums)
		t.Logf("the engine's copy: %d bytes; the task's log: %d of 80000 lines, %d gaps where the engine dropped lines before they were read", fi.Size(), len(nums), gaps)
		_, err = h.Cancel(context.Background(), task.ID)
		must(t, err)
	})
}

// A server that stops while its task goes on printing: the engine's copy
// of the output fills and starts afresh meanwhile, so the next server can
// no longer read what came between; it resumes where its checkpoint says,
// says in the log where output may be missing, and writes no line twice.
func TestLogResumesAfterTheEngineCutItsCopy(t *testing.T) {
	const limit = 64 << 10
	short := func(c *Config) { c.Limits.LogBytes, c.Lease = limit, 2*time.Second }
	first := newHarness(t, short)
	task, err := first.Start(context.Background(), Spec{Prompt: "lines 3000 2ms; say counted", WorkingDirectory: newRepo(t)})
	must(t, err)
	containerID := first.waitRunning(t, task.ID)
	for i := 0; len(readLog(first.LogPath(task.ID))) < 300*12; i++ {
		if i > 3000 {
			t.Fatal("the task printed too little")
		}
		time.Sleep(20 * time.Millisecond)
	}
	first.stop()
	for i := 0; ; i++ {
		info, err := first.engine.ContainerInspect(context.Background(), containerID)
		must(t, err)
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
	if final.Status != store.Completed || final.Result != "counted" {
		t.Fatalf("%s: %q", final.Status, final.Error)
	}
	nums, other := numberedLines(t, second.LogPath(task.ID))
	strictlyIncreasing(t, nums)
	if nums[len(nums)-1] != 3000 {
		t.Errorf("the last line is %d", nums[len(nums)-1])
	}
	if !strings.Contains(strings.Join(other, "\n"), "may be missing here") {
		t.Errorf("the log does not say where output may be missing:\n%s", strings.Join(other, "\n"))
	}
	t.Logf("%d of 3000 lines; the log says: %s", len(nums), other)
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
		for i := 0; i <= maxWalkDepth; i++ {
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
