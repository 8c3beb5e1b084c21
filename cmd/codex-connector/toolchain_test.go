package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/codex-connector/codex-connector/images/imagestest"
)

// TestAToolchainImageShowsInStatusAndCheck: a task on a toolchain image
// names it in codex_status, as the record has it, with what it lacks; and
// `check` says which image each configured repository gets, and whether
// it is built.
func TestAToolchainImageShowsInStatusAndCheck(t *testing.T) {
	const base = "codex-connector/debian:bookworm" // bash, no git
	if err := exec.Command("docker", "image", "inspect", base).Run(); err != nil {
		t.Fatalf("this test needs %s: build it with `make base`", base)
	}
	home := t.TempDir()
	config := `{"images": {"default": "` + base + `", "repos": [{"path": "/nowhere/*", "image": "codex-connector/no-such-base:1"}]}, "caches": []}`
	if err := os.WriteFile(filepath.Join(home, "config.json"), []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	s := startServerAt(t, home)
	repo := imagestest.Repo(t)
	res := s.call(t, "codex_agent", map[string]any{"task": "read /etc/debian_version; say done", "workingDirectory": repo, "sandbox": "workspace-write"})
	st := structured(t, res)
	if res.IsError || st["status"] != "completed" {
		t.Fatalf("task: %s", text(res))
	}
	img, _ := st["image"].(map[string]any)
	ref, _ := img["ref"].(string)
	if img == nil || img["base"] != base || !strings.HasPrefix(ref, "codex-connector/task:") || img["id"] == "" ||
		img["source"] != "config.json images.default" {
		t.Fatalf("image in the structured result: %v", st["image"])
	}
	summary := st["summary"].(string)
	for _, want := range []string{"Image: " + base + " with Codex (" + ref, "chosen by config.json images.default", "Image note: the image has no git"} {
		if !strings.Contains(summary, want) {
			t.Errorf("summary lacks %q:\n%s", want, summary)
		}
	}
	if !strings.Contains(text(res), "Image note: the image has no git") {
		t.Errorf("the text result lacks the image note:\n%s", text(res))
	}

	cmd := exec.Command(binary(t), "check")
	cmd.Env = append(os.Environ(), "CODEX_CONNECTOR_HOME="+home, "CODEX_CONNECTOR_IMAGE="+imagestest.FakeCodex(t), "OPENAI_API_KEY=sk-check")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("check: %v\n%s", err, out)
	}
	for _, want := range []string{
		"note: repositories no entry names → " + base + " (config.json images.default), with Codex: " + ref + ", built; it lacks git",
		"note: repositories matching /nowhere/* → codex-connector/no-such-base:1 (config.json images.repos entry /nowhere/*): base image not found",
		"note: caches: none",
	} {
		if !strings.Contains(string(out), want) {
			t.Errorf("check lacks %q:\n%s", want, out)
		}
	}
}
