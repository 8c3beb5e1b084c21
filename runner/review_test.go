package runner

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/codex-connector/codex-connector/images/imagestest"
	"github.com/codex-connector/codex-connector/store"
	"github.com/codex-connector/codex-connector/workspace"
)

// reviewJSON is a review as the model writes it in Codex's review mode.
func reviewJSON(file string) string {
	return fmt.Sprintf(`{"findings":[{"title":"[P1] Add subtracts","body":"Add returns a - b, so every sum is wrong.","confidence_score":0.9,"priority":1,"code_location":{"absolute_file_path":%q,"line_range":{"start":3,"end":3}}},{"title":"[P3] Name the parameters","body":"a and b say little.","confidence_score":0.4,"priority":3,"code_location":{"absolute_file_path":%q,"line_range":{"start":3,"end":4}}}],"overall_correctness":"patch is incorrect","overall_explanation":"Add is wrong.","overall_confidence_score":0.8}`, file, file)
}

// gitAsRoot runs git in repo as this process, which owns nothing there:
// the test hands the repository back to its owner afterwards.
func gitAsRoot(t *testing.T, repo string, args ...string) {
	t.Helper()
	cmd := exec.Command("git", append([]string{"-C", repo, "-c", "safe.directory=*", "-c", "user.name=t", "-c", "user.email=t@example.test"}, args...)...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("git %v: %v\n%s", args, err, out)
	}
	imagestest.Chown(t, repo)
}

// TestCodexReviewsTheChanges: codex_review runs Codex's own review mode,
// read-only whatever was asked, on the uncommitted changes or against a
// base, and its findings come back structured.
func TestCodexReviewsTheChanges(t *testing.T) {
	t.Parallel()
	model := imagestest.StartModelServer(t, imagestest.Engine(t))
	h := newHarness(t, codexConfig(t, model))
	repo := newRepo(t)
	gitAsRoot(t, repo, "add", "-A")
	gitAsRoot(t, repo, "commit", "-q", "-m", "first")
	gitAsRoot(t, repo, "branch", "-M", "main")
	calc := filepath.Join(repo, "calc.go")
	review := func(t *testing.T, rv store.Review, wantInRequest ...string) *store.Task {
		t.Helper()
		model.SetTurns(imagestest.Turn{Message: reviewJSON(calc)})
		n := len(model.Requests())
		task, log := h.completed(t, Spec{WorkingDirectory: repo, Sandbox: DangerFullAccess, Model: "gpt-5-codex", Timeout: time.Minute, Review: &rv})
		if task.Sandbox != ReadOnly {
			t.Errorf("a review ran at %s", task.Sandbox)
		}
		req := requestText(t, model.Requests()[n])
		for _, want := range append([]string{"Review guidelines"}, wantInRequest...) {
			if !strings.Contains(req, want) {
				t.Errorf("the review's request lacks %q:\n%s", want, req[max(0, len(req)-1500):])
			}
		}
		got := task.Summary.Findings
		if len(got) != 2 || got[0] != (store.Finding{File: "calc.go", Line: 3, EndLine: 3, Severity: "P1", Text: "Add subtracts: Add returns a - b, so every sum is wrong."}) ||
			got[1].Severity != "P3" || got[1].EndLine != 4 {
			t.Errorf("findings %+v, log:\n%s", got, log)
		}
		if res := readFile(t, h.ResultPath(task.ID)); !strings.Contains(res, "Add is wrong.") || !strings.Contains(res, "[P1] Add subtracts") {
			t.Errorf("result %q", res)
		}
		return task
	}
	t.Run("the uncommitted changes", func(t *testing.T) {
		if err := os.WriteFile(calc, []byte("package calc\n\nfunc Add(a, b int) int { return a - b }\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		imagestest.Chown(t, repo)
		task := review(t, store.Review{}, "Review the current code changes (staged, unstaged, and untracked files)")
		if !strings.HasPrefix(task.Prompt, "review the uncommitted changes") {
			t.Errorf("task %q", task.Prompt)
		}
	})
	t.Run("against a base, with a focus", func(t *testing.T) {
		gitAsRoot(t, repo, "checkout", "-q", "-b", "feature")
		gitAsRoot(t, repo, "add", "-A")
		gitAsRoot(t, repo, "commit", "-q", "-m", "add Add")
		imagestest.Chown(t, repo)
		review(t, store.Review{Base: "main", Focus: "arithmetic"}, "Focus: arithmetic", "git diff main...HEAD")
		review(t, store.Review{Base: "main"}, "Review the code changes against the base branch 'main'. The merge base commit")
	})
	t.Run("a branch task's branch, in a read-only checkout of it", func(t *testing.T) {
		// The writer: a branch task of the real Codex that adds Add wrongly.
		model.SetTurns(imagestest.Turn{Command: "printf 'package calc\\n\\nfunc Add(a, b int) int { return a * b }\\n' > calc.go"}, imagestest.Turn{Message: "wrote Add"})
		writer, _ := h.completed(t, Spec{Prompt: "add Add", WorkingDirectory: repo, Sandbox: WorkspaceWrite, Workspace: workspace.KindBranch, Model: "gpt-5-codex", Timeout: time.Minute})
		if writer.Branch == nil || writer.Branch.Head == "" || !slices.Contains(writer.Summary.FilesChanged, "calc.go") {
			t.Fatalf("the writer's branch: %+v, files %v", writer.Branch, writer.Summary.FilesChanged)
		}
		userCalc, _ := os.ReadFile(calc)
		task := review(t, store.Review{Task: writer.ID}, writer.Branch.Start)
		if task.Workspace != workspace.KindBranch || task.Branch == nil || task.Branch.Base != writer.Branch.Head || task.Branch.Head != "" {
			t.Errorf("the review's workspace: %s, %+v", task.Workspace, task.Branch)
		}
		if now, _ := os.ReadFile(calc); string(now) != string(userCalc) {
			t.Errorf("the user's calc.go changed: %q", now)
		}
		if _, err := os.Stat(h.workspaceDir(task.ID)); !os.IsNotExist(err) {
			t.Errorf("the review's checkout is still there: %v", err)
		}
		_, err := h.Start(t.Context(), Spec{WorkingDirectory: t.TempDir(), Review: &store.Review{Task: writer.ID}})
		if err == nil {
			t.Error("a review of a task in another directory was accepted")
		}
	})
	t.Run("a base git would read as an option is refused", func(t *testing.T) {
		_, err := h.Start(t.Context(), Spec{WorkingDirectory: repo, Review: &store.Review{Base: "--output=/tmp/x"}})
		if err == nil || !strings.Contains(err.Error(), "is not a branch or commit name") {
			t.Fatalf("error %v", err)
		}
	})
}

func TestParseFindings(t *testing.T) {
	text := "Looks mostly fine.\n\nReview comments:\n\n- [P0] Crash on empty input — /r/a.go:10-12\n  Index out of range\n  when the slice is empty.\n- [P2] Typo — /r/docs/x.md:4\n- [P1] No location — elsewhere\n"
	got := parseFindings(text, "/r")
	want := []store.Finding{
		{File: "a.go", Line: 10, EndLine: 12, Severity: "P0", Text: "Crash on empty input: Index out of range when the slice is empty."},
		{File: "docs/x.md", Line: 4, Severity: "P2", Text: "Typo"},
		{File: "elsewhere", Severity: "P1", Text: "No location"},
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("got %+v\nwant %+v", got, want)
	}
}
