// Command codex-connector is an MCP server that lets Claude Code hand coding
// tasks to OpenAI's Codex CLI, each task in its own Docker container, and a
// command line for people to run, watch and steer the same tasks.
//
//	codex-connector                serve MCP over stdio (what ~/.mcp.json runs)
//	codex-connector run TASK       run a task in this repository and watch it
//	codex-connector tasks          list tasks; status, logs -f, cancel for one
//	codex-connector doctor         check that tasks can run here (alias: check)
//	codex-connector help           every command, and the environment
//
// The commands are in cli.go, one file each for what they share with the
// MCP tools (tasks.go, logs.go, run.go, doctor.go).
package main

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	dockerbe "github.com/codex-connector/codex-connector/backend/docker"

	"github.com/codex-connector/codex-connector/images"
	"github.com/codex-connector/codex-connector/mcp"
	"github.com/codex-connector/codex-connector/runner"
	"github.com/codex-connector/codex-connector/runner/egress"
	"github.com/codex-connector/codex-connector/store"
	"github.com/docker/docker/client"
	"github.com/mark3labs/mcp-go/server"
	"github.com/oklog/run"
)

// version is set at build time (make build).
var version = "dev"

func main() {
	err := mainErr(os.Args[1:])
	var code exitCode
	switch {
	case errors.As(err, &code):
		os.Exit(int(code)) // what there was to say is said
	case err != nil:
		// Errors quote paths and reasons a task chose.
		fmt.Fprintln(os.Stderr, "codex-connector:", safeText(err.Error()))
		os.Exit(1)
	}
}

func mainErr(args []string) error {
	cmd := ""
	if len(args) > 0 {
		cmd = args[0]
	}
	switch cmd {
	case "":
		return runCommandLine(serveCommand, nil)
	case "--version":
		fmt.Println(version)
		return nil
	case "help", "-h", "--help":
		return helpCommand(args[1:])
	case "egress-proxy":
		// Inside the egress proxy container.
		dir := "/egress"
		if len(args) == 3 && args[1] == "--dir" {
			dir = args[2]
		}
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		return egress.ServeProxy(ctx, dir)
	case "egress-bridge":
		// Inside a task's container, in front of Codex.
		const use = "usage: codex-connector egress-bridge --listen ADDR --socket PATH [--gate FILE] [--stdin FILE] [--routes-only] -- COMMAND..."
		if len(args) < 6 || args[1] != "--listen" || args[3] != "--socket" {
			return errors.New(use)
		}
		gate, stdin, proxyEnv, rest := "", "", true, args[5:]
		for len(rest) > 0 && rest[0] != "--" {
			switch {
			case rest[0] == "--gate" && len(rest) > 1:
				gate, rest = rest[1], rest[2:]
			case rest[0] == "--stdin" && len(rest) > 1:
				stdin, rest = rest[1], rest[2:]
			case rest[0] == "--routes-only":
				proxyEnv, rest = false, rest[1:]
			default:
				return errors.New(use)
			}
		}
		if len(rest) == 0 {
			return errors.New(use)
		}
		os.Exit(egress.RunBridge(args[2], args[4], gate, stdin, proxyEnv, rest[1:]))
	case "probe":
		// Inside the helper container that shows what an engine enforces.
		return dockerbe.ReportInside(args[1:])
	case "cache-init":
		// Inside the helper container that hands new cache volumes to a user.
		if len(args) < 4 {
			return errors.New("usage: codex-connector cache-init UID GID DIR...")
		}
		return runner.InitCaches(args[1], args[2], args[3:])
	case "gated":
		// Inside a danger-full-access task's container, in front of Codex.
		const use = "usage: codex-connector gated [--gate FILE] [--stdin FILE] -- COMMAND..."
		gate, stdin, rest := "", "", args[1:]
		for len(rest) > 0 && rest[0] != "--" {
			switch {
			case rest[0] == "--gate" && len(rest) > 1:
				gate, rest = rest[1], rest[2:]
			case rest[0] == "--stdin" && len(rest) > 1:
				stdin, rest = rest[1], rest[2:]
			default:
				return errors.New(use)
			}
		}
		if len(rest) < 2 {
			return errors.New(use)
		}
		os.Exit(egress.RunGated(gate, stdin, rest[1:]))
	case "follow":
		if len(args) == 2 && args[1] == "--standby" {
			// Started by a server, beside it: wait until it is gone.
			cfg, err := standBy()
			if err != nil {
				return err
			}
			docker, err := newDockerClient()
			if err != nil {
				return err
			}
			defer docker.Close()
			return follow(cfg, docker)
		}
	}
	c := lookup(cmd)
	if c == nil {
		usage(os.Stderr)
		return fmt.Errorf("unknown command %q: the commands are listed above", cmd)
	}
	return runCommandLine(c, args[1:])
}

var serveCommand = &command{
	name: "serve", summary: "serve MCP over stdio (what ~/.mcp.json runs; the default)",
	help: `Serves the codex_* tools over MCP on stdin and stdout, for Claude Code. It is
what runs with no command. Tasks keep running in their containers when it
exits; a follower it leaves behind takes them to their end.`,
	needs: needsDocker,
	run: func(e *env, _ any, args []string) error {
		if len(args) > 0 {
			return e.cmd.usagef("serve takes no arguments")
		}
		return serve(e.cfg, e.docker)
	},
}

var followCommand = &command{
	name: "follow", summary: "follow the live tasks to their end while no server runs",
	help: `Follows the home's live tasks (records their logs and results, enforces their
deadlines) while no server runs, and exits once none is live. Servers start
one by themselves when they exit; run it by hand after a reboot.`,
	needs: needsDocker,
	run: func(e *env, _ any, args []string) error {
		if len(args) > 0 {
			return e.cmd.usagef("follow takes no arguments")
		}
		return follow(e.cfg, e.docker)
	},
}

var versionCommand = &command{
	name: "version", summary: "print the version",
	help: "Prints the version of codex-connector.",
	run: func(e *env, _ any, args []string) error {
		if len(args) > 0 {
			return e.cmd.usagef("version takes no arguments")
		}
		fmt.Fprintln(e.stdout, version)
		return nil
	},
}

// serve runs the MCP server over stdio until stdin closes or a signal comes.
// Running tasks keep running in their containers.
func serve(cfg config, docker *client.Client) error {
	h, err := openHost(cfg, docker, "codex-connector", true)
	if err != nil {
		return err
	}
	defer h.close()
	// initialize is answered at once; the rest of the start (the database
	// check, the server's mark, the standby, the engine's API version) runs
	// beside it, and tool calls wait for it.
	prepared, ready := make(chan error, 1), make(chan struct{})
	tasks := &preparedTasks{Runner: h.runner, done: ready, stopping: h.lifetime.Done()}
	go func() {
		err := h.prepare()
		tasks.err = err
		close(ready)
		prepared <- err
	}()
	stdio := server.NewStdioServer(mcp.NewServer(tasks, version))
	stdio.SetErrorLogger(h.logger)
	var g run.Group
	{
		ctx, cancel := context.WithCancel(context.Background())
		g.Add(func() error {
			err := stdio.Listen(ctx, os.Stdin, os.Stdout)
			h.logger.Printf("stdin closed; stopping (running tasks keep running)")
			return err
		}, func(error) { cancel() })
	}
	// Once prepared, the runner reconciles with what other servers left
	// and renews this server's leases on its tasks.
	g.Add(func() error {
		if err := <-prepared; err != nil {
			return err
		}
		if h.lifetime.Err() != nil {
			return nil // stopped while it prepared: nothing to take over
		}
		return h.runner.Supervise()
	}, func(error) { h.endLifetime() })
	g.Add(run.SignalHandler(context.Background(), os.Interrupt, syscall.SIGTERM))
	err = g.Run()
	var sig run.SignalError
	if errors.As(err, &sig) || errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}

// preparedTasks holds each tool call until the server is prepared (see
// host.prepare): no task starts before the server is marked alive and its
// standby runs, and no two first calls race to negotiate with the engine.
type preparedTasks struct {
	*runner.Runner
	done     <-chan struct{}
	err      error           // set before done is closed, when prepare failed
	stopping <-chan struct{} // the server's lifetime ended
}

func (p *preparedTasks) wait() error {
	select {
	case <-p.done:
	case <-p.stopping:
	}
	select {
	case <-p.stopping:
		return errors.New("codex-connector is stopping (its stdin closed, or it got a signal): call again once Claude Code has restarted it")
	default:
		return p.err
	}
}

func (p *preparedTasks) Start(ctx context.Context, spec runner.Spec) (*store.Task, error) {
	if err := p.wait(); err != nil {
		return nil, err
	}
	return p.Runner.Start(ctx, spec)
}

func (p *preparedTasks) Get(id string) (*store.Task, error) {
	if err := p.wait(); err != nil {
		return nil, err
	}
	return p.Runner.Get(id)
}

func (p *preparedTasks) Wait(ctx context.Context, id string) (*store.Task, error) {
	if err := p.wait(); err != nil {
		return nil, err
	}
	return p.Runner.Wait(ctx, id)
}

func (p *preparedTasks) Cancel(ctx context.Context, id string) (*store.Task, error) {
	if err := p.wait(); err != nil {
		return nil, err
	}
	return p.Runner.Cancel(ctx, id)
}

func (p *preparedTasks) List(f store.Filter) ([]*store.Task, []string, error) {
	if err := p.wait(); err != nil {
		return nil, nil, err
	}
	return p.Runner.List(f)
}

func (p *preparedTasks) Tail(id string, n int) ([]string, bool, error) {
	if err := p.wait(); err != nil {
		return nil, false, err
	}
	return p.Runner.Tail(id, n)
}

// runnerConfig is the runner's part of the configuration; self is this
// binary, which also runs the egress proxy and the in-container bridge.
func runnerConfig(cfg config, self string) runner.Config {
	return runner.Config{
		Home:         cfg.Home,
		Image:        images.Codex{Ref: cfg.Image, Version: cfg.CodexVersion},
		MaxRunning:   cfg.MaxRunning,
		StopGrace:    cfg.StopGrace,
		StallTimeout: cfg.StallTimeout,
		Limits:       cfg.Limits,
		Env:          cfg.Env,
		Routes:       cfg.Routes,
		CodexArgs:    cfg.CodexArgs,
		AuthFile:     cfg.AuthFile,
		Version:      version,
		AllowedRoots: cfg.AllowedRoots,
		MaxSandbox:   cfg.MaxSandbox,
		Workspace:    cfg.Workspace,
		Lease:        cfg.Lease,
		Retention:    cfg.Retention,
		Toolchains:   cfg.Toolchains,
		Caches:       cfg.Caches,
		Egress:       runner.Egress{ModelHosts: cfg.ModelHosts, AllowedHosts: cfg.AllowedHosts, CABundle: cfg.CABundle},
		HelperBinary: self,
	}
}

// pingDocker negotiates the API version once, before the runner and the
// tools use the client from several goroutines: the client's lazy
// negotiation on first use is not safe when two first requests race. When
// the engine is down it keeps trying in the background, and negotiates as
// soon as the engine answers.
func pingDocker(lifetime context.Context, docker *client.Client, logger *log.Logger) {
	negotiate := func() bool {
		ctx, cancel := context.WithTimeout(lifetime, 3*time.Second)
		defer cancel()
		if _, err := docker.Ping(ctx); err != nil {
			return false
		}
		docker.NegotiateAPIVersion(ctx)
		return true
	}
	if negotiate() {
		return
	}
	logger.Printf("the Docker engine does not answer: new tasks are refused, and running ones wait, until it does")
	go func() {
		for {
			select {
			case <-lifetime.Done():
				return
			case <-time.After(2 * time.Second):
			}
			if negotiate() {
				logger.Printf("the Docker engine answers (API %s)", docker.ClientVersion())
				return
			}
		}
	}()
}

// prune removes the tasks that ended more than AGE ago (or the configured
// retention), with their logs and results, now.
func prune(cfg config, docker *client.Client, args []string) error {
	if len(args) > 1 {
		return errors.New("usage: codex-connector prune [AGE], e.g. prune 30d")
	}
	if len(args) == 1 {
		if err := setRetention(&cfg.Retention, args[0]); err != nil {
			return err
		}
	}
	if cfg.Retention == 0 {
		return errors.New("say how old a task must be to go, e.g. `codex-connector prune 30d`, or set retention in config.json")
	}
	st := store.New(filepath.Join(cfg.Home, "tasks.db"), cfg.LockTimeout)
	r, err := runner.New(context.Background(), runner.Config{Home: cfg.Home}, dockerbe.New(docker), st, func(string, ...any) {})
	if err != nil {
		return err
	}
	cutoff := time.Now().Add(-cfg.Retention)
	n, err := r.Prune(cutoff)
	fmt.Printf("removed %d tasks that ended before %s, with their logs and results\n", n, cutoff.Format(time.RFC3339))
	return err
}
