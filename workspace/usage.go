package workspace

import (
	"fmt"

	"github.com/codex-connector/codex-connector/internal/hostfs"
)

// measureRepo returns the work tree's disk use for the base of the cap,
// or an error that says why it cannot be capped.
func measureRepo(root string) (int64, error) {
	used, err := hostfs.TreeUsage(root, 0)
	if err != nil {
		return -1, fmt.Errorf("the work tree cannot be measured against limits.repoMB: %w — make it readable to codex-connector, or run the task read-only", err)
	}
	return used, nil
}
