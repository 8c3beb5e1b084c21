package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/codex-connector/codex-connector/images/imagestest"
	"github.com/codex-connector/codex-connector/runner"
	bolt "go.etcd.io/bbolt"
)

// A database held by another process (a stuck server, a backup tool) makes
// calls fail after the lock timeout with a message, never hang the server;
// once the hold ends, the same server works and has lost nothing.
func TestLockedDatabaseIsAToolErrorNotAHang(t *testing.T) {
	s := startServer(t, "CODEX_CONNECTOR_LOCK_TIMEOUT=1s")
	res := s.call(t, "codex_agent", map[string]any{"task": "say before the lock", "workingDirectory": imagestest.Repo(t)})
	if res.IsError {
		t.Fatalf("task before the lock: %s", text(res))
	}
	id := structured(t, res)["taskId"].(string)

	holder, err := bolt.Open(filepath.Join(s.home, "tasks.db"), 0o600, &bolt.Options{Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	for _, call := range []struct {
		tool string
		args map[string]any
	}{
		{"codex_status", map[string]any{"taskId": id}},
		{"codex_tasks", map[string]any{}},
		{"codex_agent", map[string]any{"task": "say during the lock", "workingDirectory": imagestest.Repo(t), "async": true}},
		{"codex_cancel", map[string]any{"taskId": id}},
	} {
		res := s.call(t, call.tool, call.args) // call fails the test after 2 minutes
		if !res.IsError || !strings.Contains(text(res), "locked by another process") {
			t.Errorf("%s while the database is locked: isError=%v %s", call.tool, res.IsError, text(res))
		}
	}
	holder.Close()

	st := structured(t, s.call(t, "codex_status", map[string]any{"taskId": id}))
	if st["status"] != "completed" || st["result"] != "before the lock" {
		t.Fatalf("after the lock: %v", st)
	}
	res = s.call(t, "codex_agent", map[string]any{"task": "say after the lock", "workingDirectory": imagestest.Repo(t)})
	if res.IsError || structured(t, res)["result"] != "after the lock" {
		t.Fatalf("task after the lock: %s", text(res))
	}
}

// A damaged database file is never reset: the server starts, every call says
// how to get out (move the file aside), and the file stays as it was. After
// the user moves it, the same server works: each call tries again.
func TestDamagedDatabaseSaysHowToGetOut(t *testing.T) {
	home := t.TempDir()
	db := filepath.Join(home, "tasks.db")
	damaged := []byte(strings.Repeat("not a bbolt file ", 1000))
	if err := os.WriteFile(db, damaged, 0o600); err != nil {
		t.Fatal(err)
	}
	s := startServerAt(t, home)
	for _, call := range []struct {
		tool string
		args map[string]any
	}{
		{"codex_tasks", map[string]any{}},
		{"codex_status", map[string]any{"taskId": "20261125-061000-abcdef"}},
		{"codex_agent", map[string]any{"task": "say hi", "workingDirectory": imagestest.Repo(t)}},
	} {
		res := s.call(t, call.tool, call.args)
		if !res.IsError || !strings.Contains(text(res), "move it aside (mv "+db) {
			t.Errorf("%s with a damaged database: isError=%v %s", call.tool, res.IsError, text(res))
		}
	}
	if got, _ := os.ReadFile(db); string(got) != string(damaged) {
		t.Fatal("the damaged database was changed")
	}
	check := exec.Command(binary(t), "check")
	check.Env = append(os.Environ(), "CODEX_CONNECTOR_HOME="+home, "CODEX_CONNECTOR_IMAGE="+imagestest.FakeCodex(t), "OPENAI_API_KEY=sk-test")
	if out, err := check.CombinedOutput(); err == nil || !strings.Contains(string(out), "move it aside") {
		t.Errorf("check with a damaged database: %v\n%s", err, out)
	}

	if err := os.Rename(db, db+".bad"); err != nil {
		t.Fatal(err)
	}
	res := s.call(t, "codex_agent", map[string]any{"task": "say fresh start", "workingDirectory": imagestest.Repo(t)})
	if res.IsError || structured(t, res)["result"] != "fresh start" {
		t.Fatalf("after moving the file aside: %s", text(res))
	}
}

// check, run as a user would: it fails, saying what to do, while Codex has
// no credentials, and says how the key reaches Codex once there is one,
// without printing it.
func TestCheckSaysHowCredentialsReachCodex(t *testing.T) {
	home := t.TempDir()
	// check (doctor) starts the home's egress proxy.
	t.Cleanup(func() { exec.Command("docker", "rm", "-f", runner.ProxyName(home)).Run() })
	run := func(env ...string) (string, error) {
		check := exec.Command(binary(t), "check")
		check.Env = append(os.Environ(), append([]string{"CODEX_CONNECTOR_HOME=" + home, "CODEX_CONNECTOR_IMAGE=" + imagestest.FakeCodex(t),
			"CODEX_HOME=" + filepath.Join(home, "no-login"), "OPENAI_API_KEY=", "CODEX_API_KEY="}, env...)...)
		out, err := check.CombinedOutput()
		return string(out), err
	}
	out, err := run()
	if err == nil || !strings.Contains(out, "FAIL  credentials none found\n") || !strings.Contains(out, "fix: set OPENAI_API_KEY") || strings.Contains(out, "ready:") {
		t.Errorf("check without credentials: %v\n%s", err, out)
	}
	out, err = run("OPENAI_API_KEY=sk-check-secret")
	if err != nil || !strings.Contains(out, "model provider openai (https://api.openai.com/v1) through the egress proxy") || !strings.Contains(out, "ready:") {
		t.Errorf("check with a key: %v\n%s", err, out)
	}
	if strings.Contains(out, "sk-check-secret") {
		t.Errorf("check printed the key:\n%s", out)
	}
}
