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
// server has confirmed what the engine bound into it (backend/docker/gate.go). In
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

// RunGated waits for the gate (if any), then becomes argv (exec): the
// task's command runs as if started directly, signals and exit code
// included. With stdin, that file is its standard input: the prompt, which
// no command line may carry.
func RunGated(gate, stdin string, argv []string) int {
	if gate != "" && !awaitGate(gate, gateWait, os.Stderr) {
		return 125
	}
	if len(argv) == 0 {
		fmt.Fprintln(os.Stderr, "codex-connector: no command to run")
		return 125
	}
	if stdin != "" {
		f, err := openStdin(stdin)
		if err != nil {
			fmt.Fprintf(os.Stderr, "codex-connector: %v\n", err)
			return 125
		}
		// Onto descriptor 0, without close-on-exec: the command's stdin.
		err = syscall.Dup3(int(f.Fd()), 0, 0)
		f.Close()
		if err != nil {
			fmt.Fprintf(os.Stderr, "codex-connector: give the prompt to %s as stdin: %v\n", argv[0], err)
			return 125
		}
	}
	path, err := exec.LookPath(argv[0])
	if err == nil {
		err = syscall.Exec(path, argv, os.Environ())
	}
	fmt.Fprintf(os.Stderr, "codex-connector: start %s: %v\n", argv[0], err)
	return 127
}

// openStdin opens the file a wrapper gives its command as stdin: a regular
// file, never through a symlink, never blocking on a pipe.
func openStdin(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK|syscall.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open the prompt: %w", err)
	}
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
		f.Close()
		return nil, fmt.Errorf("open the prompt: %s is not a regular file", path)
	}
	return f, nil
}
