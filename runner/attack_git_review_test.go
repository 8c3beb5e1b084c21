package runner

// Attacks found in review of the git and mount-source protections: a
// workspace-write task tries to make git on the host run a program of its
// choosing through what git's configuration names, a nested repository, a
// linked worktree or deeply nested submodules, and a concurrent task races
// a launch to make it mount a host path. Each test performs the attack from
// inside a container on the real engine, proves that the hostile step ran,
// then checks the effect on the host (`git` run as the repo owner). Before
// the fixes, each of these attacks worked.

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/codex-connector/codex-connector/images/imagestest"
	"github.com/codex-connector/codex-connector/store"
)

// reviewRepo makes a plain repository owned by the repo owner, with one
// commit, and returns it.
func reviewRepo(t *testing.T, files map[string]string) string {
	t.Helper()
	files["README"] = "hello\n"
	return ownedRepo(t, ownerDir(t), "repo", files)
}

// ownedRepo makes the repository base/name with files (a hook or a
// script executable), owned by the repo owner, with one commit.
func ownedRepo(t *testing.T, base, name string, files map[string]string) string {
	t.Helper()
	repo := filepath.Join(base, name)
	gitCLI(t, base, "init", "-q", name)
	for name, body := range files {
		p := filepath.Join(repo, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		mode := os.FileMode(0o644)
		if strings.HasPrefix(body, "#!") || strings.HasSuffix(name, ".sh") || strings.Contains(name, "hooks/") {
			mode = 0o755
		}
		if err := os.WriteFile(p, []byte(body), mode); err != nil {
			t.Fatal(err)
		}
	}
	imagestest.Chown(t, repo)
	gitCLI(t, repo, "add", "-A")
	gitCLI(t, repo, "commit", "-qm", "initial")
	return repo
}

// evilGitDirSteps are fake-Codex steps that make, at the absolute path gd
// (inside the work tree), a git directory whose config runs `touch mark`.
func evilGitDirSteps(gd, mark string) []string {
	return []string{
		"mkdir " + gd + " 755", "mkdir " + gd + "/objects 755", "mkdir " + gd + "/refs 755",
		"write " + gd + "/HEAD ref: refs/heads/master",
		"write " + gd + "/config " + fsmonitorConfig(mark),
	}
}

// fsmonitorConfig is a git config that makes any git status run touch mark.
func fsmonitorConfig(mark string) string { return "[core] fsmonitor = touch " + mark }

// ranOnHost lists the markers (other than the control) planted programs
// made on the host.
func ranOnHost(marks string) []string {
	var out []string
	entries, _ := os.ReadDir(marks)
	for _, e := range entries {
		if e.Name() != "control" {
			out = append(out, e.Name())
		}
	}
	return out
}

// gitControl proves git on this host runs core.fsmonitor, so a marker's
// absence means something.
func gitControl(t *testing.T, marks string) {
	t.Helper()
	control := filepath.Join(ownerDir(t), "control")
	gitCLI(t, filepath.Dir(control), "init", "-q", "control")
	gitCLI(t, control, "-c", "core.fsmonitor=touch "+filepath.Join(marks, "control"), "status", "--short")
	if !lexists(filepath.Join(marks, "control")) {
		t.Fatal("the control did not run: git on this host does not run core.fsmonitor")
	}
}

func runAttack(t *testing.T, h *harness, repo string, steps []string, sandbox string) *store.Task {
	t.Helper()
	task := h.startAndWait(t, Spec{Prompt: strings.Join(steps, "; "), WorkingDirectory: repo, Sandbox: sandbox})
	if task.Status != store.Completed {
		t.Fatalf("%s: %s\n%s", task.Status, task.Error, readLog(h.LogPath(task.ID)))
	}
	return task
}

// mustHaveBeenRefused checks that each hostile step really ran and failed
// (a step that never ran would prove nothing).
func mustHaveBeenRefused(t *testing.T, task *store.Task, cmds ...string) {
	t.Helper()
	got := exitCodes(t, task)
	for _, c := range cmds {
		if code, ran := got[c]; !ran || code == 0 {
			t.Errorf("the hostile step %q: ran %v, exit %d; want it tried and refused", c, ran, code)
		}
	}
}

func mustHaveRun(t *testing.T, task *store.Task, cmds ...string) {
	t.Helper()
	got := exitCodes(t, task)
	for _, c := range cmds {
		if code, ran := got[c]; !ran || code != 0 {
			t.Fatalf("the hostile step %q did not succeed (ran %v, exit %d): the test proves nothing", c, ran, code)
		}
	}
}

// The user's own .git/config points into the work tree:
// `include.path = ../.gitconfig` (a common way to share repository config)
// and `core.hooksPath = .hooks` (committed hooks). .git is read-only, and
// so is what it points at: the task's writes of the included file and a
// hook fail, and git on the host runs nothing.
func TestFilesGitConfigNamesInTheWorkTreeAreReadOnly(t *testing.T) {
	h := newHarness(t, nil)
	marks := markerDir(t)
	gitControl(t, marks)
	repo := reviewRepo(t, map[string]string{".hooks/pre-commit": "exit 0\n", ".gitconfig": "[user]\n"})
	gitCLI(t, repo, "config", "include.path", "../.gitconfig")
	gitCLI(t, repo, "config", "core.hooksPath", ".hooks")
	task := runAttack(t, h, repo, []string{
		"write .gitconfig " + fsmonitorConfig(filepath.Join(marks, "include")),
		// write keeps the tracked hook's exec bit; git runs a hook without
		// a #! line through /bin/sh
		"write .hooks/pre-commit touch " + filepath.Join(marks, "hook"),
		"write proof.txt ran",
	}, WorkspaceWrite)
	mustHaveRun(t, task, "write proof.txt")
	mustHaveBeenRefused(t, task, "write .gitconfig", "write .hooks/pre-commit")
	gitTry(t, repo, "status", "--short")
	gitTry(t, repo, "commit", "-q", "--allow-empty", "-m", "after the task")
	if ran := ranOnHost(marks); len(ran) != 0 {
		t.Errorf("git on the host ran planted programs %v (host-run files listed: %q)", ran, task.Summary.HostRunFiles)
	}
}

// An ignored nested repository (a clone under deps/, not a submodule):
// its .git, a directory of the work tree, is read-only to the task.
func TestNestedRepositoryGitDirIsReadOnly(t *testing.T) {
	h := newHarness(t, nil)
	marks := markerDir(t)
	gitControl(t, marks)
	repo := reviewRepo(t, map[string]string{".gitignore": "deps/\n"})
	if err := os.MkdirAll(filepath.Join(repo, "deps"), 0o755); err != nil {
		t.Fatal(err)
	}
	imagestest.Chown(t, filepath.Join(repo, "deps"))
	gitCLI(t, filepath.Join(repo, "deps"), "init", "-q", "lib")
	task := runAttack(t, h, repo, []string{
		"write deps/lib/.git/config " + fsmonitorConfig(filepath.Join(marks, "nested")),
		"write deps/lib/proof.txt ran",
	}, WorkspaceWrite)
	mustHaveRun(t, task, "write deps/lib/proof.txt")
	mustHaveBeenRefused(t, task, "write deps/lib/.git/config")
	gitTry(t, filepath.Join(repo, "deps", "lib"), "status", "--short")
	if ran := ranOnHost(marks); len(ran) != 0 {
		t.Errorf("git on the host (in deps/lib) ran planted programs %v", ran)
	}
	// Under danger-full-access the task may change it; the result says so.
	task = runAttack(t, h, repo, []string{"write deps/lib/.git/config [core]"}, DangerFullAccess)
	mustHaveRun(t, task, "write deps/lib/.git/config")
	if !slices.Contains(task.Summary.HostRunFiles, "deps/lib/.git/config") {
		t.Errorf("the nested repository's config changed and the host-run files %q do not say so", task.Summary.HostRunFiles)
	}
}

// A linked worktree kept inside the repository (`git worktree add
// .worktrees/feat`, a common layout): its .git file, a file of the main
// work tree, is read-only to the task.
func TestLinkedWorktreeInsideTheRepositoryIsProtected(t *testing.T) {
	h := newHarness(t, nil)
	marks := markerDir(t)
	gitControl(t, marks)
	repo := reviewRepo(t, map[string]string{".gitignore": ".worktrees/\n"})
	gitCLI(t, repo, "worktree", "add", "-q", ".worktrees/feat")
	gd := filepath.Join(repo, "evilgd")
	steps := append(evilGitDirSteps(gd, filepath.Join(marks, "worktree")), "write .worktrees/feat/.git gitdir: "+gd)
	task := runAttack(t, h, repo, append(steps, "write proof.txt ran"), WorkspaceWrite)
	mustHaveRun(t, task, "write proof.txt")
	mustHaveBeenRefused(t, task, "write .worktrees/feat/.git")
	gitTry(t, filepath.Join(repo, ".worktrees", "feat"), "status", "--short")
	if ran := ranOnHost(marks); len(ran) != 0 {
		t.Errorf("git on the host (in the linked worktree) ran planted programs %v; host-run files %q", ran, task.Summary.HostRunFiles)
	}
}

// Submodules nested five deep: the fifth level's .git file is read-only
// too (the walk once stopped at four, silently).
func TestDeeplyNestedSubmodulesAreProtected(t *testing.T) {
	h := newHarness(t, nil)
	marks := markerDir(t)
	gitControl(t, marks)
	base := ownerDir(t)
	const levels = 5 // of submodules below the repository
	// u6 is a plain repository; u(n) has u(n+1) as submodule s; the
	// repository is a clone of u1.
	for i := levels + 1; i >= 1; i-- {
		name := "u" + string(rune('0'+i))
		dir := ownedRepo(t, base, name, map[string]string{"f": name + "\n"})
		if i <= levels {
			gitCLI(t, dir, "-c", "protocol.file.allow=always", "submodule", "add", "-q", "../u"+string(rune('0'+i+1)), "s")
			gitCLI(t, dir, "commit", "-qm", name)
		}
	}
	repo := filepath.Join(base, "repo")
	gitCLI(t, base, "-c", "protocol.file.allow=always", "clone", "-q", "--recurse-submodules", "u1", "repo")
	deep := strings.Repeat("s/", levels-1) + "s" // repo/s/s/s/s/s
	if !lexists(filepath.Join(repo, deep, ".git")) {
		t.Fatalf("the deepest submodule is not checked out:\n%s", gitCLI(t, repo, "submodule", "status", "--recursive"))
	}
	m, err := protectGitOf(t, repo)
	t.Logf("protectGit: read-only %q, err %v", m.ReadOnly, err)
	gd := filepath.Join(repo, "evilgd")
	steps := append(evilGitDirSteps(gd, filepath.Join(marks, "deep")), "write "+deep+"/.git gitdir: "+gd)
	task := h.startAndWait(t, Spec{Prompt: strings.Join(steps, "; "), WorkingDirectory: repo, Sandbox: WorkspaceWrite})
	if task.Status != store.Completed {
		// Refusing such a repository with a reason is a fine outcome.
		t.Logf("the task did not run: %s: %s", task.Status, task.Error)
		return
	}
	if exitCodes(t, task)["write "+deep+"/.git"] == 0 {
		t.Errorf("the task rewrote the level-%d submodule's .git file", levels)
	}
	gitTry(t, repo, "status", "--short")
	if ran := ranOnHost(marks); len(ran) != 0 {
		t.Errorf("`git status` at the repository root on the host ran planted programs %v", ran)
	}
	gitTry(t, filepath.Join(repo, deep), "status", "--short")
	if ran := ranOnHost(marks); len(ran) != 0 {
		t.Errorf("git on the host ran planted programs %v", ran)
	}
}

// unblockFifo opens a FIFO for writing (without blocking when no one
// reads) and closes it, so a reader blocked in open gets EOF.
func unblockFifo(path string) {
	for i := 0; i < 50; i++ {
		fd, err := syscall.Open(path, syscall.O_WRONLY|syscall.O_NONBLOCK, 0)
		if err == nil {
			syscall.Close(fd)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// realCodex returns a harness running the real Codex against a model
// server that answers with one shell command, then a message.
func realCodex(t *testing.T, command string) *harness {
	t.Helper()
	model := imagestest.StartModelServer(t, imagestest.Engine(t),
		imagestest.Turn{Command: command},
		imagestest.Turn{Message: "done"},
	)
	return newCodexHarness(t, model)
}

// A race between the launch check and the engine's mount. A
// danger-full-access task on the same repository (it may not read the
// host: only the repository is mounted) swaps a not-checked-out submodule
// directory, vendor/other, between a directory and a symlink to a host
// directory, in a loop. A workspace-write launch checks vendor/other
// (below: a plain directory) and then the engine binds it read-only; if
// the swap lands in between, the engine binds the symlink's target. The
// gate catches it: the task never reads the host directory.
func TestMountSourceRaceWithAConcurrentTaskIsCaught(t *testing.T) {
	repo := repoWithSubmodules(t)
	secretHome := ownerDir(t)
	secret := "host secret " + filepath.Base(secretHome)
	if err := os.WriteFile(filepath.Join(secretHome, "secret.txt"), []byte(secret), 0o644); err != nil {
		t.Fatal(err)
	}
	// renameat2(RENAME_EXCHANGE) swaps the directory and a symlink
	// atomically, so the path is never missing, only one or the other.
	loop := "ln -s " + secretHome + " vendor/lnk && setsid python3 -c '" +
		"import ctypes,time\nlibc=ctypes.CDLL(None,use_errno=True)\nend=time.time()+60\n" +
		"while time.time()<end: libc.renameat2(-100,b\"vendor/other\",-100,b\"vendor/lnk\",2)\n" +
		"' >/dev/null 2>&1 & echo swapping > swapping.txt"
	turns := []imagestest.Turn{{Command: loop}}
	for i := 0; i < 6; i++ {
		turns = append(turns, imagestest.Turn{Command: "sleep 9"})
	}
	turns = append(turns, imagestest.Turn{Message: "done"})
	model := imagestest.StartModelServer(t, imagestest.Engine(t), turns...)
	swapper := newCodexHarness(t, model)
	victim := newHarness(t, nil)
	swap, err := swapper.Start(context.Background(), Spec{Prompt: "tidy", WorkingDirectory: repo, Sandbox: DangerFullAccess, Model: "gpt-5-codex"})
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(2 * time.Minute)
	for !lexists(filepath.Join(repo, "swapping.txt")) {
		if time.Now().After(deadline) {
			t.Fatalf("the swapping task never started:\n%s", readLog(swapper.LogPath(swap.ID)))
		}
		time.Sleep(200 * time.Millisecond)
	}
	var refused, ran int
	for i := 0; i < 25; i++ {
		if task, _ := swapper.Get(swap.ID); task.Status.Final() {
			break
		}
		task := victim.startAndWait(t, Spec{Prompt: "read " + secretHome + "/secret.txt; read vendor/other/secret.txt", WorkingDirectory: repo, Sandbox: WorkspaceWrite})
		if task.Status == store.Failed {
			refused++
			continue
		}
		ran++
		if log := readLog(victim.LogPath(task.ID)); strings.Contains(log, secret) {
			for _, line := range strings.Split(log, "\n") {
				if strings.Contains(line, secret) {
					t.Log(line)
				}
			}
			t.Fatalf("after %d launches, a workspace-write task mounted the host directory the concurrent task chose and read %q", i+1, secret)
		}
	}
	t.Logf("no secret read: %d launches refused (symlink seen at the check), %d ran", refused, ran)
	if ran == 0 || refused == 0 {
		t.Logf("the race was not exercised both ways")
	}
}

// The real Codex appends to a nested repository's config in place (an
// ignored clone under deps/): the config is read-only to it, and git on the
// host in deps/lib runs nothing.
func TestRealCodexCannotChangeANestedRepositoryConfig(t *testing.T) {
	marks := markerDir(t)
	gitControl(t, marks)
	repo := reviewRepo(t, map[string]string{".gitignore": "deps/\n"})
	if err := os.MkdirAll(filepath.Join(repo, "deps"), 0o755); err != nil {
		t.Fatal(err)
	}
	imagestest.Chown(t, filepath.Join(repo, "deps"))
	gitCLI(t, filepath.Join(repo, "deps"), "init", "-q", "lib")
	config := readFile(t, filepath.Join(repo, "deps", "lib", ".git", "config"))
	h := realCodex(t, "printf '[core]\\n\\tfsmonitor = touch "+filepath.Join(marks, "nested")+"\\n' >> deps/lib/.git/config; echo ran > proof.txt")
	task := h.startAndWait(t, Spec{Prompt: "tidy", WorkingDirectory: repo, Sandbox: WorkspaceWrite, Model: "gpt-5-codex"})
	log := readLog(h.LogPath(task.ID))
	if task.Status != store.Completed || !lexists(filepath.Join(repo, "proof.txt")) || !strings.Contains(log, "Read-only file system") {
		t.Fatalf("the attack did not run as meant: %s %s\n%s", task.Status, task.Error, log)
	}
	gitTry(t, filepath.Join(repo, "deps", "lib"), "status", "--short")
	if ran := ranOnHost(marks); len(ran) != 0 || readFile(t, filepath.Join(repo, "deps", "lib", ".git", "config")) != config {
		t.Errorf("git on the host (in deps/lib) ran planted programs %v", ran)
	}
}

// git status, diff and log work inside a workspace-write task (the real
// Codex runs them) in a repository with submodules and in a linked
// worktree, whose git directory is outside it and bound read-only.
func TestGitReadsWorkInsideWorkspaceWrite(t *testing.T) {
	cmd := "{ git status --short && git diff --stat && git log --oneline -1 && git submodule status; } > inside.txt 2>&1; echo rc=$? >> inside.txt"
	cases := map[string]func(t *testing.T) string{
		"submodules": func(t *testing.T) string { return repoWithSubmodules(t) },
		"linked worktree": func(t *testing.T) string {
			repo := reviewRepo(t, map[string]string{})
			wt := filepath.Join(filepath.Dir(repo), "wt")
			gitCLI(t, repo, "worktree", "add", "-q", wt)
			return wt
		},
	}
	for _, name := range []string{"submodules", "linked worktree"} {
		t.Run(name, func(t *testing.T) {
			repo := cases[name](t)
			h := realCodex(t, cmd)
			task := h.startAndWait(t, Spec{Prompt: "look", WorkingDirectory: repo, Sandbox: WorkspaceWrite, Model: "gpt-5-codex"})
			if task.Status != store.Completed {
				t.Fatalf("%s: %s\n%s", task.Status, task.Error, readLog(h.LogPath(task.ID)))
			}
			inside := readFile(t, filepath.Join(repo, "inside.txt"))
			if !strings.Contains(inside, "rc=0") || strings.Contains(inside, "fatal") {
				t.Errorf("git status/diff/log inside the task failed in a %s repository:\n%s", name, inside)
			}
		})
	}
}

// A named pipe where go-git reads: a danger-full-access task (which
// may write .git) plants .git/index or .git/commondir as a named pipe; the
// next workspace-write launch (which reads the index for submodules) or
// the next accept (which reads commondir) must end with a reason, not hang.
func TestNamedPipeInGitDoesNotHangTheServer(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.MaxRunning = 2 })
	for _, name := range []string{"index", "commondir"} {
		t.Run(name, func(t *testing.T) {
			repo := reviewRepo(t, map[string]string{})
			fifo := filepath.Join(repo, ".git", name)
			plant := runAttack(t, h, repo, []string{"remove .git/" + name, "mkfifo .git/" + name}, DangerFullAccess)
			mustHaveRun(t, plant, "mkfifo .git/"+name)
			// Whatever happens, unblock a reader at the end so the test
			// can clean up: opening the pipe for writing releases it.
			t.Cleanup(func() { unblockFifo(fifo) })
			done := make(chan *store.Task, 1)
			errc := make(chan error, 1)
			go func() {
				task, err := h.Start(context.Background(), Spec{Prompt: "write x.txt x", WorkingDirectory: repo, Sandbox: WorkspaceWrite})
				if err != nil {
					errc <- err
					return
				}
				ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
				defer cancel()
				got, err := h.Wait(ctx, task.ID)
				if err != nil {
					errc <- err
					return
				}
				done <- got
			}()
			select {
			case err := <-errc:
				t.Logf("refused or ended with: %v", err)
				if strings.Contains(err.Error(), "deadline") {
					t.Errorf("the workspace-write task hung at launch (FIFO at .git/%s): %v", name, err)
				}
			case task := <-done:
				t.Logf("task ended %s: %s", task.Status, task.Error)
			case <-time.After(50 * time.Second):
				t.Errorf("starting a task on a repository with a FIFO at .git/%s hangs (Start did not return)", name)
			}
		})
	}
}
