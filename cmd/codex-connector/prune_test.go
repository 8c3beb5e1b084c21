package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/codex-connector/codex-connector/images/imagestest"
	"github.com/codex-connector/codex-connector/store"
)

// `codex-connector prune AGE` removes what ended before AGE, now, beside a
// running server, and keeps the rest.
func TestPruneRemovesOldTasks(t *testing.T) {
	s := startServer(t)
	repo := imagestest.Repo(t)
	var ids []string
	for _, say := range []string{"say old", "say new"} {
		res := s.call(t, "codex_agent", map[string]any{"task": say, "workingDirectory": repo})
		ids = append(ids, structured(t, res)["taskId"].(string))
	}
	st := store.New(filepath.Join(s.home, "tasks.db"), 5*time.Second)
	if _, err := st.Update(ids[0], func(t *store.Task) error {
		t.FinishedAt = time.Now().Add(-31 * 24 * time.Hour)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	prune := exec.Command(binary(t), "prune", "30d")
	prune.Env = append(os.Environ(), "CODEX_CONNECTOR_HOME="+s.home)
	out, err := prune.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "removed 1 tasks") {
		t.Fatalf("prune: %v\n%s", err, out)
	}
	if res := s.call(t, "codex_status", map[string]any{"taskId": ids[0]}); !res.IsError || !strings.Contains(text(res), "no such task") {
		t.Errorf("the pruned task: %s", text(res))
	}
	if _, err := os.Stat(filepath.Join(s.home, "logs", ids[0]+".log")); !os.IsNotExist(err) {
		t.Errorf("the pruned task's log: %v", err)
	}
	if res := s.call(t, "codex_status", map[string]any{"taskId": ids[1]}); res.IsError || structured(t, res)["result"] != "new" {
		t.Errorf("the kept task: %s", text(res))
	}
}
