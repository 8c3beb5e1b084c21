package runner

import (
	"crypto/rand"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"

	"github.com/codex-connector/codex-connector/backend"
)

// newGate returns the file name of a launch's gate: unique per launch, so a
// gate left by an earlier launch of the same task opens nothing.
func newGate() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return "gate-" + hex.EncodeToString(b[:])
}

// gateBinary is the static codex-connector binary that holds the gate (and
// bridges a restricted task's egress) inside a task's container.
func (r *Runner) gateBinary() (string, error) {
	if _, err := r.helpers.ImageRef(); err != nil {
		return "", err
	}
	return r.cfg.HelperBinary, nil
}

// gateOpened says whether a container's gate, if it has one, was opened:
// the gate's name is in the container's command, its file in the task's
// state directory. A container without a gate counts as opened.
func (r *Runner) gateOpened(id string, st backend.State) bool {
	cmd := st.Command
	for i := 0; i+1 < len(cmd); i++ {
		if cmd[i] == "--gate" {
			name := filepath.Base(cmd[i+1])
			if !strings.HasPrefix(name, "gate-") {
				return true
			}
			// A plain lstat: name is one component, the state directory
			// the server's, and an opened gate must count as opened even
			// when the task took the read bit off its state directory.
			_, err := os.Lstat(filepath.Join(r.stateDir(id), name))
			return err == nil
		}
		if cmd[i] == "--" {
			break
		}
	}
	return true
}
