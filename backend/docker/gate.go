package docker

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"

	"github.com/codex-connector/codex-connector/backend"
)

// The launch checks every bind source, but the engine binds them a moment
// later, and a task running beside this one on the same repository, or on
// one that holds it, can swap a checked directory for a symlink in between.
// So every task's container starts gated: the bridge (or `gated`, at
// danger-full-access) holds Codex back until the server has read the
// container's mount table, looked through /proc/<pid>/root at what the
// engine really bound at each target, compared device and inode with what
// it checked, and then made the gate file. A mismatch removes the container
// before anything of the task ran. Under gVisor the mounts are read in
// the gofer's mount namespace (gvisor.go): the sentry sees the run's
// files only through it.

// OpenGate compares what is bound in the started container with what was
// checked, and opens the gate when they agree.
func (h *handle) OpenGate(ctx context.Context) error {
	if h.gate == nil {
		return nil
	}
	info, err := h.b.eng.ContainerInspect(ctx, h.ref.Key())
	if err != nil {
		return Error("inspect the started container", err)
	}
	if info.State == nil || info.State.Pid == 0 {
		return fmt.Errorf("the container exited before its mounts could be confirmed — see the log, and run the task again")
	}
	pid := info.State.Pid
	// Under gVisor the reported process is the sandbox, whose mounts are
	// not the run's: its gofer made the binds and serves them. Which it is
	// comes from the runtime the container was made with, never from what
	// its process says it is.
	runtime := ""
	if info.HostConfig != nil {
		runtime = info.HostConfig.Runtime
	}
	if h.b.runtimeIsGVisor(runtime) {
		gofer, err := goferOf(pid, info.ID)
		if err != nil {
			return fmt.Errorf("%w: the container's mounts cannot be confirmed under gVisor: %v — nothing of the task ran; run it again, and if it fails again, see the engine's log (codex-connector must run as root or as the engine's user to read the gofer's mounts)", backend.ErrMountChanged, err)
		}
		pid = gofer
	}
	points, err := mountPoints(fmt.Sprintf("/proc/%d/mountinfo", pid))
	if err != nil {
		return fmt.Errorf("%w: the container's mounts cannot be read (%v) — run the task again; if it fails again, run codex-connector as root or as the repository's owner", backend.ErrMountChanged, err)
	}
	root := fmt.Sprintf("/proc/%d/root", pid)
	for _, b := range h.gate.Bound {
		// The engine resolves a target through symlinks it finds inside
		// the container: a target swapped for one is bound elsewhere, and
		// its path is then no mount point at all.
		if !points[b.Path] {
			return fmt.Errorf("%w: nothing is bound at %s in the container (a symlink on its path sent the bind elsewhere: did another task on this repository make one?) — nothing of the task ran; run it again", backend.ErrMountChanged, b.Path)
		}
		var st syscall.Stat_t
		if err := syscall.Lstat(root+b.Path, &st); err != nil {
			return fmt.Errorf("%w: %s cannot be looked at inside the container (%v) — run the task again; if it fails again, run codex-connector as root or as the repository's owner", backend.ErrMountChanged, b.Path, err)
		}
		if uint64(st.Dev) != b.Dev || st.Ino != b.Ino {
			return fmt.Errorf("%w: what the engine bound at %s is not what was checked (did another task on this repository move it, or make it a symlink?) — nothing of the task ran; run it again", backend.ErrMountChanged, b.Path)
		}
	}
	// O_EXCL: never through something already there.
	f, err := os.OpenFile(h.gate.File, os.O_CREATE|os.O_EXCL|os.O_WRONLY|syscall.O_NOFOLLOW, 0o444)
	if err != nil {
		return fmt.Errorf("open the gate of the container: %w", err)
	}
	return f.Close()
}

// mountRefused says the engine itself could not bind a mount source as it
// started the container: runc refuses one that turned into a symlink
// ("possibly malicious path detected") or fails to resolve it. That is the
// task's trouble, not the engine's, and worth no retry.
func mountRefused(err error) bool {
	return err != nil && (strings.Contains(err.Error(), "possibly malicious path detected") || strings.Contains(err.Error(), "error mounting \""))
}

// mountPoints reads the mount points of a process's mount namespace from
// its mountinfo (the fifth field, with the kernel's octal escapes undone).
func mountPoints(path string) (map[string]bool, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	points := map[string]bool{}
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) < 5 {
			continue
		}
		points[unescapeMountinfo(f[4])] = true
	}
	return points, nil
}

// unescapeMountinfo undoes the \ooo escapes mountinfo uses for space, tab,
// newline and backslash in paths.
func unescapeMountinfo(s string) string {
	if !strings.Contains(s, "\\") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// runtimeIsGVisor says whether the runtime a container was made with ("",
// or the engine's default by name) is registered as gVisor's runsc, as
// the engine's look described it.
func (b *Backend) runtimeIsGVisor(name string) bool {
	b.factsMu.Lock()
	defer b.factsMu.Unlock()
	for _, f := range b.facts {
		return isGVisor(f.Description.runtime(name))
	}
	return false
}
