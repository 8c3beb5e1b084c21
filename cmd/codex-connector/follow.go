package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/codex-connector/codex-connector/runner"
	"github.com/codex-connector/codex-connector/store"
	"github.com/docker/docker/client"
)

// The detached follower. A server lives as long as a Claude Code window;
// its tasks must not depend on that. So every server starts a standby
// process beside it, in a session of its own, that waits for the server to
// end, however it ends: the pipe the standby reads closes when the server's
// process is gone, after an exit as after a SIGKILL. The standby then, if
// tasks are live and no server runs on the home, becomes the home's
// follower: the same runner without MCP, which takes the tasks over through
// the leases and follows them to their end. It hands them back as soon as a
// server runs on the home again, and exits once nothing is live, removing
// the egress proxy, which nothing then needs.
//
// Two locks in the home say who is alive. Every server holds servers.lock
// shared for its life; the follower tries it exclusively to see whether any
// server runs. follower.lock is held by the one follower of the home; a
// second standby waits on it, then looks again, so that a follower that is
// about to exit never leaves a dying server's tasks unfollowed.
const (
	serversLock  = "servers.lock"
	followerLock = "follower.lock"
	// standbyFD is where the standby reads the pipe from its server.
	standbyFD = 3
	// followEvery is how often the follower looks for servers and live
	// tasks.
	followEvery = time.Second
	// handBackAfter is how many looks in a row must see a server before the
	// follower hands its tasks back: a server that is exiting holds its
	// lock for a moment after its standby woke.
	handBackAfter = 2
)

func openLock(home, name string) (*os.File, error) {
	f, err := os.OpenFile(filepath.Join(home, name), os.O_CREATE|os.O_RDWR|syscall.O_NOFOLLOW|syscall.O_CLOEXEC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open the lock %s: %w", name, err)
	}
	return f, nil
}

// markServer holds servers.lock shared until the returned file is closed
// (or the process ends). It waits while a follower holds it exclusively,
// which it does only for a moment.
func markServer(home string) (*os.File, error) {
	f, err := openLock(home, serversLock)
	if err != nil {
		return nil, err
	}
	if err := flockRetry(f, syscall.LOCK_SH); err != nil {
		f.Close()
		return nil, fmt.Errorf("mark this server alive in %s: %w", home, err)
	}
	return f, nil
}

// noServer says whether no server runs on the home. When none does, it
// holds servers.lock until unlock is called, so that none starts meanwhile.
func noServer(home string) (unlock func(), none bool, err error) {
	f, err := openLock(home, serversLock)
	if err != nil {
		return nil, false, err
	}
	err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
	if errors.Is(err, syscall.EWOULDBLOCK) {
		f.Close()
		return nil, false, nil
	}
	if err != nil {
		f.Close()
		return nil, false, fmt.Errorf("look for servers of %s: %w", home, err)
	}
	return func() { f.Close() }, true, nil
}

func flockRetry(f *os.File, how int) error {
	for {
		err := syscall.Flock(int(f.Fd()), how)
		if !errors.Is(err, syscall.EINTR) {
			return err
		}
	}
}

// startStandby starts the standby of this server. The returned pipe must
// stay open for the life of the server: the standby wakes when it closes.
func startStandby(self string, logger *log.Logger) (*os.File, error) {
	rd, wr, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("start the standby follower: %w", err)
	}
	defer rd.Close()
	cmd := exec.Command(self, "follow", "--standby")
	cmd.ExtraFiles = []*os.File{rd} // becomes standbyFD
	// Its own session: Claude Code ending the server's process group must
	// not end the standby. Its stdio is /dev/null: this process's stdout is
	// the MCP protocol, and its pipes must close when the server exits.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		wr.Close()
		return nil, fmt.Errorf("start the standby follower: %w", err)
	}
	go cmd.Wait() // reap it, should it end first
	logger.Printf("standby follower %d waits for this server to end", cmd.Process.Pid)
	return wr, nil
}

// awaitServerEnd blocks until the server that started this standby is gone.
func awaitServerEnd() {
	pipe := os.NewFile(standbyFD, "server")
	_, _ = io.Copy(io.Discard, pipe)
	pipe.Close()
}

// follow runs the home's live tasks to their end while no server runs.
func follow(cfg config, docker *client.Client) error {
	if _, err := os.Stat(cfg.Home); err != nil {
		return nil // the home is gone: nothing to follow
	}
	logFile, err := os.OpenFile(filepath.Join(cfg.Home, "server.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("open server log: %w", err)
	}
	defer logFile.Close()
	logger := log.New(io.MultiWriter(os.Stderr, logFile), fmt.Sprintf("codex-connector follow[%d] ", os.Getpid()), log.LstdFlags|log.Lmicroseconds)

	lock, err := openLock(cfg.Home, followerLock)
	if err != nil {
		return err
	}
	defer lock.Close()
	if err := flockRetry(lock, syscall.LOCK_EX); err != nil {
		return fmt.Errorf("become the follower of %s: %w", cfg.Home, err)
	}
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("find the codex-connector binary: %w", err)
	}
	st := store.New(filepath.Join(cfg.Home, "tasks.db"), cfg.LockTimeout)
	lifetime, endLifetime := context.WithCancel(context.Background())
	defer endLifetime()
	r, err := runner.New(lifetime, runnerConfig(cfg, self), docker, st, logger.Printf)
	if err != nil {
		return err
	}
	signals, stopSignals := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stopSignals()

	f := &follower{home: cfg.Home, r: r, logf: logger.Printf, endLifetime: endLifetime}
	tick := time.NewTicker(followEvery)
	defer tick.Stop()
	for {
		if done := f.look(lifetime); done {
			return nil
		}
		select {
		case <-signals.Done():
			logger.Printf("stopping on a signal")
			f.handOver()
			return nil
		case <-tick.C:
		}
	}
}

// follower is the state of the follow loop.
type follower struct {
	home        string
	r           *runner.Runner
	logf        func(string, ...any)
	endLifetime func()
	// following is set once the runner runs: it then holds leases.
	// runDone closes when the runner's Run returns.
	following bool
	runDone   chan struct{}
	// seen counts the looks in a row that saw a server.
	seen int
}

// look decides, once, what the follower does now; done means it is to exit.
func (f *follower) look(lifetime context.Context) (done bool) {
	if _, err := os.Stat(f.home); err != nil {
		f.logf("the data directory is gone (%v); stopping", err)
		f.handOver()
		return true
	}
	unlock, none, err := noServer(f.home)
	if err != nil {
		f.logf("%v", err)
		return false
	}
	if !none {
		f.seen++
		if f.seen < handBackAfter {
			return false
		}
		if f.following {
			f.logf("a server runs on this home: handing the tasks back to it")
		}
		f.handOver()
		return true
	}
	defer unlock()
	f.seen = 0
	live, err := f.r.Live()
	if err != nil {
		f.logf("count the live tasks: %v", err)
		return false
	}
	if live == 0 {
		// No server runs, and none starts while the lock is held: nothing
		// can become live, and nothing needs the proxy.
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := f.r.RemoveProxy(ctx); err != nil {
			f.logf("remove the egress proxy: %v", err)
		}
		if f.following {
			f.logf("no task is live: stopping")
		}
		f.stop()
		return true
	}
	if !f.following {
		f.following = true
		f.runDone = make(chan struct{})
		f.logf("no server runs on %s and %d tasks are live: following them", f.home, live)
		go func() {
			defer close(f.runDone)
			if err := f.r.Run(); err != nil {
				f.logf("%v", err)
			}
		}()
	}
	return false
}

// handOver stops following and hands the tasks to whoever runs next: a
// server now, or the standby of the next server to end. A follower that
// never followed still wakes the others: the server it stood by for may
// have died without handing its tasks over.
func (f *follower) handOver() {
	f.stop()
	if !f.following {
		f.r.Wake()
		return
	}
	if _, err := f.r.Release(); err != nil {
		f.logf("%v; the tasks are taken over when the leases lapse", err)
	}
}

// stop ends the runner's lifetime and waits for all of it to return: Run
// first, which may still be starting goroutines Drain waits for.
func (f *follower) stop() {
	f.endLifetime()
	if f.runDone != nil {
		<-f.runDone
	}
	f.r.Drain()
}
