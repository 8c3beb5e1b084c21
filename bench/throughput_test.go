package bench

import (
	"context"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/codex-connector/codex-connector/bench/benchtab"
	"github.com/codex-connector/codex-connector/images/imagestest"
)

// burst is how many short tasks BenchmarkThroughput sends at once, and
// slots how many run at a time.
const burst, slots = 50, 4

// BenchmarkThroughput sends 50 short tasks (the fake Codex saying hi)
// async to a server that runs 4 at a time, and waits for them all with
// codex_tasks; against `xargs -P4` of `docker run --rm` of the same image
// and command. Every task must end completed with its result: nothing
// lost.
func BenchmarkThroughput(b *testing.B) {
	image := imagestest.FakeCodex(b)
	warmUp(b, image)
	reps := benchtab.HeavyReps(3)
	for range b.N {
		var ours, ref []float64
		for range reps {
			home := b.TempDir()
			s := startServer(b, home, image, fmt.Sprintf("CODEX_CONNECTOR_MAX_RUNNING=%d", slots))
			repo := imagestest.Repo(b)
			began := time.Now()
			var ids []string
			for i := range burst {
				ids = append(ids, s.startAsync(b, fmt.Sprintf("say hi %d", i), repo))
			}
			for {
				st := s.call(b, "codex_tasks", map[string]any{"status": "running", "limit": burst})
				if tasks, _ := st["tasks"].([]any); len(tasks) == 0 {
					break
				}
				if time.Since(began) > 15*time.Minute {
					b.Fatalf("tasks still running after 15 minutes: %v", st["summary"])
				}
				time.Sleep(50 * time.Millisecond)
			}
			ours = append(ours, time.Since(began).Seconds())
			// Nothing lost: each of the 50 ended completed, with its own
			// result.
			for i, id := range ids {
				completed(b, s.call(b, "codex_status", map[string]any{"taskId": id, "tailLines": 0}), fmt.Sprintf("hi %d", i))
			}
			st := s.call(b, "codex_tasks", map[string]any{"status": "completed", "limit": 200})
			if tasks, _ := st["tasks"].([]any); len(tasks) != burst {
				b.Fatalf("codex_tasks lists %d completed tasks, want %d", len(tasks), burst)
			}
			s.close()
			cleanHome(home)

			ref = append(ref, xargsDockerRun(b, image).Seconds())
		}
		m := benchtab.Median
		record(b, benchtab.Row{Name: fmt.Sprintf("throughput: %d short tasks, %d at a time", burst, slots), Unit: "s", Ours: m(ours), Reference: benchtab.Ref(m(ref)),
			ReferenceName: fmt.Sprintf("xargs -P%d of docker run --rm of the same image and command", slots), Reps: reps,
			Note: fmt.Sprintf("first codex_agent (async) sent to codex_tasks showing none running; fake Codex \"say hi N\"; all %d checked completed with their result", burst)})
		b.ReportMetric(m(ours), "ours-s")
		b.ReportMetric(m(ref), "xargs-s")
	}
}

// xargsDockerRun runs the burst with xargs -P and docker run --rm, and
// fails unless every run succeeded.
func xargsDockerRun(b *testing.B, image string) time.Duration {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "xargs", "-P", fmt.Sprint(slots), "-I{}", "docker", "run", "--rm", "--label", benchLabel+"=xargs", image, "codex", "exec", "--json", "--", "say hi {}")
	var in strings.Builder
	for i := range burst {
		fmt.Fprintln(&in, i)
	}
	cmd.Stdin = strings.NewReader(in.String())
	began := time.Now()
	out, err := cmd.Output()
	d := time.Since(began)
	if err != nil {
		b.Fatalf("xargs docker run: %v", err)
	}
	if n := strings.Count(string(out), `"type":"turn.completed"`); n != burst {
		b.Fatalf("xargs docker run: %d runs completed, want %d", n, burst)
	}
	return d
}
