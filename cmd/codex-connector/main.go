// Command codex-connector is an MCP server that lets Claude Code hand coding
// tasks to OpenAI's Codex CLI, each task in its own Docker container.
//
//	codex-connector          serve MCP over stdio (what ~/.mcp.json runs)
//	codex-connector check    say whether Docker and the Codex image are ready
//	codex-connector prune [AGE]  remove tasks that ended more than AGE (e.g. 30d) ago
//	codex-connector caches [remove]  list (or remove) the package cache volumes of your tasks
//	codex-connector follow   follow the live tasks to their end while no server runs
//	codex-connector version  print the version
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

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
	if err := mainErr(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "codex-connector:", err)
		os.Exit(1)
	}
}

func mainErr(args []string) error {
	cmd := ""
	if len(args) > 0 {
		cmd = args[0]
	}
	switch cmd {
	case "", "serve":
	case "version", "--version":
		fmt.Println(version)
		return nil
	case "help", "-h", "--help":
		usage(os.Stdout)
		return nil
	case "check", "prune", "caches":
	case "follow":
		if len(args) > 2 || len(args) == 2 && args[1] != "--standby" {
			return errors.New("usage: codex-connector follow")
		}
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
		const use = "usage: codex-connector egress-bridge --listen ADDR --socket PATH [--gate FILE] [--routes-only] -- COMMAND..."
		if len(args) < 6 || args[1] != "--listen" || args[3] != "--socket" {
			return errors.New(use)
		}
		gate, proxyEnv, rest := "", true, args[5:]
		for len(rest) > 0 && rest[0] != "--" {
			switch {
			case rest[0] == "--gate" && len(rest) > 1:
				gate, rest = rest[1], rest[2:]
			case rest[0] == "--routes-only":
				proxyEnv, rest = false, rest[1:]
			default:
				return errors.New(use)
			}
		}
		if len(rest) == 0 {
			return errors.New(use)
		}
		os.Exit(egress.RunBridge(args[2], args[4], gate, proxyEnv, rest[1:]))
	case "cache-init":
		// Inside the helper container that hands new cache volumes to a user.
		if len(args) < 4 {
			return errors.New("usage: codex-connector cache-init UID GID DIR...")
		}
		return runner.InitCaches(args[1], args[2], args[3:])
	case "gated":
		// Inside a danger-full-access task's container, in front of Codex.
		if len(args) < 4 || args[1] != "--gate" || args[3] != "--" {
			return errors.New("usage: codex-connector gated --gate FILE -- COMMAND...")
		}
		os.Exit(egress.RunGated(args[2], args[4:]))
	default:
		usage(os.Stderr)
		return fmt.Errorf("unknown command %q", cmd)
	}
	var cfg config
	var err error
	if cmd == "follow" && len(args) == 2 {
		// Started by a server, beside it: wait until it is gone.
		cfg, err = standBy()
	} else {
		cfg, err = loadConfig(os.Getenv)
	}
	if err != nil {
		return err
	}
	docker, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
	if err != nil {
		return fmt.Errorf("set up the Docker client: %w", err)
	}
	defer docker.Close()
	switch cmd {
	case "check":
		return check(cfg, docker)
	case "prune":
		return prune(cfg, docker, args[1:])
	case "caches":
		return caches(docker, args[1:])
	case "follow":
		return follow(cfg, docker)
	}
	return serve(cfg, docker)
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: codex-connector [serve | check | prune [AGE] | caches [remove] | follow | version]")
	fmt.Fprintln(w, "\nWith no command it serves MCP over stdio: add it to ~/.mcp.json. Environment:")
	for _, e := range envNames {
		fmt.Fprintln(w, "  "+e)
	}
}

// serve runs the MCP server over stdio until stdin closes or a signal comes.
// Running tasks keep running in their containers.
func serve(cfg config, docker *client.Client) error {
	if err := os.MkdirAll(cfg.Home, 0o700); err != nil {
		return fmt.Errorf("create %s: %w", cfg.Home, err)
	}
	// stdout is the protocol: diagnostics go to stderr and to a file.
	logger, closeLog, err := openServerLog(cfg.Home, "codex-connector")
	if err != nil {
		return err
	}
	defer closeLog()

	// A locked or damaged database must not keep the server from starting:
	// every call then says what is wrong and what to do, in Claude Code,
	// where the user sees it, rather than in a log of a server that exited.
	st := store.New(filepath.Join(cfg.Home, "tasks.db"), cfg.LockTimeout)
	if err := st.Check(); err != nil {
		logger.Printf("%v", err)
	}
	// This binary also runs the egress proxy and the in-container bridge.
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("find the codex-connector binary: %w", err)
	}
	// Mark this server alive before any task can start, for the detached
	// follower: it hands its tasks back to a live server, and runs only
	// while none is.
	presence, err := markServer(cfg.Home)
	if err != nil {
		return err
	}
	// The standby wakes when its pipe closes: after this server no longer
	// counts as alive, so that it does not wait for a server that is
	// leaving. An exit of any other kind closes both at once; the standby
	// looks twice before it believes a server runs.
	var standby *os.File
	defer func() {
		presence.Close()
		if standby != nil {
			standby.Close()
		}
	}()
	if cfg.FollowAfterExit {
		if standby, err = startStandby(self, cfg, logger); err != nil {
			logger.Printf("%v; live tasks wait for the next server when this one exits", err)
		}
	}
	lifetime, endLifetime := context.WithCancel(context.Background())
	defer endLifetime()
	r, err := runner.New(lifetime, runnerConfig(cfg, self), docker, st, logger.Printf)
	if err != nil {
		return err
	}
	pingDocker(lifetime, docker, logger)

	stdio := server.NewStdioServer(mcp.NewServer(r, version))
	stdio.SetErrorLogger(logger)
	var g run.Group
	{
		ctx, cancel := context.WithCancel(context.Background())
		g.Add(func() error {
			err := stdio.Listen(ctx, os.Stdin, os.Stdout)
			logger.Printf("stdin closed; stopping (running tasks keep running)")
			return err
		}, func(error) { cancel() })
	}
	// The runner reconciles with what other servers left and renews this
	// server's leases on its tasks.
	g.Add(r.Run, func(error) { endLifetime() })
	g.Add(run.SignalHandler(context.Background(), os.Interrupt, syscall.SIGTERM))
	err = g.Run()
	endLifetime()
	r.Drain()
	// Hand the tasks this server followed to the home's other processes (a
	// server, or the follower left behind) now, not when the leases lapse.
	if _, rerr := r.Release(); rerr != nil {
		logger.Printf("%v; the tasks are taken over when the leases lapse", rerr)
	}
	logger.Printf("stopped")
	var sig run.SignalError
	if errors.As(err, &sig) || errors.Is(err, context.Canceled) {
		return nil
	}
	return err
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
		Lease:        cfg.Lease,
		Retention:    cfg.Retention,
		Toolchains:   cfg.Toolchains,
		Caches:       cfg.Caches,
		Egress:       runner.Egress{Binary: self, ModelHosts: cfg.ModelHosts, AllowedHosts: cfg.AllowedHosts, CABundle: cfg.CABundle},
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
	r, err := runner.New(context.Background(), runner.Config{Home: cfg.Home}, docker, st, func(string, ...any) {})
	if err != nil {
		return err
	}
	cutoff := time.Now().Add(-cfg.Retention)
	n, err := r.Prune(cutoff)
	fmt.Printf("removed %d tasks that ended before %s, with their logs and results\n", n, cutoff.Format(time.RFC3339))
	return err
}

// check tells a person whether tasks can run here, and what to do if not.
func check(cfg config, docker *client.Client) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ping, err := docker.Ping(ctx)
	if err != nil {
		return fmt.Errorf("the Docker engine does not answer: %w — start Docker, or set DOCKER_HOST", err)
	}
	fmt.Printf("docker: engine answers (API %s)\n", ping.APIVersion)
	if v, err := docker.ServerVersion(ctx); err == nil && strings.HasPrefix(v.Version, "20.10.") {
		// Seen here under the tests' container churn, as in the issue.
		fmt.Printf("docker: note: Docker %s can hang when many containers start and stop at once (moby/moby#46661); Docker 23 or newer is safer\n", v.Version)
	}
	cimg, err := (images.Codex{Ref: cfg.Image, Version: cfg.CodexVersion}).Inspect(ctx, docker)
	if err != nil {
		return err
	}
	fmt.Printf("image: %s is there", cfg.Image)
	if cfg.CodexVersion != "" {
		fmt.Printf(" with Codex %s", cfg.CodexVersion)
	}
	fmt.Println()
	checkImages(ctx, os.Stdout, cfg, docker, cimg)
	// Told at the end, after what else there is to see.
	credErr := checkCredentials(os.Stdout, cfg)
	if err := store.New(filepath.Join(cfg.Home, "tasks.db"), cfg.LockTimeout).Check(); err != nil {
		return errors.Join(credErr, err)
	}
	fmt.Printf("sandbox: callers may ask for up to %s (maxSandbox)", cfg.MaxSandbox)
	if cfg.MaxSandbox == runner.DangerFullAccess {
		fmt.Print("; set maxSandbox to workspace-write in config.json to keep tasks off the network and out of .git whatever the caller asks")
	}
	fmt.Printf("\ndata: %s\n", cfg.Home)
	if credErr != nil {
		return credErr
	}
	fmt.Println("ready: add {\"mcpServers\":{\"codex-connector\":{\"command\":\"codex-connector\"}}} to ~/.mcp.json")
	return nil
}
