package main

import (
	"context"
	"fmt"
	"log"
	"os"
	"path/filepath"

	dockerbe "github.com/codex-connector/codex-connector/backend/docker"

	"github.com/codex-connector/codex-connector/runner"
	"github.com/codex-connector/codex-connector/store"
	"github.com/docker/docker/client"
)

// host is a process that runs tasks on a home: an MCP server, or `run` in
// a terminal. Both start a standby beside them and hand their tasks over
// when they end, so a task goes on whoever started it and however that
// process ends. Only a server counts as one to the detached follower, which
// hands it every live task: a `run` follows its own task alone, so that a
// terminal suspended with Ctrl-Z stalls nothing but that task, until its
// lease lapses and the others take it over.
type host struct {
	cfg         config
	self        string // this binary: it runs the standby, the proxy and the bridge
	docker      *client.Client
	server      bool
	logger      *log.Logger
	runner      *runner.Runner
	lifetime    context.Context
	endLifetime context.CancelFunc
	closers     []func()
	// prepared is closed when prepare has returned; presence and standby
	// are what it set up.
	prepared chan struct{}
	presence *os.File
	standby  *standbyPipe
	// leases ends when a run's lease keeper has returned.
	leases chan struct{}
}

// openHost sets up a host of the home, as far as it can without waiting
// for anything: a server answers initialize while prepare runs. name is
// its name in server.log; server says whether it is an MCP server (marked
// alive for the follower; its diagnostics go to stderr too) or a run in a
// terminal (diagnostics for the log alone: the terminal is the person's).
func openHost(cfg config, docker *client.Client, name string, server bool) (h *host, err error) {
	if err := os.MkdirAll(cfg.Home, 0o700); err != nil {
		return nil, fmt.Errorf("create %s: %w", cfg.Home, err)
	}
	h = &host{cfg: cfg, docker: docker, server: server, prepared: make(chan struct{})}
	defer func() {
		if err != nil {
			close(h.prepared)
			h.close()
		}
	}()
	// stdout is the protocol (or the person's): diagnostics go to stderr
	// and to a file.
	logger, closeLog, err := openServerLog(cfg.Home, name, server)
	if err != nil {
		return nil, err
	}
	h.logger = logger
	h.closers = append(h.closers, closeLog)
	// This binary also runs the egress proxy and the in-container bridge.
	if h.self, err = os.Executable(); err != nil {
		return nil, fmt.Errorf("find the codex-connector binary: %w", err)
	}
	h.lifetime, h.endLifetime = context.WithCancel(context.Background())
	h.closers = append(h.closers, h.endLifetime)
	st := store.New(filepath.Join(cfg.Home, "tasks.db"), cfg.LockTimeout)
	h.runner, err = runner.New(h.lifetime, runnerConfig(cfg, h.self), dockerbe.New(docker), st, logger.Printf)
	if err != nil {
		return nil, err
	}
	return h, nil
}

// prepare does what must be done before the host's first task starts, and
// what takes time: it checks the database, marks a server alive, starts
// the standby, and negotiates with the engine.
func (h *host) prepare() error {
	defer close(h.prepared)
	// A locked or damaged database must not keep a server from starting:
	// every call then says what is wrong and what to do, in Claude Code,
	// where the user sees it, rather than in a log of a server that exited.
	if err := store.New(filepath.Join(h.cfg.Home, "tasks.db"), h.cfg.LockTimeout).Check(); err != nil {
		h.logger.Printf("%v", err)
	}
	// Mark a server alive before any task can start, for the detached
	// follower: it hands its tasks back to a live server, and runs only
	// while none is.
	if h.server {
		presence, err := markServer(h.cfg.Home)
		if err != nil {
			return err
		}
		h.presence = presence
	}
	// The standby wakes when its pipe closes: after this host no longer
	// counts as alive, so that it does not wait for a host that is leaving.
	// An exit of any other kind closes both at once; the standby looks
	// twice before it believes a server runs.
	if h.cfg.FollowAfterExit {
		standby, err := startStandby(h.self, h.cfg, h.logger)
		if err != nil {
			h.logger.Printf("%v; live tasks wait for the next server when this one exits", err)
		}
		h.standby = standby
	}
	pingDocker(h.lifetime, h.docker, h.logger)
	if !h.server {
		h.leases = make(chan struct{})
		go func() {
			defer close(h.leases)
			h.runner.KeepLeases()
		}()
	}
	return nil
}

// close ends the host: its runner's goroutines stop (containers keep
// running), and its tasks go to the home's other processes (a server, or
// the follower left behind) now, not when the leases lapse.
func (h *host) close() {
	<-h.prepared // what it sets up is closed below
	if h.runner != nil {
		h.endLifetime()
		if h.leases != nil {
			<-h.leases // no renewal after the handover
		}
		h.runner.Drain()
		if _, err := h.runner.HandOver(); err != nil {
			h.logger.Printf("%v; the tasks are taken over when the leases lapse", err)
		}
		h.logger.Printf("stopped")
	}
	if h.presence != nil {
		h.presence.Close()
	}
	if h.standby != nil {
		h.standby.Close()
	}
	for i := len(h.closers) - 1; i >= 0; i-- {
		h.closers[i]()
	}
}
