package runner

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/codex-connector/codex-connector/bench/benchtab"
	"github.com/codex-connector/codex-connector/images/imagestest"
	"github.com/codex-connector/codex-connector/store"
	"github.com/codex-connector/codex-connector/workspace"
	"github.com/docker/docker/api/types/container"
)

// BenchmarkTaskOverhead measures, side by side in one run, how long a task
// takes from Start to its recorded result, against a bare create, start,
// wait and remove of the same image with the same command (what `docker run
// --rm` does), and reports the ratio. Both run the fake Codex, which answers
// at once, so the difference is codex-connector's own cost: the repo check,
// records, hardening, log copy, result copy and clean-up.
func BenchmarkTaskOverhead(b *testing.B) {
	// A model route (a provider's key): every level then sets up its
	// policy and socket, danger-full-access too. The fake Codex makes no
	// model request, so only the set-up shows.
	route := func(c *Config) {
		c.Routes = []ModelRoute{{Provider: "bench", Upstream: "https://model.invalid/v1", Secrets: []RouteSecret{BearerKey("BENCH_KEY", "sk-bench", "")}}}
	}
	for _, bc := range []struct {
		name  string
		level string
		mod   func(*Config)
	}{
		{DangerFullAccess, DangerFullAccess, nil},
		{DangerFullAccess + "-with-a-key", DangerFullAccess, route},
		{WorkspaceWrite, WorkspaceWrite, nil},
	} {
		level := bc.level
		b.Run(bc.name, func(b *testing.B) {
			h := newHarness(b, bc.mod)
			repo := newRepo(b)
			eng := imagestest.Engine(b)
			ctx := context.Background()
			var ours, bare time.Duration
			var oursMs, bareMs []float64 // each run's, for the medians of make bench's table
			for i := 0; i < b.N; i++ {
				start := time.Now()
				task := h.startAndWait(b, Spec{Prompt: "say hi", WorkingDirectory: repo, Sandbox: level})
				if task.Status != store.Completed {
					b.Fatalf("task %s: %s", task.Status, task.Error)
				}
				ours += time.Since(start)
				oursMs = append(oursMs, float64(time.Since(start))/float64(time.Millisecond))

				start = time.Now()
				created, err := eng.ContainerCreate(ctx, &container.Config{Image: h.cfg.Image.Ref, Cmd: []string{"codex", "exec", "--json", "--", "say hi"}}, nil, nil, nil, "")
				if err != nil {
					b.Fatal(err)
				}
				waitC, errC := eng.ContainerWait(ctx, created.ID, container.WaitConditionNextExit)
				if err := eng.ContainerStart(ctx, created.ID, container.StartOptions{}); err != nil {
					b.Fatal(err)
				}
				select {
				case <-waitC:
				case err := <-errC:
					b.Fatal(err)
				}
				if err := eng.ContainerRemove(ctx, created.ID, container.RemoveOptions{Force: true}); err != nil {
					b.Fatal(err)
				}
				bare += time.Since(start)
				bareMs = append(bareMs, float64(time.Since(start))/float64(time.Millisecond))
			}
			n := float64(b.N)
			b.ReportMetric(float64(ours.Milliseconds())/n, "task-ms/op")
			b.ReportMetric(float64(bare.Milliseconds())/n, "bare-ms/op")
			b.ReportMetric(float64(ours)/float64(bare), "ratio")
			line, err := benchtab.Record(benchtab.Row{Name: "task overhead, fake Codex: " + bc.name, Unit: "ms",
				Ours: benchtab.Median(oursMs), Reference: benchtab.Ref(benchtab.Median(bareMs)), Reps: b.N,
				ReferenceName: "create, start, wait and remove of the same image and command (what docker run --rm does), in process",
				Note:          "runner.Start to the recorded result, in process, no MCP"})
			if err != nil {
				b.Fatal(err)
			}
			b.Log(line)
		})
	}
}

// BenchmarkFourBranchTasksAtOnce measures four branch tasks started at once
// on one repository (each writes a file, and its workspace is made and
// collected into its branch), from the first Start to the last recorded
// result, against four bare create, start, wait and remove of the same
// image and command, at once.
func BenchmarkFourBranchTasksAtOnce(b *testing.B) {
	h := newHarness(b, nil)
	repo := newRepo(b)
	for _, args := range [][]string{{"add", "-A"}, {"-c", "user.name=b", "-c", "user.email=b@example.invalid", "commit", "-qm", "first"}} {
		if out, err := runGit(repo, args...); err != nil {
			b.Fatalf("git %v: %v\n%s", args, err, out)
		}
	}
	imagestest.Chown(b, repo)
	eng := imagestest.Engine(b)
	ctx := context.Background()
	var oursMs, bareMs []float64
	for i := 0; i < b.N; i++ {
		start := time.Now()
		var ids []string
		for n := range 4 {
			task, err := h.Start(ctx, Spec{Prompt: fmt.Sprintf("write out-%d.txt %d; say done", n, n), WorkingDirectory: repo, Sandbox: WorkspaceWrite, Workspace: workspace.KindBranch})
			if err != nil {
				b.Fatal(err)
			}
			ids = append(ids, task.ID)
		}
		for _, id := range ids {
			if t := h.waitFinal(b, id); t.Status != store.Completed || t.Branch == nil || t.Branch.Head == "" {
				b.Fatalf("task %s: %s (%s)", id, t.Status, t.Error)
			}
		}
		oursMs = append(oursMs, float64(time.Since(start))/float64(time.Millisecond))

		start = time.Now()
		errs := make(chan error, 4)
		for n := range 4 {
			go func() {
				created, err := eng.ContainerCreate(ctx, &container.Config{Image: h.cfg.Image.Ref, Cmd: []string{"codex", "exec", "--json", "--", fmt.Sprintf("say %d", n)}}, nil, nil, nil, "")
				if err != nil {
					errs <- err
					return
				}
				waitC, errC := eng.ContainerWait(ctx, created.ID, container.WaitConditionNextExit)
				if err := eng.ContainerStart(ctx, created.ID, container.StartOptions{}); err != nil {
					errs <- err
					return
				}
				select {
				case <-waitC:
				case err := <-errC:
					errs <- err
					return
				}
				errs <- eng.ContainerRemove(ctx, created.ID, container.RemoveOptions{Force: true})
			}()
		}
		for range 4 {
			if err := <-errs; err != nil {
				b.Fatal(err)
			}
		}
		bareMs = append(bareMs, float64(time.Since(start))/float64(time.Millisecond))
	}
	line, err := benchtab.Record(benchtab.Row{Name: "four branch tasks at once on one repository, fake Codex", Unit: "ms",
		Ours: benchtab.Median(oursMs), Reference: benchtab.Ref(benchtab.Median(bareMs)), MaxRatio: 1.2, Reps: b.N,
		ReferenceName: "four create, start, wait and remove of the same image and command at once, in process",
		Note:          "the first Start to the last recorded result: workspaces made, tasks run, branches collected"})
	if err != nil {
		b.Fatal(err)
	}
	b.Log(line)
}
