package view

import (
	"strings"
	"testing"
	"time"

	"github.com/codex-connector/codex-connector/runner"
	"github.com/codex-connector/codex-connector/store"
)

// fixedSource is a Source with no other records and nothing followed.
type fixedSource struct{}

func (fixedSource) Get(id string) (*store.Task, error)      { return nil, store.ErrNotFound }
func (fixedSource) Progress(string) (runner.Progress, bool) { return runner.Progress{}, false }
func (fixedSource) LogPath(id string) string                { return "/logs/" + id + ".log" }
func (fixedSource) ResultPath(id string) string             { return "/logs/" + id + ".result" }

// A task launched on an engine that dropped limits says so, in its
// structure and its text; one on an engine that holds them says nothing
// new.
func TestTheEngineIsShownWhenItGaveLess(t *testing.T) {
	base := store.Task{ID: "20261207-120000-abcdef", Prompt: "say hi", Status: store.Completed, Sandbox: "read-only", CreatedAt: time.Now()}
	plain := base
	plain.Engine = &store.Engine{Name: "Docker 27.0.1 (API 1.46), rootful, cgroup v2"}
	if text := Of(fixedSource{}, &plain, "", MCP).Text(); strings.Contains(text, "Engine:") {
		t.Errorf("an engine that holds every limit is shown:\n%s", text)
	}
	dropped := base
	dropped.Engine = &store.Engine{Name: "Podman 4.3.1 (API 1.41), rootless, cgroup v1", Unenforced: []string{"memory", "cpu", "pids"}, Warnings: []string{"Your kernel does not support swap limit capabilities"}}
	v := Of(fixedSource{}, &dropped, "", MCP)
	if v.Engine == nil || len(v.Engine.Unenforced) != 3 || v.Engine.Name != dropped.Engine.Name {
		t.Fatalf("structured: %+v", v.Engine)
	}
	text := v.Text()
	for _, want := range []string{"Engine: Podman 4.3.1 (API 1.41), rootless, cgroup v1; limits NOT enforced: memory, cpu, pids (accepted by limits.acceptUnenforced)",
		"Engine warning: Your kernel does not support swap limit capabilities"} {
		if !strings.Contains(text, want) {
			t.Errorf("the text lacks %q:\n%s", want, text)
		}
	}
}
