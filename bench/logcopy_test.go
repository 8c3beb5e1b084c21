package bench

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/codex-connector/codex-connector/bench/benchtab"
	"github.com/codex-connector/codex-connector/images/imagestest"
)

// floodBytes is how much a task prints in BenchmarkLogCopy.
const floodBytes = 500 << 20

// BenchmarkLogCopy runs a task that prints 500 MiB, synchronously, from
// codex_agent sent to its result, against `docker run -d`, `docker wait`
// and `docker logs ID > file` of the same image and command; and reports
// the server's peak RSS, which must not grow with the log: the copy
// streams.
func BenchmarkLogCopy(b *testing.B) {
	image := imagestest.FakeCodex(b)
	warmUp(b, image)
	prompt := fmt.Sprintf("flood %d; say flooded", floodBytes)
	reps := benchtab.HeavyReps(3)
	for range b.N {
		home := b.TempDir()
		// The log cap (default 256 MiB) above what the task prints.
		s := startServer(b, home, image, "CODEX_CONNECTOR_LOG_MB=1024")
		repo := imagestest.Repo(b)
		var ours, ref, cpuOurs, cpuEngine, cpuRefEngine, cpuCLI []float64
		for range reps {
			c0, e0 := cpuOf(b, s), engineCPU()
			began := time.Now()
			st := s.call(b, "codex_agent", map[string]any{"task": prompt, "workingDirectory": repo})
			d := time.Since(began)
			cpuOurs, cpuEngine = append(cpuOurs, cpuOf(b, s)-c0), append(cpuEngine, engineCPU()-e0)
			completed(b, st, "flooded")
			id, _ := st["taskId"].(string)
			log := filepath.Join(home, "logs", id+".log")
			fi, err := os.Stat(log)
			if err != nil || fi.Size() < floodBytes {
				b.Fatalf("the log of task %s holds %v bytes (%v), want at least %d", id, fi.Size(), err, floodBytes)
			}
			os.Remove(log) // the disk the next run needs
			ours = append(ours, d.Seconds())

			e0 = engineCPU()
			d, cli := dockerLogsToFile(b, image, []string{"codex", "exec", "--json", "--", prompt})
			ref, cpuRefEngine, cpuCLI = append(ref, d.Seconds()), append(cpuRefEngine, engineCPU()-e0), append(cpuCLI, cli)
		}
		peak := s.mem(b).hwm
		m := benchtab.Median
		record(b, benchtab.Row{Name: "log copy: a task printing 500 MiB", Unit: "s", Ours: m(ours), Reference: benchtab.Ref(m(ref)),
			ReferenceName: "docker run -d, docker wait, then docker logs ID > file", Reps: reps,
			Note: fmt.Sprintf("codex_agent (sync) sent to its result; fake Codex flood, log cap raised to 1 GiB; CPU: the server %.1f s and dockerd %.1f s, against dockerd %.1f s and the docker command line %.1f s for the reference",
				m(cpuOurs), m(cpuEngine), m(cpuRefEngine), m(cpuCLI))})
		record(b, benchtab.Row{Name: "log copy: the server's peak RSS", Unit: "MiB", Ours: peak, Max: 60, Reps: 1,
			Note: fmt.Sprintf("VmHWM over the server's life, after copying %d logs of 500 MiB: the copy streams; the target is the one for a server with running tasks", reps)})
		b.ReportMetric(m(ours)/m(ref), "ratio")
		b.ReportMetric(peak, "peak-rss-MiB")
	}
}

// engineCPU is the CPU time dockerd has used, in seconds; 0 when its pid
// file is not where the package's engine keeps it.
func engineCPU() float64 {
	data, err := os.ReadFile("/var/run/docker.pid")
	if err != nil {
		return 0
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil {
		return 0
	}
	st, err := readStat(pid)
	if err != nil {
		return 0
	}
	return st.cpu
}

// dockerLogsToFile runs cmd in image detached, waits for its end, then
// copies its whole log into a file with the docker command line, and
// fails unless the file holds at least what the task printed. It returns
// how long that took and the CPU seconds of `docker logs`.
func dockerLogsToFile(b *testing.B, image string, cmd []string) (time.Duration, float64) {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	path := filepath.Join(b.TempDir(), "task.log")
	began := time.Now()
	id := docker(b, append([]string{"run", "-d", "--label", benchLabel + "=logs", image}, cmd...)...)
	defer removeContainer(id)
	if code := docker(b, "wait", id); code != "0" {
		b.Fatalf("the flood exited %s", code)
	}
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	logs := exec.CommandContext(ctx, "docker", "logs", id)
	logs.Stdout, logs.Stderr = f, f
	err = logs.Run()
	d := time.Since(began)
	f.Close()
	if err != nil {
		b.Fatalf("docker logs %s > file: %v", id, err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Size() < floodBytes {
		b.Fatalf("docker logs wrote %v bytes (%v), want at least %d", fi.Size(), err, floodBytes)
	}
	os.Remove(path)
	return d, (logs.ProcessState.UserTime() + logs.ProcessState.SystemTime()).Seconds()
}
