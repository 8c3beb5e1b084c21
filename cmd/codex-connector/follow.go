package main

import (
	"bufio"
	"context"
	"encoding/json"
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

	dockerbe "github.com/codex-connector/codex-connector/backend/docker"

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
// the egress proxy, which nothing then needs: after proxyIdle, so that a
// one-shot client that comes soon finds the proxy serving.
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
	// freshLooks is how many looks after it begins the follower asks its
	// runner to reconcile again (lookedWhileFollowing).
	freshLooks = 5
	// giveUpAfter is how long the follower goes on when it cannot read the
	// records or the locks before it exits: a damaged database needs a
	// person, and the next server says so.
	giveUpAfter = 5 * time.Minute
	// proxyRemoval bounds the removal of the egress proxy, during which a
	// starting server waits.
	proxyRemoval = 5 * time.Second
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

// startStandby starts the standby of this server and hands it the server's
// configuration, as one JSON line on the pipe. The returned pipe must stay
// open for the life of the server: the standby wakes when it closes.
func startStandby(self string, cfg config, logger *log.Logger) (*standbyPipe, error) {
	line, err := json.Marshal(cfg)
	if err != nil {
		return nil, fmt.Errorf("start the standby follower: %w", err)
	}
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
	cmd.Dir = "/" // pin no directory of the server's
	if err := cmd.Start(); err != nil {
		wr.Close()
		return nil, fmt.Errorf("start the standby follower: %w", err)
	}
	go cmd.Wait() // reap it, should it end first
	// In the background: a configuration longer than the pipe's buffer
	// waits for the standby to read it.
	sp := &standbyPipe{w: wr, written: make(chan struct{})}
	go func() {
		defer close(sp.written)
		if _, err := wr.Write(append(line, '\n')); err != nil {
			logger.Printf("hand the configuration to the standby follower: %v", err)
		}
	}()
	logger.Printf("standby follower %d waits for this server to end", cmd.Process.Pid)
	return sp, nil
}

// standbyPipe is a server's end of its standby's pipe.
type standbyPipe struct {
	w       *os.File
	written chan struct{}
}

// Close wakes the standby. It first lets the configuration reach it (for a
// moment at most: a standby that does not read is gone), so that a host
// that ends at once, as `run --detach` does, leaves a standby that knows
// what to follow.
func (p *standbyPipe) Close() error {
	select {
	case <-p.written:
	case <-time.After(5 * time.Second):
	}
	return p.w.Close()
}

// openServerLog opens the home's server.log for a process of the given
// name; with stderr, it writes to stderr too.
func openServerLog(home, name string, stderr bool) (*log.Logger, func(), error) {
	f, err := os.OpenFile(filepath.Join(home, "server.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, nil, fmt.Errorf("open server log: %w", err)
	}
	var w io.Writer = f
	if stderr {
		// The log quotes tasks (their reasons, their names), and stderr is
		// often a person's terminal; the file keeps the bytes as they were.
		w = io.MultiWriter(&termSafe{w: os.Stderr}, f)
	}
	logger := log.New(w, fmt.Sprintf("%s[%d] ", name, os.Getpid()), log.LstdFlags|log.Lmicroseconds)
	return logger, func() { f.Close() }, nil
}

// standBy runs in the standby: it reads the configuration its server ran
// with, waits until the server is gone, then reads the configuration again,
// as a server starting now would. A configuration that no longer reads is
// logged, and the server's is kept: its tasks must not be stranded by a
// typo in config.json.
func standBy() (config, error) {
	pipe := bufio.NewReader(os.NewFile(standbyFD, "server"))
	var started config
	line, err := pipe.ReadBytes('\n')
	if err != nil {
		return started, fmt.Errorf("follow --standby: read the server's configuration: %w (it is started by a server)", err)
	}
	if err := json.Unmarshal(line, &started); err != nil {
		return started, fmt.Errorf("follow --standby: read the server's configuration: %w", err)
	}
	_, _ = io.Copy(io.Discard, pipe)
	cfg, err := loadConfig(os.Getenv)
	if err != nil {
		if logger, closeLog, lerr := openServerLog(started.Home, "codex-connector follow", true); lerr == nil {
			logger.Printf("the configuration no longer reads (%v); following with the one the server started with", err)
			closeLog()
		}
		return started, nil
	}
	return cfg, nil
}

// follow runs the home's live tasks to their end while no server runs.
func follow(cfg config, docker *client.Client) error {
	if !cfg.FollowAfterExit {
		return nil // turned off since the server started
	}
	if _, err := os.Stat(cfg.Home); err != nil {
		return nil // the home is gone: nothing to follow
	}
	logger, closeLog, err := openServerLog(cfg.Home, "codex-connector follow", true)
	if err != nil {
		return err
	}
	defer closeLog()
	lock, err := openLock(cfg.Home, followerLock)
	if err != nil {
		return err
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); errors.Is(err, syscall.EWOULDBLOCK) {
		// Another follower runs: it may not know yet that the tasks of the
		// server that just ended are free. Wake it, then wait for it to end
		// and look again.
		if err := runner.WakeHome(cfg.Home); err != nil {
			logger.Printf("%v", err)
		}
		logger.Printf("another follower runs on this home; waiting for it to end")
		err = flockRetry(lock, syscall.LOCK_EX)
	}
	if err != nil {
		return fmt.Errorf("become the follower of %s: %w", cfg.Home, err)
	}
	if _, err := os.Stat(cfg.Home); err != nil {
		return nil // gone while this process waited
	}
	st := store.New(filepath.Join(cfg.Home, "tasks.db"), cfg.LockTimeout)
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("find the codex-connector binary: %w", err)
	}
	lifetime, endLifetime := context.WithCancel(context.Background())
	defer endLifetime()
	r, err := runner.New(lifetime, runnerConfig(cfg, self), dockerbe.New(docker), st, logger.Printf)
	if err != nil {
		logger.Printf("%v", err)
		return err
	}
	pingDocker(lifetime, docker, logger)
	signals, stopSignals := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	defer stopSignals()

	f := &follower{home: cfg.Home, r: r, logf: logger.Printf, endLifetime: endLifetime, proxyIdle: cfg.ProxyIdle}
	tick := time.NewTicker(followEvery)
	defer tick.Stop()
	for {
		if done := f.look(); done {
			return nil
		}
		select {
		case <-signals.Done():
			logger.Printf("stopping on a signal; the tasks wait for the next server")
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
	// looks counts the looks since it began following; seen the looks in
	// a row that saw a server.
	looks, seen int
	// failingSince is when reading the records or the locks began to fail.
	failingSince time.Time
	// proxyIdle is how long it keeps the egress proxy once nothing is
	// live; idleSince is since when nothing is.
	proxyIdle time.Duration
	idleSince time.Time
}

// look decides, once, what the follower does now; done means it is to exit.
func (f *follower) look() (done bool) {
	if _, err := os.Stat(f.home); err != nil {
		f.logf("the data directory is gone (%v); stopping", err)
		f.handOver()
		return true
	}
	unlock, none, err := noServer(f.home)
	if err != nil {
		return f.failing(err)
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
	f.seen = 0
	if !f.r.Idle() {
		// It follows or runs a task: something is live, and the records
		// need no reading, which costs a pass over the whole history.
		unlock()
		f.failingSince = time.Time{}
		return f.lookedWhileFollowing()
	}
	live, err := f.r.Live()
	if err != nil {
		unlock()
		return f.failing(fmt.Errorf("count the live tasks: %w", err))
	}
	f.failingSince = time.Time{}
	if live == 0 && f.keepProxy() {
		unlock()
		return false
	}
	if live == 0 {
		// No server runs, and none starts while the lock is held: nothing
		// can become live, and nothing needs the proxy.
		ctx, cancel := context.WithTimeout(context.Background(), proxyRemoval)
		if err := f.r.RemoveProxy(ctx); err != nil {
			f.logf("remove the egress proxy: %v", err)
		}
		cancel()
		unlock()
		if f.following {
			f.logf("no task is live: stopping")
		}
		f.stop()
		return true
	}
	f.idleSince = time.Time{} // a task is live again: the next idle wait starts afresh
	unlock()
	if !f.following {
		f.following = true
		f.runDone = make(chan struct{})
		f.logf("no server runs on %s and %d tasks are live: following them", f.home, live)
		go func() {
			defer close(f.runDone)
			if err := f.r.Supervise(); err != nil {
				f.logf("%v", err)
			}
		}()
		return false
	}
	return f.lookedWhileFollowing()
}

// keepProxy says whether the follower, with nothing live, waits on with
// the egress proxy running: a one-shot client (the command line's run, an
// MCP session of one call) that comes within proxyIdle finds it serving,
// instead of paying for a new one. A server that starts meanwhile makes
// the follower hand over and exit, leaving the proxy to it.
func (f *follower) keepProxy() bool {
	if f.proxyIdle <= 0 {
		return false
	}
	if f.idleSince.IsZero() {
		ctx, cancel := context.WithTimeout(context.Background(), proxyRemoval)
		running, err := f.r.ProxyRunning(ctx)
		cancel()
		if err != nil || !running {
			return false // nothing to keep, or no telling: remove it as before
		}
		f.idleSince = time.Now()
		f.logf("no task is live: keeping the egress proxy for %s for the next task", f.proxyIdle)
	}
	return time.Since(f.idleSince) < f.proxyIdle
}

// lookedWhileFollowing ends a look that goes on following. In its first
// looks it has the runner reconcile again: a server that died a moment ago
// may not yet have looked gone to the first reconcile.
func (f *follower) lookedWhileFollowing() (done bool) {
	if f.looks++; f.looks <= freshLooks {
		f.r.Wake()
	}
	return false
}

// failing logs a failure to read the records or the locks once, and gives
// up after giveUpAfter of them in a row.
func (f *follower) failing(err error) (done bool) {
	now := time.Now()
	if f.failingSince.IsZero() {
		f.failingSince = now
		f.logf("%v; trying again every %s", err, followEvery)
		return false
	}
	if now.Sub(f.failingSince) < giveUpAfter {
		return false
	}
	f.logf("%v, for %s now; stopping: the next server takes the tasks over and says what is wrong", err, giveUpAfter)
	f.handOver()
	return true
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
	if _, err := f.r.HandOver(); err != nil {
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
