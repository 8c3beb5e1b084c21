package runner

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/codex-connector/codex-connector/internal/hostfs/hostfstest"
	"github.com/codex-connector/codex-connector/store"
)

// uniquePrompt is a string no process of the machine has in its arguments
// unless this test put it there.
func uniquePrompt(t *testing.T) string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return "PROMPT-" + hex.EncodeToString(b[:])
}

// descendants lists pid and every live process below it on the host.
func descendants(pid int) []int {
	children := map[int][]int{}
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		f := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+1:]))
		if len(f) < 2 {
			continue
		}
		if ppid, err := strconv.Atoi(f[1]); err == nil {
			children[ppid] = append(children[ppid], p)
		}
	}
	out := []int{pid}
	for i := 0; i < len(out); i++ {
		out = append(out, children[out[i]]...)
	}
	return out
}

// processesHolding lists the processes of the machine whose arguments hold
// text.
func processesHolding(text string) []string {
	var found []string
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		if cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline")); err == nil && bytes.Contains(cmdline, []byte(text)) {
			found = append(found, e.Name()+": "+strings.ReplaceAll(string(cmdline), "\x00", " "))
		}
	}
	return found
}

// Every user of the machine reads every process's arguments (ps): a
// task's prompt is in none of them, at the level that runs Codex under the
// bridge and at the one that runs it under `gated`, nor in the container's
// command that the engine shows. Codex still gets it, through stdin.
func TestThePromptIsInNoProcesssArguments(t *testing.T) {
	h := newHarness(t, nil)
	for _, level := range []string{ReadOnly, DangerFullAccess} {
		t.Run(level, func(t *testing.T) {
			repo := newRepo(t)
			secret := uniquePrompt(t)
			task, err := h.Start(context.Background(), Spec{Prompt: "await " + filepath.Join(repo, "go") + "; say " + secret, WorkingDirectory: repo, Sandbox: level})
			hostfstest.Must(t, err)
			h.waitStatus(t, task.ID, store.Running)
			// The task runs until the test lets it go: its processes are
			// there to be read.
			var codex []string
			deadline := time.Now().Add(time.Minute)
			for len(codex) == 0 && time.Now().Before(deadline) {
				info, err := h.engine.ContainerInspect(context.Background(), containerName(task.ID))
				hostfstest.Must(t, err)
				if slices.Contains(info.Config.Cmd, secret) || strings.Contains(strings.Join(info.Args, " "), secret) {
					t.Fatalf("the container's command holds the prompt: %q", info.Config.Cmd)
				}
				if info.State.Pid != 0 {
					for _, pid := range descendants(info.State.Pid) {
						cmdline, _ := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "cmdline"))
						if args := strings.Split(string(cmdline), "\x00"); len(args) > 1 && filepath.Base(args[0]) == "codex" && args[1] == "exec" {
							codex = append(codex, strings.Join(args, " "))
						}
						if environ, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "environ")); err == nil && bytes.Contains(environ, []byte(secret)) {
							t.Fatalf("the environment of process %d of the task holds the prompt", pid)
						}
					}
				}
				time.Sleep(50 * time.Millisecond)
			}
			if len(codex) == 0 {
				t.Fatal("found no Codex process of the task on the host: nothing was checked")
			}
			if found := processesHolding(secret); len(found) > 0 {
				t.Fatalf("the prompt is in the arguments of processes every user can read: %q (Codex runs as %q)", found, codex)
			}
			hostfstest.Must(t, os.WriteFile(filepath.Join(repo, "go"), nil, 0o644))
			final := h.waitFinal(t, task.ID)
			if final.Status != store.Completed || final.Result != secret {
				t.Fatalf("Codex did not get the prompt: %s %q, result %q; log:\n%s", final.Status, final.Error, final.Result, readLog(h.LogPath(task.ID)))
			}
		})
	}
}

// Whatever the task — a new one, a reply, a review with a focus — its
// text is not on Codex's command line: "-" is, and the text is what the
// wrapper gives Codex as stdin.
func TestCodexsCommandCarriesNoPrompt(t *testing.T) {
	const text = "UNIQUE-TASK-TEXT"
	for _, tc := range []struct {
		name string
		task store.Task
	}{
		{"a task", store.Task{Prompt: text, Sandbox: WorkspaceWrite}},
		{"a reply", store.Task{Prompt: text, Sandbox: WorkspaceWrite, ResumeThread: "00000000-0000-4000-8000-000000000001"}},
		{"a review with a focus", store.Task{Prompt: "review", Sandbox: ReadOnly, Review: &store.Review{Focus: text}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := policy{task: &tc.task, gate: newGate(), prompt: promptFile}
			for _, wrapped := range []policy{p, func() policy { p.socketDir = "/sock"; return p }()} {
				cmd := wrapped.command()
				if strings.Contains(strings.Join(cmd, "\x00"), text) {
					t.Fatalf("the command holds the task's text: %q", cmd)
				}
				if cmd[len(cmd)-1] != stdinPrompt || !slices.Contains(cmd, stateMount+"/"+promptFile) {
					t.Fatalf("the command does not read the prompt from the prompt file: %q", cmd)
				}
			}
			if !strings.Contains(promptText(&tc.task), text) {
				t.Fatalf("the prompt file would not hold the task's text: %q", promptText(&tc.task))
			}
		})
	}
}
