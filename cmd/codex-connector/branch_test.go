package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/codex-connector/codex-connector/images/imagestest"
)

// gitIn runs git in dir as the test's user, taking any repository for its
// own.
func gitIn(t *testing.T, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command("git", append([]string{"-c", "safe.directory=*", "-c", "user.name=u", "-c", "user.email=u@example.invalid"}, args...)...)
	cmd.Dir = dir
	cmd.Env = []string{"HOME=" + dir, "PATH=" + os.Getenv("PATH"), "GIT_CONFIG_NOSYSTEM=1"}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("git %v: %v\n%s", args, err, out)
	}
	return strings.TrimSpace(string(out))
}

// A branch task through a real MCP client: its branch is made, codex_diff
// shows it, codex_apply brings it into the work tree, codex_discard drops
// it; a shared task has none of these.
func TestBranchTaskThroughMCP(t *testing.T) {
	s := startServer(t)
	repo := imagestest.Repo(t)
	gitIn(t, repo, "add", "-A")
	gitIn(t, repo, "commit", "-qm", "first")
	imagestest.Chown(t, repo)
	res := s.call(t, "codex_agent", map[string]any{"task": "write new.txt from the task; say done", "workingDirectory": repo,
		"sandbox": "workspace-write", "workspace": "branch"})
	task := structured(t, res)
	id, _ := task["taskId"].(string)
	branch, _ := task["branch"].(map[string]any)
	if res.IsError || task["status"] != "completed" || branch == nil || branch["head"] == nil || task["workspace"] != "branch" {
		t.Fatalf("%s", text(res))
	}
	if _, err := os.Stat(filepath.Join(repo, "new.txt")); !os.IsNotExist(err) {
		t.Fatalf("the task wrote into the work tree: %v", err)
	}
	if !strings.Contains(task["summary"].(string), "Branch: codex/"+id) || !strings.Contains(task["next"].(string), "codex_diff") {
		t.Errorf("summary:\n%s", task["summary"])
	}

	res = s.call(t, "codex_diff", map[string]any{"taskId": id})
	diff := structured(t, res)
	if res.IsError || !strings.Contains(diff["patch"].(string), "+from the task") {
		t.Fatalf("codex_diff: %s", text(res))
	}
	res = s.call(t, "codex_diff", map[string]any{"taskId": id, "stat": true, "paths": []any{"new.txt"}})
	if diff = structured(t, res); res.IsError || diff["patch"] != nil || len(diff["files"].([]any)) != 1 {
		t.Fatalf("codex_diff, stat of one path: %s", text(res))
	}

	res = s.call(t, "codex_apply", map[string]any{"taskId": id})
	if applied := structured(t, res); res.IsError || applied["applied"] != true {
		t.Fatalf("codex_apply: %s", text(res))
	}
	if data, err := os.ReadFile(filepath.Join(repo, "new.txt")); err != nil || string(data) != "from the task\n" {
		t.Fatalf("new.txt after the apply: %q, %v", data, err)
	}
	if st := gitIn(t, repo, "status", "--porcelain"); st != "?? new.txt" {
		t.Errorf("the work tree after the apply:\n%s", st)
	}

	res = s.call(t, "codex_discard", map[string]any{"taskId": id})
	if res.IsError {
		t.Fatalf("codex_discard: %s", text(res))
	}
	if out := gitIn(t, repo, "branch", "--list", "codex/*"); out != "" {
		t.Errorf("the branch is still there: %s", out)
	}
	if _, err := os.Stat(filepath.Join(repo, "new.txt")); err != nil {
		t.Errorf("the discard touched the work tree: %v", err)
	}
	if res = s.call(t, "codex_diff", map[string]any{"taskId": id}); !res.IsError || !strings.Contains(text(res), "discarded") {
		t.Errorf("codex_diff after the discard: %s", text(res))
	}

	res = s.call(t, "codex_agent", map[string]any{"task": "say hi", "workingDirectory": repo, "sandbox": "read-only"})
	shared := structured(t, res)
	for _, tool := range []string{"codex_diff", "codex_apply", "codex_discard"} {
		if res := s.call(t, tool, map[string]any{"taskId": shared["taskId"]}); !res.IsError || !strings.Contains(text(res), "not on a branch") {
			t.Errorf("%s of a shared task: %s", tool, text(res))
		}
	}
}

// The command line: run --workspace branch, diff, apply that conflicts
// (exit 1, nothing written), discard.
func TestBranchTaskOnTheCommandLine(t *testing.T) {
	home := cliHome(t)
	env := cliEnv(t, home)
	repo := imagestest.Repo(t)
	gitIn(t, repo, "add", "-A")
	gitIn(t, repo, "commit", "-qm", "first")
	imagestest.Chown(t, repo)
	res := cli(t, env, repo, "run", "--workspace", "branch", "--sandbox", "workspace-write", "write README from the task; say done")
	if res.code != 0 || !strings.Contains(res.stdout+res.stderr, "codex/") {
		t.Fatalf("%s", res)
	}
	id := ""
	for _, f := range strings.Fields(gitIn(t, repo, "branch", "--list", "codex/*")) {
		id = strings.TrimPrefix(f, "codex/")
	}
	if id == "" {
		t.Fatal("no branch")
	}
	if res := cli(t, env, repo, "diff", id); res.code != 0 || !strings.Contains(res.stdout, "+from the task") || !strings.Contains(res.stdout, "codex-connector apply "+id) {
		t.Fatalf("diff: %s", res)
	}
	if err := os.WriteFile(filepath.Join(repo, "README"), []byte("the user's own\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if res := cli(t, env, repo, "apply", id); res.code != 1 || !strings.Contains(res.stdout, "NOT applied") || !strings.Contains(res.stdout, "README: ") {
		t.Fatalf("apply onto a conflicting edit: %s", res)
	}
	if data, _ := os.ReadFile(filepath.Join(repo, "README")); string(data) != "the user's own\n" {
		t.Errorf("README after a refused apply: %q", data)
	}
	if res := cli(t, env, repo, "discard", id); res.code != 0 {
		t.Fatalf("discard: %s", res)
	}
	if out := gitIn(t, repo, "branch", "--list", "codex/*"); out != "" {
		t.Errorf("the branch is still there: %s", out)
	}
}

// A server SIGKILLed while a branch task runs: the next server follows
// the task to its end and collects it; the branch appears once, with all
// of the task's work, and the workspace goes.
func TestABranchTaskOfAKilledServerIsCollectedByTheNext(t *testing.T) {
	engine := imagestest.Engine(t)
	home := t.TempDir()
	repo := imagestest.Repo(t)
	gitIn(t, repo, "add", "-A")
	gitIn(t, repo, "commit", "-qm", "first")
	imagestest.Chown(t, repo)
	a := startServerAt(t, home, noFollower)
	res := a.call(t, "codex_agent", map[string]any{"task": "write before.txt one; sleep 3s; write after.txt two; say done",
		"workingDirectory": repo, "sandbox": "workspace-write", "workspace": "branch", "async": true})
	id := structured(t, res)["taskId"].(string)
	waitContainerRunning(t, engine, id)
	a.kill(t)
	b := startServerAt(t, home)
	final := b.waitFor(t, id)
	branch, _ := final["branch"].(map[string]any)
	if final["status"] != "completed" || branch == nil || branch["head"] == nil {
		t.Fatalf("after the restart: %v", final)
	}
	if out := gitIn(t, repo, "branch", "--list", "codex/*"); out != "codex/"+id {
		t.Errorf("branches: %q, want codex/%s alone", out, id)
	}
	if files := gitIn(t, repo, "ls-tree", "--name-only", "codex/"+id); files != "README\nafter.txt\nbefore.txt" {
		t.Errorf("the branch holds %q", files)
	}
	if _, err := os.Stat(filepath.Join(home, "workspaces", id)); !os.IsNotExist(err) {
		t.Errorf("the workspace is still there: %v", err)
	}
}
