package bench

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/codex-connector/codex-connector/bench/benchtab"
	"github.com/codex-connector/codex-connector/images/imagestest"
)

// runningTasks is how many tasks run at once in BenchmarkRunningTasksRSS.
const runningTasks = 20

// BenchmarkRunningTasksRSS measures the RSS of a server that follows 20
// running tasks (the fake Codex asleep, each task's log being copied and
// its state watched), against a minimal mcp-go server's idle RSS.
func BenchmarkRunningTasksRSS(b *testing.B) {
	image := imagestest.FakeCodex(b)
	minimal := buildMinimal(b)
	warmUp(b, image)
	reps := benchtab.HeavyReps(2)
	for range b.N {
		var ours, ref, hwm []float64
		for range reps {
			home := b.TempDir()
			s := startServer(b, home, image, fmt.Sprintf("CODEX_CONNECTOR_MAX_RUNNING=%d", runningTasks))
			repo := imagestest.Repo(b)
			var ids []string
			for range runningTasks {
				ids = append(ids, s.startAsync(b, "sleep 5m", repo))
			}
			// Running means started, and its log copy running: wait for
			// the first line of each task's log.
			deadline := time.Now().Add(5 * time.Minute)
			for _, id := range ids {
				for !hasLine(filepath.Join(home, "logs", id+".log")) {
					if time.Now().After(deadline) {
						b.Fatalf("task %s printed nothing in 5 minutes: %v", id, s.call(b, "codex_status", map[string]any{"taskId": id}))
					}
					time.Sleep(50 * time.Millisecond)
				}
			}
			st := s.call(b, "codex_tasks", map[string]any{"status": "running", "limit": 50})
			if tasks, _ := st["tasks"].([]any); len(tasks) != runningTasks {
				b.Fatalf("%d tasks running, want %d: %v", len(tasks), runningTasks, st["summary"])
			}
			// Settled, then the most seen over a few seconds of following.
			time.Sleep(settle)
			var most float64
			for range 5 {
				most = max(most, s.mem(b).rss)
				time.Sleep(time.Second)
			}
			ours, hwm = append(ours, most), append(hwm, s.mem(b).hwm)
			for _, id := range ids {
				s.call(b, "codex_cancel", map[string]any{"taskId": id})
			}
			for _, id := range ids {
				if st := s.waitEnded(b, id); st["status"] != "cancelled" {
					b.Fatalf("task %s: %v after its cancel", id, st["status"])
				}
			}
			s.close()
			cleanHome(home)

			m := startProcess(b, minimal, os.Environ())
			time.Sleep(settle)
			ref = append(ref, m.mem(b).rss)
			m.close()
		}
		med := benchtab.Median
		record(b, benchtab.Row{Name: fmt.Sprintf("RSS with %d running tasks", runningTasks), Unit: "MiB", Ours: med(ours), Reference: benchtab.Ref(med(ref)),
			ReferenceName: "a minimal mcp-go stdio server, idle", Max: 60, Reps: reps,
			Note: fmt.Sprintf("the most VmRSS seen over 5 s once all %d logs are being copied (fake Codex asleep); peak over the server's life (VmHWM, starts included) %.1f MiB", runningTasks, med(hwm))})
		b.ReportMetric(med(ours), "rss-MiB")
	}
}

// hasLine says whether the file at path holds a whole line.
func hasLine(path string) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	return firstLine(f) == nil
}
