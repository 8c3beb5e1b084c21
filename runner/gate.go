package runner

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io/fs"
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
func (r *Runner) gateOpened(ctx context.Context, id string, st backend.State) bool {
	cmd := st.Command
	for i := 0; i+1 < len(cmd); i++ {
		if cmd[i] == "--gate" {
			name := filepath.Base(cmd[i+1])
			if !strings.HasPrefix(name, "gate-") {
				return true
			}
			// Only a gate file that is not there is a gate never opened.
			// Any other answer (the task took the search bit off its state
			// directory, say) means the task ran: nothing of it runs
			// before the gate opens. Counted as closed, it would run again.
			files, err := r.files(id)
			if err == nil {
				_, err = files.Stat(ctx, name)
			}
			return !errors.Is(err, fs.ErrNotExist)
		}
		if cmd[i] == "--" {
			break
		}
	}
	return true
}
