package runner

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/codex-connector/codex-connector/backend"
	"github.com/codex-connector/codex-connector/backend/docker"
	"github.com/codex-connector/codex-connector/store"
)

func TestGateOpenedReadsTheGateFromTheCommand(t *testing.T) {
	r := &Runner{cfg: Config{Home: t.TempDir()}, backend: docker.New(nil)}
	id := "20261125-120000-abcdef"
	if err := os.MkdirAll(r.stateDir(id), 0o700); err != nil {
		t.Fatal(err)
	}
	p := policy{task: &store.Task{ID: id, Prompt: "say hi", Sandbox: ReadOnly}, gate: newGate()}
	held := backend.State{Command: p.command()}
	if r.gateOpened(context.Background(), id, held) {
		t.Fatal("a gate whose file does not exist counts as opened")
	}
	if err := os.WriteFile(filepath.Join(r.stateDir(id), p.gate), nil, 0o444); err != nil {
		t.Fatal(err)
	}
	if !r.gateOpened(context.Background(), id, held) {
		t.Fatal("an opened gate counts as closed")
	}
	ungated := policy{task: &store.Task{ID: id, Prompt: "say hi", Sandbox: DangerFullAccess}}
	if !r.gateOpened(context.Background(), id, backend.State{Command: ungated.command()}) {
		t.Fatal("a container without a gate counts as held")
	}
	// A prompt that mentions --gate is Codex's argument, not the bridge's.
	ungated.task.Prompt = "--gate gate-0000"
	if !r.gateOpened(context.Background(), id, backend.State{Command: ungated.command()}) {
		t.Fatal("the prompt was read as the bridge's flag")
	}
}
