package runner

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/codex-connector/codex-connector/store"
)

// TestTheServerReadsOnlyTheGitDirectoryPinnedAtLaunch: a danger-full-access
// task replaces .git with a "gitdir:" file that names a host repository it
// cannot read itself. The server (root here) must not follow it after the
// run: no name of that repository reaches the record, and the record says
// the scan was refused and why.
func TestTheServerReadsOnlyTheGitDirectoryPinnedAtLaunch(t *testing.T) {
	h := newHarness(t, nil)
	for _, tc := range []struct {
		name, file string
		// secret makes the repository the task points .git at and returns
		// its git directory.
		secret func(t *testing.T, name string) string
		want   string
	}{
		{"a repository only root may read", "secret-of-root-d41f9c.txt", func(t *testing.T, name string) string {
			dir := t.TempDir() // root's, 0700
			if err := os.Chmod(dir, 0o700); err != nil {
				t.Fatal(err)
			}
			secretRepo(t, dir, name)
			return filepath.Join(dir, ".git")
		}, "codex-connector does not read a git directory of another user"},
		{"another repository of the same user", "secret-of-other-d41f9c.txt", func(t *testing.T, name string) string {
			other := ownedRepo(t, ownerDir(t), "other", map[string]string{name: "secret\n"})
			return filepath.Join(other, ".git")
		}, "not to the git directory"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			name := tc.file // looked for in everything the server wrote
			secretGit := tc.secret(t, name)
			repo := ownedRepo(t, ownerDir(t), "repo", map[string]string{"a.txt": "a\n"})
			script := strings.Join([]string{
				"rename .git .git-moved",
				"write .git gitdir: " + secretGit,
				"write b.txt b",
			}, "; ")
			task := h.startAndWait(t, Spec{Prompt: script, WorkingDirectory: repo, Sandbox: DangerFullAccess})
			ran(t, task, "rename .git")
			ran(t, task, "write .git")
			// The proof that the planted pointer leads where the test says:
			// git on the host, as the server's user, follows it to the
			// secret repository.
			if out, err := runGit(repo, "ls-files"); err != nil || !strings.Contains(out, name) {
				t.Fatalf("git in the work tree does not lead to the secret repository (%v: %s): the attack did not happen", err, out)
			}
			record, err := json.Marshal(task)
			if err != nil {
				t.Fatal(err)
			}
			if strings.Contains(string(record), name) {
				t.Errorf("the record holds a file name of the repository .git was pointed at:\n%s", record)
			}
			if !strings.Contains(task.Error, "the files changed are only those Codex reported") || !strings.Contains(task.Error, tc.want) {
				t.Errorf("the record does not say the scan was refused (%q): %s", tc.want, task.Error)
			}
			if !strings.Contains(strings.Join(task.Summary.HostRunFiles, ","), ".git") {
				t.Errorf("host-run files %q lack the rewritten .git", task.Summary.HostRunFiles)
			}
			if task.Status != store.Completed {
				t.Errorf("status %s: %s", task.Status, task.Error)
			}
		})
	}
}

// secretRepo makes a repository at dir (as the test's user) that tracks
// one file called name.
func secretRepo(t *testing.T, dir, name string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, name), []byte("secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"init", "-q"}, {"add", name},
		{"-c", "user.name=t", "-c", "user.email=t@example.invalid", "commit", "-qm", "secret"},
	} {
		if out, err := runGit(dir, args...); err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
	}
}

// runGit runs git in dir as the test's own user (the server's), taking any
// repository for its own.
func runGit(dir string, args ...string) (string, error) {
	cmd := exec.Command("git", append([]string{"-c", "safe.directory=*"}, args...)...)
	cmd.Dir = dir
	cmd.Env = []string{"HOME=" + dir, "PATH=" + os.Getenv("PATH"), "GIT_CONFIG_NOSYSTEM=1"}
	out, err := cmd.CombinedOutput()
	return string(out), err
}
