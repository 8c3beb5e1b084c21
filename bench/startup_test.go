package bench

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/codex-connector/codex-connector/bench/benchtab"
	"github.com/codex-connector/codex-connector/images/imagestest"
)

// buildMinimal builds bench/minimal as codex-connector is built (static,
// trimmed paths), so that neither gains on the other by the build.
func buildMinimal(b *testing.B) string {
	b.Helper()
	out := filepath.Join(b.TempDir(), "minimal")
	cmd := exec.Command("go", "build", "-trimpath", "-o", out, "github.com/codex-connector/codex-connector/bench/minimal")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if output, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("build the minimal MCP server: %v\n%s", err, output)
	}
	return out
}

// settle is how long a server is left after initialize before its memory
// is read: its start's reconcile and housekeeping are done by then.
const settle = 2 * time.Second

// BenchmarkStartup starts codex-connector on a fresh data directory and a
// minimal mcp-go stdio server, alternating, and measures from the start of
// the process to the answer to initialize, and the RSS once settled.
func BenchmarkStartup(b *testing.B) {
	image := imagestest.FakeCodex(b)
	ours := binary(b)
	minimal := buildMinimal(b)
	reps := benchtab.Reps(5)
	for range b.N {
		var startOurs, startMin, rssOurs, rssMin, rssStandby []float64
		for range reps {
			home := b.TempDir()
			s := startProcess(b, ours, serverEnv(home, image))
			s.home = home
			time.Sleep(settle)
			startOurs, rssOurs = append(startOurs, ms(s.started)), append(rssOurs, s.mem(b).rss)
			if pid := s.standbyOf(); pid != 0 {
				if m, err := readMem(pid); err == nil {
					rssStandby = append(rssStandby, m.rss)
				}
			}
			s.close()
			waitHomeQuiet(b, home)

			m := startProcess(b, minimal, os.Environ())
			time.Sleep(settle)
			startMin, rssMin = append(startMin, ms(m.started)), append(rssMin, m.mem(b).rss)
			m.close()
		}
		med := benchtab.Median
		record(b, benchtab.Row{Name: "server started → initialize answered", Unit: "ms", Ours: med(startOurs), Reference: benchtab.Ref(med(startMin)),
			ReferenceName: "a minimal mcp-go stdio server with one tool (bench/minimal)", MaxRatio: 1.5, Reps: reps,
			Note: "process start to the initialize result, through the MCP Go SDK client; fresh data directory"})
		standby := "no standby process was found"
		if len(rssStandby) > 0 {
			standby = fmt.Sprintf("the standby process codex-connector starts beside it holds %.1f MiB more", med(rssStandby))
		}
		record(b, benchtab.Row{Name: "idle RSS after initialize, fresh data directory", Unit: "MiB", Ours: med(rssOurs), Reference: benchtab.Ref(med(rssMin)),
			ReferenceName: "the minimal mcp-go server's", Max: 30, Reps: reps,
			Note: fmt.Sprintf("VmRSS %s after initialize; %s", settle, standby)})
		b.ReportMetric(med(startOurs)/med(startMin), "start-ratio")
		b.ReportMetric(med(rssOurs), "idle-rss-MiB")
	}
}
