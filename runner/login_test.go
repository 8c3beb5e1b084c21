package runner

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/codex-connector/codex-connector/backend/docker"
	"github.com/codex-connector/codex-connector/internal/hostfs"
	"github.com/codex-connector/codex-connector/store"
	"github.com/docker/docker/client"
)

const chatGPTLogin = `{"OPENAI_API_KEY": "sk-never-in-a-task", "auth_mode": "chatgpt", "tokens": {"id_token": "idt-visible", "access_token": "at-visible", "refresh_token": "rt-never-in-a-task", "account_id": "acct-1", "other": "tok-never-in-a-task"}, "last_refresh": "2026-12-01T00:00:00Z", "personal_access_token": "pat-never-in-a-task", "agent_identity": {"agent_private_key": "priv-never-in-a-task"}}`

// A task reads its copy of a ChatGPT login: the access token is there (Codex
// needs it), the refresh token never is, and the user's file is neither
// mounted nor changed.
func TestChatGPTLoginReachesTasksWithoutItsRefreshToken(t *testing.T) {
	login := filepath.Join(t.TempDir(), "auth.json")
	if err := os.WriteFile(login, []byte(chatGPTLogin), 0o600); err != nil {
		t.Fatal(err)
	}
	var rec *createRecorder
	h := newHarnessOn(t, func(c *Config) { c.AuthFile = login },
		func(cli *client.Client) docker.Engine { rec = &createRecorder{Client: cli}; return rec })
	for _, level := range SandboxLevels {
		task := h.startAndWait(t, Spec{Prompt: "read /codex-connector/codex-home/auth.json; say done", WorkingDirectory: newRepo(t), Sandbox: level, Timeout: time.Minute})
		log := readFile(t, h.LogPath(task.ID))
		if task.Status != store.Completed {
			t.Fatalf("%s: status %s (%s)\n%s", level, task.Status, task.Error, log)
		}
		for _, want := range []string{`"access_token":"at-visible"`, `"refresh_token":"` + placeholderPrefix, `"account_id":"acct-1"`, `"last_refresh":"2026-12-01T00:00:00Z"`} {
			if !strings.Contains(log, want) {
				t.Errorf("%s: the task's copy lacks %s:\n%s", level, want, log)
			}
		}
		if strings.Contains(log, "never-in-a-task") {
			t.Errorf("%s: the task read a secret of the login besides its access token:\n%s", level, log)
		}
	}
	if strings.Contains(rec.all(), login) {
		t.Error("the user's login file is mounted into a task")
	}
	if got, _ := os.ReadFile(login); string(got) != chatGPTLogin {
		t.Errorf("the user's login changed: %s", got)
	}
}

// What a task left where its login copy goes is replaced, never followed.
func TestLoginCopyReplacesWhatATaskPlanted(t *testing.T) {
	base := t.TempDir()
	outside := filepath.Join(t.TempDir(), "victim")
	os.WriteFile(outside, []byte("keep me"), 0o600)
	dir := filepath.Join(base, "task", "codex-home")
	os.MkdirAll(dir, 0o700)
	for name, plant := range map[string]func(string) error{
		"a symlink": func(p string) error { return os.Symlink(outside, p) },
		"a directory": func(p string) error {
			os.Mkdir(p, 0o700)
			return os.WriteFile(filepath.Join(p, "x"), []byte("x"), 0o600)
		},
		"a file": func(p string) error { return os.WriteFile(p, []byte("old"), 0o644) },
	} {
		path := filepath.Join(dir, "auth.json")
		os.RemoveAll(path)
		if err := plant(path); err != nil {
			t.Fatal(err)
		}
		if err := hostfs.WriteNewBelow(base, "task/codex-home/auth.json", []byte("new"), 0o600, false, 0, 0); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		fi, err := os.Lstat(path)
		if err != nil || !fi.Mode().IsRegular() || fi.Mode().Perm() != 0o600 || readFile(t, path) != "new" {
			t.Errorf("%s: %v %v", name, fi, err)
		}
		if readFile(t, outside) != "keep me" {
			t.Fatalf("%s: written through", name)
		}
	}
	// A directory on the way that a task made a symlink is refused.
	os.RemoveAll(dir)
	os.Symlink(t.TempDir(), dir)
	if err := hostfs.WriteNewBelow(base, "task/codex-home/auth.json", []byte("new"), 0o600, false, 0, 0); err == nil {
		t.Error("wrote through a symlinked directory")
	}
}
