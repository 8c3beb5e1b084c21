package bench

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/codex-connector/codex-connector/bench/benchtab"
	"github.com/codex-connector/codex-connector/images/imagestest"
)

// writeLog writes a log of size bytes to path as Codex's are: JSONL events
// (commands started and completed, messages), with a line of stderr now
// and then. Whole lines only; the last one ends the file.
func writeLog(path string, size int64) error {
	// One block of whole lines, written over and over.
	var block []byte
	for i := 0; len(block) < 64<<10; i++ {
		cmd := fmt.Sprintf(`/bin/bash -lc 'go test ./pkg/module%d/... -run TestCase%d'`, i%50, i)
		block = fmt.Appendf(block, `{"type":"item.started","item":{"id":"item_%d","type":"command_execution","command":%q,"aggregated_output":"","exit_code":null,"status":"in_progress"}}`+"\n", 2*i, cmd)
		block = fmt.Appendf(block, `{"type":"item.completed","item":{"id":"item_%d","type":"command_execution","command":%q,"aggregated_output":"ok  \tgithub.com/me/project/pkg/module%d\t0.%03ds\n","exit_code":0,"status":"completed"}}`+"\n", 2*i, cmd, i%50, i%1000)
		if i%10 == 9 {
			block = fmt.Appendf(block, `{"type":"item.completed","item":{"id":"item_%d","type":"agent_message","text":"Module %d passes its tests; moving on to the next one."}}`+"\n", 2*i+1, i%50)
			block = fmt.Appendf(block, "2026-12-04T10:00:%02d.000000Z  WARN codex_core::exec: command took longer than expected\n", i%60)
		}
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w := bufio.NewWriterSize(f, 1<<20)
	for written := int64(0); written < size; written += int64(len(block)) {
		if _, err := w.Write(block); err != nil {
			f.Close()
			return err
		}
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// BenchmarkStatusTail measures codex_status with tailLines 50 on a task
// whose log is 1 GiB, against the same on a log of 1 MiB: two tasks of
// the fake Codex, run to their end, whose logs are then replaced by
// generated ones of those sizes.
func BenchmarkStatusTail(b *testing.B) {
	image := imagestest.FakeCodex(b)
	warmUp(b, image)
	for range b.N {
		home := b.TempDir()
		s := startServer(b, home, image)
		repo := imagestest.Repo(b)
		small, large := s.startAsync(b, "say small", repo), s.startAsync(b, "say large", repo)
		completed(b, s.waitEnded(b, small), "small")
		completed(b, s.waitEnded(b, large), "large")
		for id, size := range map[string]int64{small: 1 << 20, large: 1 << 30} {
			if err := writeLog(filepath.Join(home, "logs", id+".log"), size); err != nil {
				b.Fatalf("write a log of %d bytes: %v", size, err)
			}
		}
		tail := func(id string) float64 {
			began := time.Now()
			st := s.call(b, "codex_status", map[string]any{"taskId": id, "tailLines": 50})
			d := time.Since(began)
			if lines, _ := st["logTail"].([]any); len(lines) != 50 {
				b.Fatalf("codex_status gave %d log lines, want 50", len(lines))
			}
			return ms(d)
		}
		tail(small) // the first call pays for what any first call pays
		tail(large)
		reps := benchtab.Reps(5)
		var tSmall, tLarge []float64
		for range reps {
			tSmall = append(tSmall, tail(small))
			tLarge = append(tLarge, tail(large))
		}
		m := benchtab.Median
		record(b, benchtab.Row{Name: "codex_status tailLines 50, 1 GiB log", Unit: "ms", Ours: m(tLarge), Reference: benchtab.Ref(m(tSmall)),
			ReferenceName: "the same call on a 1 MiB log", MaxRatio: 2, Reps: reps,
			Note: "logs of Codex's JSONL events; call sent to answer received"})
		b.ReportMetric(m(tLarge)/m(tSmall), "tail-1G/1M")
		os.Remove(filepath.Join(home, "logs", large+".log"))
	}
}
