package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/codex-connector/codex-connector/images/imagestest"
)

// The whole path a user takes: a model provider in config.json whose key is
// in the server's environment, the installed binary driven over stdio by the
// MCP SDK, the real Codex in its image. The scripted model server gets the
// key; the task, its log, the tool's answer and the server's log never do.
func TestRealCodexThroughTheServerKeepsTheKeyOnTheHost(t *testing.T) {
	model := imagestest.StartModelServer(t, imagestest.Engine(t),
		imagestest.Turn{Command: "env | grep -c '^" + imagestest.MockKeyEnv + "=codex-connector-placeholder-'; echo key-hunt-done"},
		imagestest.Turn{Message: "done through the route"},
	)
	home := t.TempDir()
	cfg, _ := json.Marshal(map[string]any{"codexConfig": model.CodexConfig()})
	if err := os.WriteFile(filepath.Join(home, "config.json"), cfg, 0o600); err != nil {
		t.Fatal(err)
	}
	s := startServerImage(t, home, imagestest.Codex(t), imagestest.MockKeyEnv+"="+model.Key)
	res := s.call(t, "codex_agent", map[string]any{"task": "look at your environment", "workingDirectory": imagestest.Repo(t),
		"sandbox": "workspace-write", "model": "gpt-5-codex", "timeoutMs": 120000})
	if res.IsError || structured(t, res)["result"] != "done through the route" {
		t.Fatalf("codex_agent: %s", text(res))
	}
	reqs := model.Requests()
	if len(reqs) != 2 {
		t.Fatalf("%d model requests", len(reqs))
	}
	second, _ := json.Marshal(reqs[1])
	if !strings.Contains(string(second), "key-hunt-done") || !strings.Contains(string(second), `1\n`) {
		t.Errorf("the command did not see its placeholder: %s", second)
	}
	for i, h := range model.Headers() {
		if h.Get("Authorization") != "Bearer "+model.Key {
			t.Errorf("request %d reached the model server without the key", i+1)
		}
	}
	taskID, _ := structured(t, res)["taskId"].(string)
	logData, _ := os.ReadFile(filepath.Join(home, "logs", taskID+".log"))
	serverLog, _ := os.ReadFile(filepath.Join(home, "server.log"))
	for what, data := range map[string]string{"the tool's answer": text(res), "the task's log": string(logData),
		"the server's log": string(serverLog), "the model's requests": string(second)} {
		if strings.Contains(data, model.Key) {
			t.Errorf("%s holds the key", what)
		}
	}
	if len(logData) == 0 || len(serverLog) == 0 {
		t.Errorf("nothing to look at: task log %d bytes, server log %d bytes", len(logData), len(serverLog))
	}
}
