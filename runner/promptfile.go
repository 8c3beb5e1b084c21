package runner

import (
	"context"
	"fmt"

	"github.com/codex-connector/codex-connector/store"
)

// The prompt never goes on a command line: a process's arguments are
// readable by every user of the machine (ps, /proc/PID/cmdline), and a
// container's processes are processes of the host. So Codex gets "-" for
// its prompt, which makes it read the prompt from stdin, and the wrapper in
// front of it (the bridge or `gated`) opens the prompt file of the task's
// state directory as that stdin. The state directory is the task user's,
// mode 0700 below a data directory of mode 0700: no other user reads it.

// promptFile is the prompt's file name in the state directory.
const promptFile = "prompt"

// stdinPrompt is the prompt argument that makes `codex exec` (and its
// resume and review) read the prompt from stdin.
const stdinPrompt = "-"

// promptText is what Codex reads as its prompt; "" when it takes none (a
// review with no focus names only its target).
func promptText(t *store.Task) string {
	if t.Review != nil {
		return reviewInstructions(t.Review)
	}
	return t.Prompt
}

// writePrompt writes the task's prompt into its state directory afresh,
// owned by the task's user and readable by it alone. Whatever an earlier
// attempt's container left in its place is removed, never followed.
func (r *Runner) writePrompt(ctx context.Context, t *store.Task) error {
	files, err := r.files(t.ID)
	if err == nil {
		err = files.WriteFile(ctx, promptFile, []byte(promptText(t)), ownerOf(t.User))
	}
	if err != nil {
		return fmt.Errorf("write the prompt of task %s into its state directory: %w", t.ID, err)
	}
	return nil
}
