package bench

import (
	"bytes"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/codex-connector/codex-connector/bench/benchtab"
	"github.com/codex-connector/codex-connector/images/imagestest"
)

// BenchmarkOneShot measures what a one-shot client pays at each sandbox
// level: the command line's `run`, a new process for every task (server,
// standby, follower), whole, against a `docker run` of the same Codex
// command, alternated. Within one home, as a user's runs are: the cache
// volumes are readied by the first run and the egress proxy is kept by
// the follower between runs, so a later run starts one container, the
// task's.
func BenchmarkOneShot(b *testing.B) {
	c := newCodexBench(b)
	bin := binary(b)
	warmUp(b, imagestest.FakeCodex(b))
	reps := benchtab.HeavyReps(5)
	for _, level := range []string{"read-only", "workspace-write", "danger-full-access"} {
		home := c.home(b)
		b.Cleanup(func() { cleanHome(home) })
		env := serverEnv(home, c.image, imagestest.MockKeyEnv+"="+c.model.Key)
		run := func() float64 {
			done := c.script(b)
			cmd := exec.Command(bin, "run", "--sandbox", level, "--model", "gpt-5-codex", "--", codexPrompt)
			cmd.Env, cmd.Dir = env, c.repo
			var out bytes.Buffer
			cmd.Stdout, cmd.Stderr = &out, &out
			began := time.Now()
			err := cmd.Run()
			d := time.Since(began)
			if err != nil || !strings.Contains(out.String(), codexTurns[1].Message) {
				b.Fatalf("run at %s: %v\n%s", level, err, out.String())
			}
			done("run at " + level)
			return ms(d)
		}
		// The first run of a home readies its caches and starts its proxy.
		run()
		c.dockerRun(b)
		for range b.N {
			var ours, ref []float64
			for range reps {
				ours = append(ours, run())
				ref = append(ref, c.dockerRun(b))
			}
			m := benchtab.Median
			record(b, benchtab.Row{Name: "one-shot client at " + level + ": codex-connector run → result, vs docker run", Unit: "ms",
				Ours: m(ours), Reference: benchtab.Ref(m(ref)), MaxRatio: 1.10, Reps: reps,
				ReferenceName: "docker run --rm of the same Codex command, pointed straight at the model server",
				Note:          "real Codex, scripted model server (2 requests); a new codex-connector process per task, in one home after its first task"})
			b.ReportMetric(m(ours)/m(ref), "ratio")
		}
	}
}
