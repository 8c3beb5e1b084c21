package runner

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/codex-connector/codex-connector/workspace"
	"github.com/docker/docker/api/types/container"
)

// The launch checks every bind source, but the engine binds them a moment
// later, and a task running beside this one on the same repository, or on
// one that holds it, can swap a checked directory for a symlink in between.
// So every task's container starts gated: the bridge (or `gated`, at
// danger-full-access) holds Codex back until the server has read the
// container's mount table, looked through /proc/<pid>/root at what the
// engine really bound at each target, compared device and inode with what
// it checked, and then made the gate file. A mismatch removes the container
// before anything of the task ran.

// errMountChanged marks a launch whose mounts were not what was checked.
var errMountChanged = errors.New("a mount source changed between the check and the start")

// newGate returns the file name of a launch's gate: unique per launch, so a
// gate left by an earlier launch of the same task opens nothing.
func newGate() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return "gate-" + hex.EncodeToString(b[:])
}

// confirmMounts compares what is bound in the started container with what
// was checked, and opens the gate when they agree.
func (r *Runner) confirmMounts(ctx context.Context, containerID string, bound []workspace.Bound, stateDir, gate string) error {
	info, err := r.engine.ContainerInspect(ctx, containerID)
	if err != nil {
		return engineError("inspect the started container", err)
	}
	if info.State == nil || info.State.Pid == 0 {
		return fmt.Errorf("the container exited before its mounts could be confirmed — see the log, and run the task again")
	}
	points, err := mountPoints(fmt.Sprintf("/proc/%d/mountinfo", info.State.Pid))
	if err != nil {
		return fmt.Errorf("%w: the container's mounts cannot be read (%v) — run the task again; if it fails again, run codex-connector as root or as the repository's owner", errMountChanged, err)
	}
	root := fmt.Sprintf("/proc/%d/root", info.State.Pid)
	for _, b := range bound {
		// The engine resolves a target through symlinks it finds inside
		// the container: a target swapped for one is bound elsewhere, and
		// its path is then no mount point at all.
		if !points[b.Path] {
			return fmt.Errorf("%w: nothing is bound at %s in the container (a symlink on its path sent the bind elsewhere: did another task on this repository make one?) — nothing of the task ran; run it again", errMountChanged, b.Path)
		}
		var st syscall.Stat_t
		if err := syscall.Lstat(root+b.Path, &st); err != nil {
			return fmt.Errorf("%w: %s cannot be looked at inside the container (%v) — run the task again; if it fails again, run codex-connector as root or as the repository's owner", errMountChanged, b.Path, err)
		}
		if uint64(st.Dev) != b.Dev || st.Ino != b.Ino {
			return fmt.Errorf("%w: what the engine bound at %s is not what was checked (did another task on this repository move it, or make it a symlink?) — nothing of the task ran; run it again", errMountChanged, b.Path)
		}
	}
	// O_EXCL: never through something already there.
	f, err := os.OpenFile(filepath.Join(stateDir, gate), os.O_CREATE|os.O_EXCL|os.O_WRONLY|syscall.O_NOFOLLOW, 0o444)
	if err != nil {
		return fmt.Errorf("open the gate of the container: %w", err)
	}
	return f.Close()
}

// gateBinary is the static codex-connector binary that holds the gate (and
// bridges a restricted task's egress) inside a task's container.
func (r *Runner) gateBinary() (string, error) {
	r.proxyMu.Lock()
	defer r.proxyMu.Unlock()
	if _, err := r.proxyRefLocked(); err != nil {
		return "", err
	}
	return r.cfg.HelperBinary, nil
}

// gateOpened says whether a container's gate, if it has one, was opened:
// the gate's name is in the container's command, its file in the task's
// state directory. A container without a gate counts as opened.
func (r *Runner) gateOpened(id string, info container.InspectResponse) bool {
	if info.Config == nil {
		return true
	}
	cmd := info.Config.Cmd
	for i := 0; i+1 < len(cmd); i++ {
		if cmd[i] == "--gate" {
			name := filepath.Base(cmd[i+1])
			if !strings.HasPrefix(name, "gate-") {
				return true
			}
			_, err := os.Lstat(filepath.Join(r.stateDir(id), name))
			return err == nil
		}
		if cmd[i] == "--" {
			break
		}
	}
	return true
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
