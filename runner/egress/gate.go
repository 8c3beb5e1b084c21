package egress

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"syscall"
	"time"
)

// The gate: a task's container starts with its command held back until the
// server has confirmed what the engine bound into it (runner/gate.go). In
// restricted containers the bridge holds it; in danger-full-access ones,
// which have no bridge, RunGated does.

// gateWait is how long the bridge waits for the server's word on the
// mounts: the server checks them right after the start, but an engine
// under load can take seconds to answer its inspect.
const gateWait = 2 * time.Minute

func awaitGate(gate string, wait time.Duration, logw io.Writer) bool {
	deadline := time.Now().Add(wait)
	for {
		if _, err := os.Lstat(gate); err == nil {
			return true
		}
		if time.Now().After(deadline) {
			fmt.Fprintf(logw, "codex-connector: the server did not confirm this container's mounts within %s; Codex is not started — run the task again\n", wait)
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// RunGated waits for the gate, then becomes argv (exec): the task's command
// runs as if started directly, signals and exit code included.
func RunGated(gate string, argv []string) int {
	if !awaitGate(gate, gateWait, os.Stderr) {
		return 125
	}
	if len(argv) == 0 {
		fmt.Fprintln(os.Stderr, "codex-connector: no command to run")
		return 125
	}
	path, err := exec.LookPath(argv[0])
	if err == nil {
		err = syscall.Exec(path, argv, os.Environ())
	}
	fmt.Fprintf(os.Stderr, "codex-connector: start %s: %v\n", argv[0], err)
	return 127
}
