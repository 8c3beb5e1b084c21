package store

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"testing"
	"time"

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
	for done := 0; done < n; {
		err := s.update(func(tx *bolt.Tx) error {
			for ; done < n; done++ {
				if done > 0 && done%10000 == 0 {
					done++
					break
				}
				t := realisticTask(done, start.Add(time.Duration(done)*time.Second))
				data, _ := json.Marshal(t)
				if err := tx.Bucket(tasksBucket).Put([]byte(t.ID), data); err != nil {
					return err
				}
				if err := index(tx, t); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
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
// decoded) at 100,000. It reports each per operation; the ratios are what
// to read: 100k/100 should stay near 1.
func BenchmarkListAtScale(b *testing.B) {
	small, large := storeOf(b, 100), storeOf(b, 100000)
	measure := func(fn func()) time.Duration {
		const reps = 5
		best := time.Duration(1 << 62)
		for range reps {
			t0 := time.Now()
			fn()
			best = min(best, time.Since(t0))
		}
		return best
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
			if _, _, err := s.List(Filter{Statuses: []Status{Queued, Running}}); err != nil {
				b.Fatal(err)
			}
		}
	}
	for range b.N {
		n100, n100k := measure(newest(small)), measure(newest(large))
		l100, l100k := measure(live(small)), measure(live(large))
		before := measure(func() { listEverything(large, 20) })
		b.ReportMetric(float64(n100.Microseconds()), "newest20@100-µs")
		b.ReportMetric(float64(n100k.Microseconds()), "newest20@100k-µs")
		b.ReportMetric(float64(n100k)/float64(n100), "newest20-100k/100")
		b.ReportMetric(float64(l100k)/float64(max(l100, 1)), "live-100k/100")
		b.ReportMetric(float64(before)/float64(n100k), "before/after@100k")
		if fi, err := os.Stat(large.Path()); err == nil {
			b.ReportMetric(float64(fi.Size())/100/(1<<20), "MiB-per-1000-tasks")
		}
	}
}
