package runner

import (
	"bufio"
	"crypto/rand"
	"encoding/hex"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/codex-connector/codex-connector/images/imagestest"
	"github.com/codex-connector/codex-connector/internal/hostfs/hostfstest"
	git "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing/object"
)

// Attacks on what a dev container build runs: a task writes the work tree,
// and the next task's launch builds the repository's Dockerfile outside
// any sandbox. Each test first proves the hostile part ran or would run,
// then that the build did not run it.

// commitAll commits everything in the work tree of repo and returns the
// commit.
func commitAll(t *testing.T, repo string) string {
	t.Helper()
	r, err := git.PlainOpen(repo)
	hostfstest.Must(t, err)
	wt, err := r.Worktree()
	hostfstest.Must(t, err)
	hostfstest.Must(t, wt.AddWithOptions(&git.AddOptions{All: true}))
	h, err := wt.Commit("dev container", &git.CommitOptions{Author: &object.Signature{Name: "t", Email: "t@example.com", When: time.Now()}})
	hostfstest.Must(t, err)
	imagestest.Chown(t, repo)
	return h.String()
}

func nonce(t *testing.T) string {
	t.Helper()
	b := make([]byte, 6)
	_, err := rand.Read(b)
	hostfstest.Must(t, err)
	return hex.EncodeToString(b)
}

// buildOptIn is the user's opt-in to dev container builds for repo.
func buildOptIn(repo string, network bool) func(*Config) {
	return func(c *Config) {
		c.Toolchains = Toolchains{Rules: []ToolchainRule{{Path: repo, Devcontainer: DevcontainerBuild, BuildNetwork: network}}}
	}
}

// TestATaskCannotChooseWhatTheNextDevcontainerBuildRuns: a task at
// workspace-write adds a RUN step to the committed Dockerfile, and points
// devcontainer.json at a Dockerfile of its own. The next task's launch
// builds what is committed: its image holds the committed step's marker,
// neither of the task's, and the task's notes say the work tree differs.
func TestATaskCannotChooseWhatTheNextDevcontainerBuildRuns(t *testing.T) {
	base := "codex-connector/debian:bookworm"
	needImage(t, base)
	n := nonce(t)
	repo := newRepo(t)
	writeRepoFiles(t, repo, map[string]string{
		".devcontainer/devcontainer.json": `{"build": {"dockerfile": "Dockerfile"}}`,
		".devcontainer/Dockerfile":        "FROM " + base + "\nRUN echo committed-" + n + " > /etc/codex-connector-marker\n",
	})
	head := commitAll(t, repo)
	h := newHarness(t, buildOptIn(repo, false))

	hostile := h.startAndWait(t, Spec{WorkingDirectory: repo, Sandbox: WorkspaceWrite, Prompt: strings.Join([]string{
		"append .devcontainer/Dockerfile RUN echo edited-" + n + " > /etc/codex-connector-marker",
		"write .devcontainer/Evil FROM " + base,
		"append .devcontainer/Evil RUN echo evil-" + n + " > /etc/codex-connector-marker",
		`write .devcontainer/devcontainer.json {"build": {"dockerfile": "Evil"}}`,
		"say done"}, "; ")})
	ran(t, hostile, "append .devcontainer/Dockerfile")
	ran(t, hostile, "write .devcontainer/devcontainer.json")
	if df := readFile(t, filepath.Join(repo, ".devcontainer", "Dockerfile")); !strings.Contains(df, "edited-"+n) {
		t.Fatalf("the task's edit is not in the work tree:\n%s", df)
	}

	task, log := h.completed(t, Spec{Prompt: "read /etc/codex-connector-marker; say done", WorkingDirectory: repo, Sandbox: WorkspaceWrite})
	if !strings.Contains(log, "committed-"+n) {
		t.Fatalf("the task did not run on the committed build:\n%s", log)
	}
	for _, bad := range []string{"edited-" + n, "evil-" + n} {
		if strings.Contains(log, bad) {
			t.Fatalf("the build ran the task's step (%s):\n%s", bad, log)
		}
	}
	if b := task.ImageBuild; b == nil || b.Commit != head || b.Context != ".devcontainer" || b.Dockerfile != "Dockerfile" || b.Network {
		t.Fatalf("build %+v, want .devcontainer/Dockerfile of %s without network", b, head)
	}
	notes := strings.Join(task.ImageNotes, "\n")
	if !strings.Contains(notes, ".devcontainer/devcontainer.json, .devcontainer/Dockerfile in the work tree differ from commit "+head[:12]) {
		t.Fatalf("the notes do not say the work tree differs: %q", notes)
	}
}

// TestADevcontainerBuildReachesNoHostService: a RUN step dials a listener
// on the host's address on the engine's bridge, which the host itself
// reaches. Without the user's buildNetwork it gets no connection, and the
// step records that it could not connect; with it (the control) it does.
func TestADevcontainerBuildReachesNoHostService(t *testing.T) {
	base := "codex-connector/debian:bookworm"
	needImage(t, base)
	gw := imagestest.BridgeGateway(t, imagestest.Engine(t))
	ln, err := net.Listen("tcp", net.JoinHostPort(gw, "0"))
	hostfstest.Must(t, err)
	defer ln.Close()
	var mu sync.Mutex
	var got []string
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			line, _ := bufio.NewReader(c).ReadString('\n')
			c.Close()
			mu.Lock()
			got = append(got, strings.TrimSpace(line))
			mu.Unlock()
		}
	}()
	heard := func(want string) bool {
		mu.Lock()
		defer mu.Unlock()
		for _, g := range got {
			if g == want {
				return true
			}
		}
		return false
	}
	waitHeard := func(want string) bool {
		for range 50 {
			if heard(want) {
				return true
			}
			time.Sleep(100 * time.Millisecond)
		}
		return false
	}
	// The listener works: the host reaches it.
	c, err := net.Dial("tcp", ln.Addr().String())
	hostfstest.Must(t, err)
	_, err = c.Write([]byte("from-the-host\n"))
	hostfstest.Must(t, err)
	c.Close()
	if !waitHeard("from-the-host") {
		t.Fatal("the listener did not hear the host")
	}

	run := func(t *testing.T, network bool) (string, string) {
		n := nonce(t)
		repo := newRepo(t)
		writeRepoFiles(t, repo, map[string]string{
			".devcontainer/devcontainer.json": `{"build": {"dockerfile": "Dockerfile"}}`,
			".devcontainer/Dockerfile": "FROM " + base + "\nSHELL [\"/bin/bash\", \"-c\"]\n" +
				"RUN if echo build-" + n + " > /dev/tcp/" + gw + "/" + portOf(t, ln) + "; then echo reached-" + n + "; else echo unreached-" + n + "; fi > /etc/codex-connector-marker\n",
		})
		commitAll(t, repo)
		h := newHarness(t, buildOptIn(repo, network))
		_, log := h.completed(t, Spec{Prompt: "read /etc/codex-connector-marker; say done", WorkingDirectory: repo, Sandbox: WorkspaceWrite})
		return n, log
	}
	t.Run("without buildNetwork, no connection", func(t *testing.T) {
		n, log := run(t, false)
		if !strings.Contains(log, "unreached-"+n) {
			t.Fatalf("the RUN step did not record that it could not connect:\n%s", log)
		}
		if waitHeard("build-" + n) {
			t.Fatal("the build's RUN step reached the host's listener")
		}
	})
	t.Run("with buildNetwork, the engine's default network (the control)", func(t *testing.T) {
		n, log := run(t, true)
		if !strings.Contains(log, "reached-"+n) || strings.Contains(log, "unreached-"+n) || !waitHeard("build-"+n) {
			t.Fatalf("the RUN step did not reach the listener with the network:\n%s", log)
		}
	})
}

func portOf(t *testing.T, ln net.Listener) string {
	t.Helper()
	_, port, err := net.SplitHostPort(ln.Addr().String())
	hostfstest.Must(t, err)
	return port
}

// TestAnUncommittedDevcontainerBuildIsRefused: with the build opt-in, a
// dev container file only in the work tree (a task could have made it)
// builds nothing, and the error says to commit it; a committed symlink in
// its place is not followed.
func TestAnUncommittedDevcontainerBuildIsRefused(t *testing.T) {
	repo := newRepo(t)
	writeRepoFiles(t, repo, map[string]string{
		".devcontainer/devcontainer.json": `{"build": {"dockerfile": "Dockerfile"}}`,
		".devcontainer/Dockerfile":        "FROM scratch\n",
	})
	tc := Toolchains{Rules: []ToolchainRule{{Path: repo, Devcontainer: DevcontainerBuild}}}
	t.Run("no commit yet", func(t *testing.T) {
		if c, err := tc.choose(repo); err == nil || c.build != nil || !strings.Contains(err.Error(), ".devcontainer/devcontainer.json is not committed") {
			t.Fatalf("build %+v, error %v", c.build, err)
		}
	})
	t.Run("a commit without it", func(t *testing.T) {
		hostfstest.Must(t, os.Rename(filepath.Join(repo, ".devcontainer"), filepath.Join(repo, "later")))
		commitAll(t, repo)
		hostfstest.Must(t, os.Rename(filepath.Join(repo, "later"), filepath.Join(repo, ".devcontainer")))
		if c, err := tc.choose(repo); err == nil || c.build != nil || !strings.Contains(err.Error(), "is not committed") {
			t.Fatalf("build %+v, error %v", c.build, err)
		}
	})
	t.Run("its object in .git swapped for a symlink", func(t *testing.T) {
		commitAll(t, repo)
		out, err := runGit(repo, "rev-parse", "HEAD:.devcontainer/devcontainer.json")
		hostfstest.Must(t, err)
		blob := strings.TrimSpace(out)
		obj := filepath.Join(repo, ".git", "objects", blob[:2], blob[2:])
		elsewhere := filepath.Join(t.TempDir(), "object")
		hostfstest.Must(t, os.Rename(obj, elsewhere))
		hostfstest.Must(t, os.Symlink(elsewhere, obj))
		// git itself follows it: the build would read it, but for the check.
		if got, err := runGit(repo, "cat-file", "-p", blob); err != nil || !strings.Contains(got, "dockerfile") {
			t.Fatalf("git does not read the swapped object: %q, %v", got, err)
		}
		c, err := tc.choose(repo)
		if err == nil || c.build != nil || !strings.Contains(err.Error(), "objects/"+blob[:2]+"/"+blob[2:]+" is a symbolic link, not a regular file") {
			t.Fatalf("build %+v, error %v", c.build, err)
		}
		hostfstest.Must(t, os.Remove(obj))
		hostfstest.Must(t, os.Rename(elsewhere, obj))
	})
	t.Run("its pack in .git swapped for a symlink", func(t *testing.T) {
		if out, err := runGit(repo, "repack", "-a", "-d", "-q"); err != nil {
			t.Fatalf("git repack: %v\n%s", err, out)
		}
		packs, _ := filepath.Glob(filepath.Join(repo, ".git", "objects", "pack", "*.pack"))
		if len(packs) != 1 {
			t.Fatalf("packs after repack: %v", packs)
		}
		elsewhere := filepath.Join(t.TempDir(), "pack")
		hostfstest.Must(t, os.Rename(packs[0], elsewhere))
		hostfstest.Must(t, os.Symlink(elsewhere, packs[0]))
		if got, err := runGit(repo, "cat-file", "-p", "HEAD:.devcontainer/devcontainer.json"); err != nil || !strings.Contains(got, "dockerfile") {
			t.Fatalf("git does not read the swapped pack: %q, %v", got, err)
		}
		c, err := tc.choose(repo)
		if err == nil || c.build != nil || !strings.Contains(err.Error(), filepath.Base(packs[0])+" is a symbolic link") {
			t.Fatalf("build %+v, error %v", c.build, err)
		}
		hostfstest.Must(t, os.Remove(packs[0]))
		hostfstest.Must(t, os.Rename(elsewhere, packs[0]))
	})
	t.Run("committed as a symlink", func(t *testing.T) {
		hostfstest.Must(t, os.RemoveAll(filepath.Join(repo, ".devcontainer")))
		hostfstest.Must(t, os.Symlink("later/.devcontainer/devcontainer.json", filepath.Join(repo, ".devcontainer.json")))
		commitAll(t, repo)
		if c, err := tc.choose(repo); err == nil || c.build != nil || !strings.Contains(err.Error(), "not a file") {
			t.Fatalf("build %+v, error %v", c.build, err)
		}
	})
}
