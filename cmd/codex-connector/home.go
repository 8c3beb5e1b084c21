package main

import (
	"context"
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/codex-connector/codex-connector/runner"
	"github.com/codex-connector/codex-connector/store"
	"github.com/docker/docker/client"
)

// host is a process that runs tasks on a home: an MCP server, or `run` in
// a terminal. Both count as a server to the detached follower, start a
// standby beside them, and hand their tasks over when they end, so a task
// goes on whoever started it and however that process ends.
type host struct {
	logger      *log.Logger
	runner      *runner.Runner
	lifetime    context.Context
	endLifetime context.CancelFunc
	closers     []func()
}

// openHost sets up a host of the home. name is its name in server.log;
// stderr says whether its diagnostics go to stderr too (a server's do; a
// terminal's are for the person, not for the log).
func openHost(cfg config, docker *client.Client, name string, stderr bool) (h *host, err error) {
	if err := os.MkdirAll(cfg.Home, 0o700); err != nil {
		return nil, fmt.Errorf("create %s: %w", cfg.Home, err)
	}
	h = &host{}
	defer func() {
		if err != nil {
			h.close()
		}
	}()
	// stdout is the protocol (or the person's): diagnostics go to stderr
	// and to a file.
	logger, closeLog, err := openServerLog(cfg.Home, name, stderr)
	if err != nil {
		return nil, err
	}
	h.logger = logger
	h.closers = append(h.closers, closeLog)

	// A locked or damaged database must not keep a server from starting:
	// every call then says what is wrong and what to do, in Claude Code,
	// where the user sees it, rather than in a log of a server that exited.
	st := store.New(filepath.Join(cfg.Home, "tasks.db"), cfg.LockTimeout)
	if err := st.Check(); err != nil {
		logger.Printf("%v", err)
	}
	// This binary also runs the egress proxy and the in-container bridge.
	self, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("find the codex-connector binary: %w", err)
	}
	// Mark this host alive before any task can start, for the detached
	// follower: it hands its tasks back to a live server, and runs only
	// while none is.
	presence, err := markServer(cfg.Home)
	if err != nil {
		return nil, err
	}
	// The standby wakes when its pipe closes: after this host no longer
	// counts as alive, so that it does not wait for a host that is leaving.
	// An exit of any other kind closes both at once; the standby looks
	// twice before it believes a server runs.
	var standby *standbyPipe
	h.closers = append(h.closers, func() {
		presence.Close()
		if standby != nil {
			standby.Close()
		}
	})
	if cfg.FollowAfterExit {
		if standby, err = startStandby(self, cfg, logger); err != nil {
			logger.Printf("%v; live tasks wait for the next server when this one exits", err)
		}
	}
	h.lifetime, h.endLifetime = context.WithCancel(context.Background())
	h.closers = append(h.closers, h.endLifetime)
	h.runner, err = runner.New(h.lifetime, runnerConfig(cfg, self), docker, st, logger.Printf)
	if err != nil {
		return nil, err
	}
	pingDocker(h.lifetime, docker, logger)
	return h, nil
}

// close ends the host: its runner's goroutines stop (containers keep
// running), and its tasks go to the home's other processes (a server, or
// the follower left behind) now, not when the leases lapse.
func (h *host) close() {
	if h.runner != nil {
		h.endLifetime()
		h.runner.Drain()
		if _, err := h.runner.Release(); err != nil {
			h.logger.Printf("%v; the tasks are taken over when the leases lapse", err)
		}
		h.logger.Printf("stopped")
	}
	for i := len(h.closers) - 1; i >= 0; i-- {
		h.closers[i]()
	}
}
