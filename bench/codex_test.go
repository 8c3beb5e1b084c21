package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/codex-connector/codex-connector/bench/benchtab"
	"github.com/codex-connector/codex-connector/images"
	"github.com/codex-connector/codex-connector/images/imagestest"
)

// The scripted conversation of BenchmarkRealCodex: Codex runs one command
// in the repository, then answers.
var (
	codexTurns = []imagestest.Turn{
		{Command: "echo made by codex > proof.txt && cat proof.txt"},
		{Message: "Created proof.txt with one line."},
	}
	codexPrompt = "create proof.txt"
)

// BenchmarkRealCodex runs the real Codex CLI against the scripted model
// server: a synchronous codex_agent call to its result, against `docker
// run` of the same Codex command pointed straight at the model server
// (no egress proxy, no bridge), and against the same Codex run directly on
// the host, with no container, as codex-connector's seed did. The last two
// are for reference only.
func BenchmarkRealCodex(b *testing.B) {
	c := newCodexBench(b)
	model, image, repo, codexArgs := c.model, c.image, c.repo, c.codexArgs
	script := func() func(string) { return c.script(b) }
	dockerRun := func() float64 { return c.dockerRun(b) }
	native := nativeCodex(b, image)
	home := c.home(b)
	s := startServer(b, home, image, imagestest.MockKeyEnv+"="+model.Key)

	run := c.agentRun(b, s, "codex_agent")
	hostRun := func() float64 {
		done := script()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, filepath.Join(native, "bin", "codex"), codexArgs...)
		cmd.Dir = repo
		cmd.Env = append(os.Environ(), "CODEX_HOME="+b.TempDir(), imagestest.MockKeyEnv+"="+model.Key,
			"PATH="+filepath.Join(native, "codex-path")+":"+os.Getenv("PATH"))
		began := time.Now()
		out, err := cmd.Output()
		d := time.Since(began)
		if err != nil || !strings.Contains(string(out), codexTurns[1].Message) {
			b.Fatalf("Codex on the host: %v\n%s", err, out)
		}
		done("Codex on the host")
		return ms(d)
	}
	// The first run of each pays for what a first run pays (the image's
	// layers read from disk, the native Codex paged in).
	run()
	dockerRun()
	hostRun()
	reps := benchtab.HeavyReps(3)
	for range b.N {
		var ours, viaDocker, onHost []float64
		for range reps {
			ours = append(ours, run())
			viaDocker = append(viaDocker, dockerRun())
			onHost = append(onHost, hostRun())
		}
		m := benchtab.Median
		record(b, benchtab.Row{Name: "real Codex end to end: codex_agent → result, vs docker run", Unit: "ms", Ours: m(ours), Reference: benchtab.Ref(m(viaDocker)),
			ReferenceName: "docker run --rm of the same Codex command, pointed straight at the model server", Reps: reps,
			Note: "scripted model server: one command, then a message (2 model requests); sandbox danger-full-access (the default) with a model provider key, so the model route goes through the egress proxy; for reference"})
		record(b, benchtab.Row{Name: "real Codex end to end: codex_agent → result, vs Codex on the host", Unit: "ms", Ours: m(ours), Reference: benchtab.Ref(m(onHost)),
			ReferenceName: "the same Codex (copied out of the image) run on the host, no container", Reps: reps, Note: "for reference"})
		b.ReportMetric(m(ours), "ours-ms")
		b.ReportMetric(m(viaDocker), "docker-run-ms")
		b.ReportMetric(m(onHost), "host-ms")
	}
}

// BenchmarkRealCodexUnderGVisor is BenchmarkRealCodex with every task under
// gVisor (images.runtime runsc) on an engine of the benchmark's own,
// against `docker run --runtime runsc` of the same Codex command on that
// engine.
func BenchmarkRealCodexUnderGVisor(b *testing.B) {
	c := newCodexBench(b)
	d := imagestest.StartGVisor(b)
	loadImage(b, d.Host, c.image)
	home := c.home(b)
	cfg, _ := json.Marshal(map[string]any{"codexConfig": c.model.CodexConfig(), "images": map[string]any{"runtime": "runsc"}})
	if err := os.WriteFile(filepath.Join(home, "config.json"), cfg, 0o600); err != nil {
		b.Fatal(err)
	}
	s := startServer(b, home, c.image, imagestest.MockKeyEnv+"="+c.model.Key, "DOCKER_HOST="+d.Host)
	sideBySide(b, benchtab.Row{Name: "real Codex under gVisor: codex_agent → result, vs docker run --runtime runsc",
		ReferenceName: "docker run --rm --runtime runsc of the same Codex command on the same engine, pointed straight at the model server", MaxRatio: 1.10,
		Note: "runsc built by make runsc, registered with --host-uds=open in an engine of the benchmark's own; the egress proxy on the engine's default runtime"},
		c.agentRun(b, s, "codex_agent under gVisor"),
		func() float64 { return c.dockerRunWith(b, []string{"-H", d.Host}, []string{"--runtime", "runsc"}) })
}

// agentRun is one synchronous codex_agent of the scripted conversation
// through s, timed in ms; what names it in a failure.
func (c *codexBench) agentRun(b *testing.B, s *server, what string) func() float64 {
	return func() float64 {
		done := c.script(b)
		began := time.Now()
		st := s.call(b, "codex_agent", map[string]any{"task": codexPrompt, "workingDirectory": c.repo, "model": "gpt-5-codex", "timeoutMs": 300000})
		d := time.Since(began)
		completed(b, st, codexTurns[1].Message)
		done(what)
		return ms(d)
	}
}

// sideBySide runs ours and reference once each (a first run pays for what
// a first run pays), then alternately, the heavy repetitions each, and
// records row with their medians in ms.
func sideBySide(b *testing.B, row benchtab.Row, ours, reference func() float64) {
	ours()
	reference()
	reps := benchtab.HeavyReps(3)
	for range b.N {
		var o, r []float64
		for range reps {
			o = append(o, ours())
			r = append(r, reference())
		}
		row.Unit, row.Ours, row.Reference, row.Reps = "ms", benchtab.Median(o), benchtab.Ref(benchtab.Median(r)), reps
		record(b, row)
		b.ReportMetric(row.Ours, "ours-ms")
		b.ReportMetric(benchtab.Median(r), "docker-run-ms")
	}
}

// loadImage copies image from the machine's engine into the engine at host.
func loadImage(b *testing.B, host, image string) {
	b.Helper()
	save := exec.Command("docker", "save", image)
	load := exec.Command("docker", "-H", host, "load")
	pipe, err := save.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	load.Stdin = pipe
	if err := save.Start(); err != nil {
		b.Fatal(err)
	}
	if out, err := load.CombinedOutput(); err != nil {
		b.Fatalf("load %s into the engine at %s: %v\n%s", image, host, err, out)
	}
	if err := save.Wait(); err != nil {
		b.Fatalf("save %s: %v", image, err)
	}
}

// codexBench is what the real-Codex benchmarks share: the scripted model
// server, the Codex image, a repository, and the reference, a `docker run`
// of the same Codex command pointed straight at the model server (no
// egress proxy, no bridge).
type codexBench struct {
	model     *imagestest.ModelServer
	image     string
	repo      string
	codexArgs []string
	// user is the uid:gid inside the reference run: the repository's
	// owner on a rootful engine.
	user string
}

func newCodexBench(b *testing.B) *codexBench {
	return newCodexBenchWith(b, imagestest.StartModelServer(b, imagestest.Engine(b), codexTurns...))
}

// newCodexBenchWith is newCodexBench with the model server given.
func newCodexBenchWith(b *testing.B, model *imagestest.ModelServer) *codexBench {
	c := &codexBench{image: imagestest.Codex(b), repo: imagestest.Repo(b), user: fmt.Sprintf("%d:%d", imagestest.RepoUID, imagestest.RepoGID)}
	c.model = model
	// Straight at the model server: no route, no bridge.
	providerArgs := append(c.model.CodexArgs(), "-c", fmt.Sprintf("model_providers.mock.base_url=%q", c.model.BaseURL))
	// The flags the runner gives Codex, less those that name its own paths.
	c.codexArgs = append([]string{"exec", "--json", "--skip-git-repo-check", "--ignore-user-config", "--ignore-rules",
		"--dangerously-bypass-approvals-and-sandbox", "--model", "gpt-5-codex"}, providerArgs...)
	c.codexArgs = append(c.codexArgs, "--", codexPrompt)
	return c
}

// home is a data directory whose config.json points Codex at the model
// server.
func (c *codexBench) home(b *testing.B) string {
	home := b.TempDir()
	cfg, _ := json.Marshal(map[string]any{"codexConfig": c.model.CodexConfig()})
	if err := os.WriteFile(filepath.Join(home, "config.json"), cfg, 0o600); err != nil {
		b.Fatal(err)
	}
	return home
}

// script sets the scripted conversation afresh; the function it returns
// checks that a run had it whole: two requests.
func (c *codexBench) script(b *testing.B) func(what string) {
	c.model.SetTurns(codexTurns...)
	before := len(c.model.Requests())
	return func(what string) {
		if n := len(c.model.Requests()) - before; n != 2 {
			b.Fatalf("%s: Codex made %d model requests, want 2", what, n)
		}
	}
}

// dockerRun is the reference: the same Codex command in `docker run`.
func (c *codexBench) dockerRun(b *testing.B) float64 { return c.dockerRunWith(b, nil, nil) }

// dockerRunWith is dockerRun with engine (docker's global flags: -H) and
// run (flags of docker run: --runtime) given.
func (c *codexBench) dockerRunWith(b *testing.B, engine, run []string) float64 {
	done := c.script(b)
	args := append(append(append([]string(nil), engine...), "run", "--rm"), run...)
	args = append(args, "--label", benchLabel+"=codex", "-v", c.repo+":"+c.repo, "-w", c.repo,
		"--user", c.user,
		"--tmpfs", "/home/codex:mode=1777", "-e", "HOME=/home/codex", "-e", imagestest.MockKeyEnv+"="+c.model.Key, c.image, "codex")
	began := time.Now()
	out := docker(b, append(args, c.codexArgs...)...)
	d := time.Since(began)
	if !strings.Contains(out, codexTurns[1].Message) {
		b.Fatalf("docker run of Codex did not answer:\n%s", out)
	}
	done("docker run")
	return ms(d)
}

// nativeCodex copies the native Codex (binary, code-mode host, resources)
// out of image into the user's cache directory, once per image, and
// returns where it is.
func nativeCodex(b *testing.B, image string) string {
	b.Helper()
	id := strings.TrimPrefix(docker(b, "image", "inspect", "--format", "{{.Id}}", image), "sha256:")
	cache, err := os.UserCacheDir()
	if err != nil {
		b.Fatalf("find a cache directory for the native Codex: %v — set XDG_CACHE_HOME", err)
	}
	dir := filepath.Join(cache, "codex-connector-bench", "codex-"+id[:12])
	if _, err := os.Stat(filepath.Join(dir, "bin", "codex")); err == nil {
		return dir
	}
	tmp := dir + ".copying"
	os.RemoveAll(tmp)
	if err := os.MkdirAll(filepath.Dir(dir), 0o700); err != nil {
		b.Fatal(err)
	}
	c := docker(b, "create", "--label", benchLabel+"=copy", image)
	defer removeContainer(c)
	docker(b, "cp", c+":"+images.CodexDir, tmp)
	if err := os.Rename(tmp, dir); err != nil {
		b.Fatal(err)
	}
	return dir
}
