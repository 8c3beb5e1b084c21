package docker

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
)

// gVisor (runsc) runs a task on a kernel of its own, the sentry, in a
// sandbox process: what a task's process could do to the host kernel it
// does to the sentry. Three things differ from runc, and each is handled
// here:
//   - the process the engine reports for a run is the sandbox's, whose
//     mount table holds none of the run's binds; the binds are made in
//     the mount namespace of its sibling, the gofer, which serves the
//     run's files to the sentry. The gate reads them there (goferOf).
//   - a run reaches a unix socket bound in from the host only when runsc
//     is told it may (--host-uds=open): the egress proxy's socket is one.
//   - the run sees its cgroup limits only in part (the sentry shows no
//     pids limit); the host's cgroup of the sandbox holds them (the probe
//     reads them there).

// isGVisor says whether a registered runtime is gVisor's runsc.
func isGVisor(rt Runtime) bool {
	return strings.HasPrefix(filepath.Base(rt.Path), "runsc")
}

// checkRuntime says whether tasks can run under runtime ("" the engine's
// default) on the engine d: it is registered, and runsc is registered with
// the flags tasks need.
func checkRuntime(d Description, runtime string) error {
	name := runtime
	if name == "" {
		name = d.DefaultRuntime
	}
	rt, ok := d.Runtimes[name]
	if !ok {
		if runtime == "" || len(d.Runtimes) == 0 {
			return nil // the engine's default, or an engine that lists none: its create says
		}
		names := make([]string, 0, len(d.Runtimes))
		for n := range d.Runtimes {
			names = append(names, n)
		}
		slices.Sort(names)
		return fmt.Errorf("the engine has no runtime %q (it has %s) — register it with the engine (\"runtimes\" in its daemon.json), or name one it has in config.json (images.runtime, images.repos[].runtime)", runtime, strings.Join(names, ", "))
	}
	if isGVisor(rt) && !hostUDSOpen(rt.Args) {
		return fmt.Errorf("the engine's runtime %q is runsc without \"--host-uds=open\" in its runtimeArgs: a task could not reach the egress proxy's socket, which is bound in from the host — add it to that runtime in the engine's daemon.json and restart the engine", name)
	}
	return nil
}

// hostUDSOpen says whether runsc's flags let a run connect to unix
// sockets bound in from the host. As with Go's flag package, the last
// value given wins.
func hostUDSOpen(args []string) bool {
	open := false
	for i, a := range args {
		a = "--" + strings.TrimLeft(a, "-")
		name, value, hasValue := strings.Cut(a, "=")
		switch name {
		case "--host-uds":
			if !hasValue && i+1 < len(args) {
				value = args[i+1]
			}
			open = value == "open" || value == "all"
		case "--fsgofer-host-uds": // the older name of --host-uds=all
			on, err := strconv.ParseBool(value)
			open = !hasValue || err == nil && on
		}
	}
	return open
}

// sandboxParent checks that process pid is a runsc sandbox as a runtime
// started it, a child of a containerd shim (which runs one container),
// and returns that parent. A sandbox whose shim died (reparented to pid
// 1) proves nothing of whose it is.
func sandboxParent(pid int) (status, error) {
	if args := cmdline(pid); len(args) == 0 || args[0] != "runsc-sandbox" {
		return status{}, fmt.Errorf("the run's process %d is not a runsc sandbox, though its runtime is gVisor's", pid)
	}
	sandbox, err := procStatus(pid)
	if err != nil {
		return status{}, fmt.Errorf("look at the runsc sandbox of the run: %w", err)
	}
	exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", sandbox.ppid))
	if sandbox.ppid <= 1 || err != nil || !strings.HasPrefix(filepath.Base(exe), "containerd-shim") {
		return status{}, fmt.Errorf("the run's runsc sandbox (process %d) is not a child of a containerd shim (its parent is %d, %q)", pid, sandbox.ppid, exe)
	}
	parent, err := procStatus(sandbox.ppid)
	if err != nil {
		return status{}, fmt.Errorf("look at the containerd shim of the run: %w", err)
	}
	parent.pid = sandbox.ppid
	return parent, nil
}

// goferOf finds the gVisor gofer of the run whose sandbox is process pid:
// the process that made the run's binds and serves its files. It is the
// sandbox's sibling (a child of the same containerd shim), runs the same
// runsc binary as the shim's user (the sandbox itself may run as nobody),
// and names the container in its command line. More than one such
// process, or none, is an error.
func goferOf(pid int, containerID string) (int, error) {
	shim, err := sandboxParent(pid)
	if err != nil {
		return 0, err
	}
	var exe syscall.Stat_t
	if err := syscall.Stat(fmt.Sprintf("/proc/%d/exe", pid), &exe); err != nil {
		return 0, fmt.Errorf("look at the runsc sandbox of the run: %w", err)
	}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return 0, err
	}
	var found []int
	var nearly []string
	for _, e := range entries {
		p, err := strconv.Atoi(e.Name())
		if err != nil || p == pid {
			continue
		}
		a := cmdline(p)
		if len(a) == 0 || a[0] != "runsc-gofer" || !slices.ContainsFunc(a, func(s string) bool { return strings.Contains(s, containerID) }) {
			continue
		}
		st, err := procStatus(p)
		var other syscall.Stat_t
		switch {
		case err != nil:
			nearly = append(nearly, fmt.Sprintf("%d: %v", p, err))
		case st.ppid != shim.pid:
			nearly = append(nearly, fmt.Sprintf("%d: a child of %d, not of the shim %d", p, st.ppid, shim.pid))
		case st.uid != shim.uid:
			nearly = append(nearly, fmt.Sprintf("%d: runs as uid %s, not as the shim's %s", p, st.uid, shim.uid))
		case syscall.Stat(fmt.Sprintf("/proc/%d/exe", p), &other) != nil || other.Dev != exe.Dev || other.Ino != exe.Ino:
			nearly = append(nearly, fmt.Sprintf("%d: not the sandbox's runsc binary", p))
		default:
			found = append(found, p)
		}
	}
	switch len(found) {
	case 1:
		return found[0], nil
	case 0:
		if len(nearly) > 0 {
			return 0, fmt.Errorf("the run's gVisor gofer, which holds its binds, was not found beside its sandbox (process %d); near misses: %s", pid, strings.Join(nearly, "; "))
		}
		return 0, fmt.Errorf("the run's gVisor gofer, which holds its binds, was not found beside its sandbox (process %d)", pid)
	default:
		return 0, fmt.Errorf("more than one gVisor gofer claims the run (processes %v)", found)
	}
}

// cmdline is the command line of process pid, nil when it cannot be read.
func cmdline(pid int) []string {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil || len(data) == 0 {
		return nil
	}
	return strings.Split(string(bytes.TrimRight(data, "\x00")), "\x00")
}

// status is what the gofer search needs of /proc/<pid>/status.
type status struct {
	pid, ppid int
	uid       string
}

func procStatus(pid int) (status, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return status{}, err
	}
	var st status
	for _, line := range strings.Split(string(data), "\n") {
		k, v, _ := strings.Cut(line, ":")
		f := strings.Fields(v)
		switch {
		case k == "PPid" && len(f) > 0:
			st.ppid, _ = strconv.Atoi(f[0])
		case k == "Uid" && len(f) > 1:
			st.uid = f[1] // the effective uid
		}
	}
	return st, nil
}
