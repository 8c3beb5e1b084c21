package runner

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/codex-connector/codex-connector/images/imagestest"
	"github.com/codex-connector/codex-connector/store"
)

// TestModelSideTroubleEndsWithOneClearReason: the real Codex against a
// model API that refuses, as OpenAI's does, on a usage limit, a quota and
// an unknown model. Each ends the task with its reason in one line.
func TestModelSideTroubleEndsWithOneClearReason(t *testing.T) {
	t.Parallel()
	for name, tt := range map[string]struct {
		turn imagestest.Turn
		want []string
	}{
		"a usage limit, with the reset time": {
			imagestest.Turn{Status: 429, Body: fmt.Sprintf(`{"error":{"type":"usage_limit_reached","message":"The usage limit has been reached","plan_type":"plus","resets_at":%d}}`, time.Now().Add(time.Hour).Unix())},
			[]string{UsageLimitReached + ": the usage limit of the account is reached; try again at ", "codex_reply with this task's id continues it"},
		},
		"an exceeded quota": {
			imagestest.Turn{Status: 429, Body: `{"error":{"message":"You exceeded your current quota, please check your plan and billing details.","type":"insufficient_quota","param":null,"code":"insufficient_quota"}}`},
			[]string{UsageLimitReached + ": the API key's quota is exceeded"},
		},
		"a model that does not exist": {
			imagestest.Turn{Status: 404, Body: `{"error":{"message":"The model ` + "`gpt-9`" + ` does not exist or you do not have access to it.","type":"invalid_request_error","param":null,"code":"model_not_found"}}`},
			[]string{"model not found: The model `gpt-9` does not exist", "choose another model"},
		},
	} {
		t.Run(name, func(t *testing.T) {
			model := imagestest.StartModelServer(t, imagestest.Engine(t), tt.turn, tt.turn, tt.turn, tt.turn, tt.turn, tt.turn)
			h := newHarness(t, codexConfig(t, model))
			task := h.startAndWait(t, Spec{Prompt: "hi", WorkingDirectory: newRepo(t), Sandbox: ReadOnly, Model: "gpt-5-codex", Timeout: 2 * time.Minute})
			if task.Status != store.Failed || strings.Contains(task.Error, "\n") {
				t.Fatalf("status %s, error %q", task.Status, task.Error)
			}
			for _, w := range tt.want {
				if !strings.Contains(task.Error, w) {
					t.Errorf("error %q lacks %q", task.Error, w)
				}
			}
		})
	}
}

// TestWhatRanIsRecordedWhenTheTaskIsKilled: a task cancelled while Codex
// runs a command still records the model and the Codex version.
func TestWhatRanIsRecordedWhenTheTaskIsKilled(t *testing.T) {
	t.Parallel()
	model := imagestest.StartModelServer(t, imagestest.Engine(t), imagestest.Turn{Command: "sleep 120"})
	h := newHarness(t, codexConfig(t, model))
	task, err := h.Start(context.Background(), Spec{Prompt: "wait a while", WorkingDirectory: newRepo(t), Sandbox: ReadOnly, Model: "gpt-5-codex", Effort: "low"})
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(time.Minute)
	for len(model.Requests()) == 0 && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	time.Sleep(time.Second) // the command starts
	task, err = h.Cancel(context.Background(), task.ID)
	if err != nil || task.Status != store.Cancelled {
		t.Fatalf("cancel: %v, %v", task, err)
	}
	if r := task.Ran; r == nil || r.CodexVersion != "0.169.0" || r.Model != "gpt-5-codex" || r.Effort != "low" || r.Provider != "mock" {
		t.Fatalf("ran %+v", task.Ran)
	}
}
