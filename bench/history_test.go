package bench

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/codex-connector/codex-connector/bench/benchtab"
	"github.com/codex-connector/codex-connector/images/imagestest"
	"github.com/codex-connector/codex-connector/store"
)

// historyVersion names the shape of the generated histories: change it
// when historyTask changes, so that a cached database is made anew.
const historyVersion = 1

// historyTask is a completed task as a year of use leaves them: a prompt,
// 20 commands and 10 files in its summary, its result and its times.
func historyTask(i int, created time.Time) *store.Task {
	code := 0
	t := &store.Task{
		ID:               store.NewID(created),
		Prompt:           fmt.Sprintf("refactor module %d so that its tests pass, and update the docs that mention it", i),
		WorkingDirectory: "/home/me/src/project", RepoRoot: "/home/me/src/project",
		Sandbox: "workspace-write", Image: "codex-connector/codex:0.169.0",
		ImageID:   "sha256:5797fd494cb7a1d8e2c34f61c5f0f5b3ad0c2b8e7d1f7c9e4a6b2d3c1e0f9a8b",
		Status:    store.Completed,
		CreatedAt: created, StartedAt: created.Add(time.Second), FinishedAt: created.Add(4 * time.Minute),
		ContainerID:   fmt.Sprintf("%064x", i),
		ContainerName: "codex-connector-task-" + store.NewID(created),
		User:          "1000:1000", ExitCode: &code,
		Result:   "Done: the tests pass and the docs say what changed.",
		LogBytes: 180_000,
		Ran:      &store.Ran{CodexVersion: "0.169.0", Model: "gpt-5-codex", Effort: "medium", Provider: "openai"},
	}
	s := &store.Summary{ThreadID: "01a240b9-42a6-75e0-aec4-9b10e5c0125d", LastMessage: t.Result,
		Usage: store.Usage{InputTokens: 250_000, CachedInputTokens: 200_000, OutputTokens: 9_000, ReasoningOutputTokens: 3_000}}
	for c := range 20 {
		s.Commands = append(s.Commands, store.Command{Command: fmt.Sprintf("/usr/bin/bash -lc 'go test ./pkg/module%d/... -run TestCase%d'", i, c), ExitCode: &code})
	}
	for f := range 10 {
		s.FilesChanged = append(s.FilesChanged, fmt.Sprintf("pkg/module%d/file%d.go", i, f))
	}
	t.Summary = s
	return t
}

// writeHistory makes the database path of n completed tasks, one every
// five minutes up to an hour ago.
func writeHistory(path string, n int) error {
	st, err := store.Open(path, 30*time.Second)
	if err != nil {
		return err
	}
	last := time.Now().UTC().Add(-time.Hour).Truncate(time.Second)
	const batch = 5000
	for done := 0; done < n; {
		var tasks []*store.Task
		for ; done < n && len(tasks) < batch; done++ {
			tasks = append(tasks, historyTask(done, last.Add(-time.Duration(n-1-done)*5*time.Minute)))
		}
		if err := st.CreateMany(tasks); err != nil {
			return err
		}
	}
	return nil
}

var historyMu sync.Mutex

// historyHome makes a data directory whose tasks.db holds n completed
// tasks. Large histories take a minute to make, so they are made once per
// machine, in the user's cache directory (XDG_CACHE_HOME, or ~/.cache),
// and copied for each run: the servers write to their database.
func historyHome(b *testing.B, n int) string {
	b.Helper()
	home := b.TempDir()
	db := filepath.Join(home, "tasks.db")
	if n < 10000 {
		if err := writeHistory(db, n); err != nil {
			b.Fatalf("make a history of %d tasks: %v", n, err)
		}
		return home
	}
	historyMu.Lock()
	defer historyMu.Unlock()
	cache, err := os.UserCacheDir()
	if err != nil {
		b.Fatalf("find a cache directory for the history of %d tasks: %v — set XDG_CACHE_HOME", n, err)
	}
	cached := filepath.Join(cache, "codex-connector-bench", fmt.Sprintf("history-%d-schema%d-v%d.db", n, store.SchemaVersion, historyVersion))
	if _, err := os.Stat(cached); err != nil {
		began := time.Now()
		if err := os.MkdirAll(filepath.Dir(cached), 0o700); err != nil {
			b.Fatal(err)
		}
		// Made aside and renamed: an interrupted run leaves no half-made
		// history to be taken for a whole one.
		tmp := cached + ".making"
		os.Remove(tmp)
		if err := writeHistory(tmp, n); err != nil {
			os.Remove(tmp)
			b.Fatalf("make a history of %d tasks: %v", n, err)
		}
		if err := os.Rename(tmp, cached); err != nil {
			b.Fatal(err)
		}
		b.Logf("made a history of %d tasks in %s, cached as %s", n, time.Since(began).Round(time.Second), cached)
	}
	if err := copyFile(cached, db); err != nil {
		b.Fatalf("copy the history of %d tasks: %v", n, err)
	}
	return home
}

func copyFile(from, to string) error {
	in, err := os.Open(from)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(to, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// idleWindow is how long an idle server is watched: two of its periodic
// reconciles (every 15 s) and thirty looks at the wake file.
const idleWindow = 30 * time.Second

// BenchmarkHistory measures what 100,000 tasks of history cost a server,
// side by side with a server of 100 tasks, both running at once: CPU and
// RSS while idle, then codex_tasks (limit 20) alternating between the two,
// and the peak RSS after it.
func BenchmarkHistory(b *testing.B) {
	image := imagestest.FakeCodex(b)
	const large = 100000
	for range b.N {
		smallHome, largeHome := historyHome(b, 100), historyHome(b, large)
		small, big := startServer(b, smallHome, image), startServer(b, largeHome, image)
		// The start's reconcile and housekeeping are not idleness.
		time.Sleep(3 * time.Second)

		windows := benchtab.HeavyReps(3)
		var cpuSmall, cpuLarge, rssSmall, rssLarge []float64
		for range windows {
			c0s, c0l := cpuOf(b, small), cpuOf(b, big)
			began := time.Now()
			var maxSmall, maxLarge float64
			for time.Since(began) < idleWindow {
				time.Sleep(time.Second)
				maxSmall, maxLarge = max(maxSmall, small.mem(b).rss), max(maxLarge, big.mem(b).rss)
			}
			wall := time.Since(began).Seconds()
			cpuSmall = append(cpuSmall, (cpuOf(b, small)-c0s)/wall*100)
			cpuLarge = append(cpuLarge, (cpuOf(b, big)-c0l)/wall*100)
			rssSmall, rssLarge = append(rssSmall, maxSmall), append(rssLarge, maxLarge)
		}
		m := benchtab.Median
		standby := ""
		if pid := big.standbyOf(); pid != 0 {
			if sm, err := readMem(pid); err == nil {
				standby = fmt.Sprintf("; the standby process beside it holds %.1f MiB more", sm.rss)
			}
		}
		record(b, benchtab.Row{Name: "idle server, 100,000 tasks: CPU", Unit: "%", Ours: m(cpuLarge), Reference: benchtab.Ref(m(cpuSmall)),
			ReferenceName: "an idle server of 100 tasks, at the same time", Max: 1, Reps: windows,
			Note: fmt.Sprintf("share of one core over %s windows (user+system time in /proc/PID/stat, counted in 10 ms ticks: %.3f%% a tick)", idleWindow, 1/idleWindow.Seconds())})
		record(b, benchtab.Row{Name: "idle server, 100,000 tasks: RSS", Unit: "MiB", Ours: m(rssLarge), Reference: benchtab.Ref(m(rssSmall)),
			ReferenceName: "an idle server of 100 tasks, at the same time", Max: 40, Reps: windows,
			Note: "the most VmRSS seen in each window, sampled every second" + standby})

		reps := benchtab.Reps(5)
		list := func(s *server) float64 {
			began := time.Now()
			st := s.call(b, "codex_tasks", map[string]any{"limit": 20})
			d := time.Since(began)
			if tasks, _ := st["tasks"].([]any); len(tasks) != 20 {
				b.Fatalf("codex_tasks listed %d tasks, want 20", len(tasks))
			}
			return ms(d)
		}
		// The first call of each pays for what any first call pays (code
		// paged in, the tool's schema), the same at any size.
		list(small)
		list(big)
		var tSmall, tLarge []float64
		for range reps {
			tSmall = append(tSmall, list(small))
			tLarge = append(tLarge, list(big))
		}
		hwmSmall, hwmLarge := small.mem(b).hwm, big.mem(b).hwm
		record(b, benchtab.Row{Name: "codex_tasks limit 20, 100,000 tasks", Unit: "ms", Ours: m(tLarge), Reference: benchtab.Ref(m(tSmall)),
			ReferenceName: "the same call on a server of 100 tasks", MaxRatio: 3, Reps: reps,
			Note: "call sent to answer received, over stdio"})
		record(b, benchtab.Row{Name: "codex_tasks limit 20, 100,000 tasks: peak RSS", Unit: "MiB", Ours: hwmLarge, Reference: benchtab.Ref(hwmSmall),
			ReferenceName: "the peak of the server of 100 tasks", Max: 60, Reps: 1,
			Note: "VmHWM over the server's life: start, the idle windows and every call"})
		b.ReportMetric(m(tLarge)/m(tSmall), "list-100k/100")
		b.ReportMetric(m(cpuLarge), "idle-cpu-%")
	}
}

func cpuOf(b *testing.B, s *server) float64 {
	b.Helper()
	st, err := readStat(s.pid())
	if err != nil {
		b.Fatal(err)
	}
	return st.cpu
}
