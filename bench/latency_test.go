package bench

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/codex-connector/codex-connector/bench/benchtab"
	"github.com/codex-connector/codex-connector/images/imagestest"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/client"
)

// BenchmarkStartLatency measures how soon a task prints: from an async
// codex_agent sent to the first line of the task's log file, against the
// floor (create, wait, start and a followed log read by a Go program
// holding an engine connection, as the runner does) and against `docker
// run -d` then `docker logs -f`. All run the fake Codex image with the
// same command, `codex exec --json -- "say hi"`, whose first line it
// prints at once.
func BenchmarkStartLatency(b *testing.B) {
	image := imagestest.FakeCodex(b)
	eng := imagestest.Engine(b)
	warmUp(b, image)
	prompt := "say hi"
	cmd := []string{"codex", "exec", "--json", "--", prompt}
	for range b.N {
		home := b.TempDir()
		s := startServer(b, home, image)
		repo := imagestest.Repo(b)
		reps := benchtab.Reps(5)
		var ours, floor, cli []float64
		for range reps {
			began := time.Now()
			id := awaitFirstLine(b, home, s.startAsync(b, prompt, repo), began)
			ours = append(ours, ms(time.Since(began)))
			// Not measured: the task's end, so that the next measurement
			// has the machine to itself.
			completed(b, s.waitEnded(b, id), "hi")

			floor = append(floor, ms(floorFirstLine(b, eng, image, cmd)))
			cli = append(cli, ms(dockerCLIFirstLine(b, image, cmd)))
		}
		m := benchtab.Median
		split := engineSplit(b, image, prompt)
		record(b, benchtab.Row{Name: "start latency: codex_agent → first log line, vs the floor", Unit: "ms", Ours: m(ours), Reference: benchtab.Ref(m(floor)),
			ReferenceName: "create → wait → start → followed logs until the first line, in a Go program with an engine connection (the floor)", Reps: reps,
			Note: "async codex_agent sent to the first line in ~/.codex-connector/logs/<id>.log (polled every ms); fake Codex, sandbox danger-full-access (the default); " + split})
		record(b, benchtab.Row{Name: "start latency: codex_agent → first log line, vs docker run -d", Unit: "ms", Ours: m(ours), Reference: benchtab.Ref(m(cli)),
			ReferenceName: "docker run -d, then docker logs -f until the first line", Reps: reps})
		b.ReportMetric(m(ours), "ours-ms")
		b.ReportMetric(m(floor), "floor-ms")
		b.ReportMetric(m(cli), "docker-cli-ms")
	}
}

// engineSplit runs a few more tasks through a server whose engine calls go
// through a recording proxy, and says how much of the time to the first
// line the engine took: the rest is codex-connector's own.
func engineSplit(b *testing.B, image, prompt string) string {
	b.Helper()
	tr := startEngineTrace(b)
	home := b.TempDir()
	s := startServer(b, home, image, "DOCKER_HOST="+tr.Host)
	repo := imagestest.Repo(b)
	const reps = 3
	var totals, engine, calls []float64
	var summary string
	for range reps {
		began := time.Now()
		id := awaitFirstLine(b, home, s.startAsync(b, prompt, repo), began)
		end := time.Now()
		e, n, sum := tr.between(began, end)
		totals, engine, calls, summary = append(totals, ms(end.Sub(began))), append(engine, ms(e)), append(calls, float64(n)), sum
		completed(b, s.waitEnded(b, id), "hi")
	}
	m := benchtab.Median
	return fmt.Sprintf("through a recording proxy to the engine (median of %d): %.0f ms to the first line, of which the engine %.0f ms in %.0f calls (the last task's biggest: %s), codex-connector %.0f ms",
		reps, m(totals), m(engine), m(calls), summary, m(totals)-m(engine))
}

// floorFirstLine is the least a program can do to run cmd in image and
// see its first line: create, wait (registered before the start, as docker
// run does, so that the exit cannot be missed), start, then follow the
// logs until a line ends. The container is removed afterwards, unmeasured.
func floorFirstLine(b *testing.B, eng *client.Client, image string, cmd []string) time.Duration {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	began := time.Now()
	created, err := eng.ContainerCreate(ctx, &container.Config{Image: image, Cmd: cmd, Labels: map[string]string{benchLabel: "floor"}}, nil, nil, nil, "")
	if err != nil {
		b.Fatalf("create: %v", err)
	}
	defer removeContainer(created.ID)
	waitC, errC := eng.ContainerWait(ctx, created.ID, container.WaitConditionNextExit)
	if err := eng.ContainerStart(ctx, created.ID, container.StartOptions{}); err != nil {
		b.Fatalf("start: %v", err)
	}
	// The stream is multiplexed (8-byte frame headers); a line's end is a
	// newline byte either way. A follow can end before the first line when
	// the container exits at once (seen on Docker 20.10): the line is then
	// in the log that the engine kept, and one more read gets it.
	for try := 0; ; try++ {
		logs, err := eng.ContainerLogs(ctx, created.ID, container.LogsOptions{ShowStdout: true, ShowStderr: true, Follow: true})
		if err != nil {
			b.Fatalf("logs: %v", err)
		}
		err = firstLine(logs)
		logs.Close()
		if err == nil {
			break
		}
		if try == 5 {
			b.Fatalf("floor: the logs of %s never showed a line: %v", created.ID, err)
		}
	}
	d := time.Since(began)
	select {
	case <-waitC:
	case err := <-errC:
		b.Fatalf("wait: %v", err)
	}
	return d
}

// dockerCLIFirstLine runs cmd in image with `docker run -d` and follows it
// with `docker logs -f` until the first line; the container is removed
// afterwards, unmeasured.
func dockerCLIFirstLine(b *testing.B, image string, cmd []string) time.Duration {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	began := time.Now()
	id := docker(b, append([]string{"run", "-d", "--label", benchLabel + "=docker-run", image}, cmd...)...)
	defer removeContainer(id)
	// As floorFirstLine: a follow may end before the first line.
	for try := 0; ; try++ {
		logs := exec.CommandContext(ctx, "docker", "logs", "-f", id)
		// The container's stdout and stderr come out on the command's
		// own; both go to one pipe, which ends when the command does.
		out, err := logs.StdoutPipe()
		if err != nil {
			b.Fatal(err)
		}
		logs.Stderr = logs.Stdout
		if err := logs.Start(); err != nil {
			b.Fatal(err)
		}
		err = firstLine(out)
		logs.Process.Kill()
		logs.Wait()
		if err == nil {
			break
		}
		if try == 5 {
			b.Fatalf("docker logs -f %s never showed a line: %v", id, err)
		}
	}
	return time.Since(began)
}

// awaitFirstLine waits, polling every millisecond, until the log of task id
// in home has a whole line, and returns id.
func awaitFirstLine(b *testing.B, home, id string, began time.Time) string {
	b.Helper()
	log := filepath.Join(home, "logs", id+".log")
	for !hasLine(log) {
		if time.Since(began) > 2*time.Minute {
			b.Fatalf("task %s printed nothing in 2 minutes", id)
		}
		time.Sleep(time.Millisecond)
	}
	return id
}
