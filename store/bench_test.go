package store

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"testing"
	"time"

	"github.com/codex-connector/codex-connector/bench/benchtab"
	bolt "go.etcd.io/bbolt"
)

// realisticTask is a completed task as a year of use leaves them: 20
// commands and 10 files in its summary.
func realisticTask(i int, created time.Time) *Task {
	t := task(NewID(created), created, Completed)
	if i < 5 {
		t.Status = Running // as many live tasks at every size
	}
	t.Prompt = fmt.Sprintf("refactor module %d so that its tests pass, and update the docs that mention it", i)
	t.WorkingDirectory, t.RepoRoot = "/home/me/src/project", "/home/me/src/project"
	code := 0
	s := &Summary{ThreadID: "01a240b9-42a6-75e0-aec4-9b10e5c0125d", LastMessage: "Done: the tests pass and the docs say what changed."}
	for c := range 20 {
		s.Commands = append(s.Commands, Command{Command: fmt.Sprintf("/usr/bin/bash -lc 'go test ./pkg/module%d/... -run TestCase%d'", i, c), ExitCode: &code})
	}
	for f := range 10 {
		s.FilesChanged = append(s.FilesChanged, fmt.Sprintf("pkg/module%d/file%d.go", i, f))
	}
	t.Summary = s
	return t
}

// storeOf makes a database of n realistic tasks, one a second.
func storeOf(b *testing.B, n int) *Store {
	b.Helper()
	path := filepath.Join(b.TempDir(), "tasks.db")
	s, err := Open(path, 5*time.Second)
	if err != nil {
		b.Fatal(err)
	}
	start := time.Date(2025, 12, 1, 0, 0, 0, 0, time.UTC)
	const batch = 10000
	for done := 0; done < n; {
		var tasks []*Task
		for ; done < n && len(tasks) < batch; done++ {
			tasks = append(tasks, realisticTask(done, start.Add(time.Duration(done)*time.Second)))
		}
		if err := s.CreateMany(tasks); err != nil {
			b.Fatal(err)
		}
	}
	return s
}

// listEverything is how List worked before the index: every record
// decoded and sorted, for any limit. It is the reference.
func listEverything(s *Store, limit int) int {
	var tasks []*Task
	_ = s.view(func(tx *bolt.Tx) error {
		return tx.Bucket(tasksBucket).ForEach(func(k, v []byte) error {
			if t, err := decode(string(k), v); err == nil {
				tasks = append(tasks, t)
			}
			return nil
		})
	})
	sort.Slice(tasks, func(i, j int) bool { return tasks[i].CreatedAt.After(tasks[j].CreatedAt) })
	return min(limit, len(tasks))
}

// BenchmarkListAtScale compares, in one run, listing the newest 20 tasks
// (codex_tasks) and the live ones (every reconcile) with 100 and 100,000
// tasks in the database, and the way it was done before (everything
// decoded) at 100,000. Each is measured BENCH_REPS times, alternating, and
// the medians go to the table of `make bench`; the ratios are what to
// read: 100k/100 should stay near 1.
func BenchmarkListAtScale(b *testing.B) {
	small, large := storeOf(b, 100), storeOf(b, 100000)
	timed := func(fn func()) float64 {
		t0 := time.Now()
		fn()
		return float64(time.Since(t0)) / float64(time.Millisecond)
	}
	newest := func(s *Store) func() {
		return func() {
			if ts, _, err := s.List(Filter{Limit: 20}); err != nil || len(ts) != 20 {
				b.Fatal(err)
			}
		}
	}
	live := func(s *Store) func() {
		return func() {
			if ts, _, err := s.List(Filter{Statuses: []Status{Queued, Running}}); err != nil || len(ts) != 5 {
				b.Fatalf("%d live tasks, want 5 (%v)", len(ts), err)
			}
		}
	}
	reps := benchtab.Reps(5)
	for range b.N {
		var n100, n100k, l100, l100k, before []float64
		for range reps {
			n100 = append(n100, timed(newest(small)))
			n100k = append(n100k, timed(newest(large)))
			l100 = append(l100, timed(live(small)))
			l100k = append(l100k, timed(live(large)))
			before = append(before, timed(func() { listEverything(large, 20) }))
		}
		m := benchtab.Median
		b.ReportMetric(m(n100)*1000, "newest20@100-µs")
		b.ReportMetric(m(n100k)*1000, "newest20@100k-µs")
		b.ReportMetric(m(n100k)/m(n100), "newest20-100k/100")
		b.ReportMetric(m(l100k)/m(l100), "live-100k/100")
		b.ReportMetric(m(before)/m(n100k), "before/after@100k")
		record(b, benchtab.Row{Name: "store: newest 20 of 100,000 tasks", Unit: "ms", Ours: m(n100k), Reference: benchtab.Ref(m(n100)),
			ReferenceName: "the newest 20 of 100 tasks", Reps: reps, Note: "Store.List in process; the codex_tasks row is the same through the server"})
		record(b, benchtab.Row{Name: "store: live tasks among 100,000", Unit: "ms", Ours: m(l100k), Reference: benchtab.Ref(m(l100)),
			ReferenceName: "the live tasks among 100", Reps: reps, Note: "5 live tasks at each size: what every reconcile reads"})
		record(b, benchtab.Row{Name: "store: newest 20 of 100,000, index vs before", Unit: "ms", Ours: m(n100k), Reference: benchtab.Ref(m(before)),
			ReferenceName: "every record decoded and sorted, as List did before schema 2", Reps: reps})
		if fi, err := os.Stat(large.Path()); err == nil {
			mib := float64(fi.Size()) / 100 / (1 << 20)
			b.ReportMetric(mib, "MiB-per-1000-tasks")
			record(b, benchtab.Row{Name: "store: database size per 1,000 tasks", Unit: "MiB", Ours: mib, Reps: 1,
				Note: "realistic records (20 commands, 10 files each); schema 2 records are schema 1's, with a live index of a few bytes per live task"})
		}
	}
}

// record adds a row to the table of `make bench`.
func record(b *testing.B, row benchtab.Row) {
	b.Helper()
	line, err := benchtab.Record(row)
	if err != nil {
		b.Fatal(err)
	}
	b.Log(line)
}
