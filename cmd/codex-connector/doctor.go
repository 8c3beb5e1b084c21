package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	dockerbe "github.com/codex-connector/codex-connector/backend/docker"
	"github.com/codex-connector/codex-connector/internal/hostfs"
	"github.com/codex-connector/codex-connector/workspace"

	"github.com/codex-connector/codex-connector/images"
	"github.com/codex-connector/codex-connector/runner"
	"github.com/codex-connector/codex-connector/store"
	"github.com/codex-connector/codex-connector/view"
	"github.com/docker/docker/client"
)

var doctorCommand = &command{
	name: "doctor", summary: "check that tasks can run here, and say how to fix what cannot (alias: check)",
	help: `Checks, one line each, what tasks need: the Docker engine, the limits it
enforces, the Codex image, credentials for the model, the data directory,
the task database, the egress proxy, and the allowed roots and sandbox
ceiling. Each failed check says how to fix it. It exits 1 when any check
fails.

It changes nothing of yours: not the data directory, nor the egress proxy.
To see what the engine enforces it runs one short container of the helper
image (built from this binary if it is missing), as a task's server does.`,
	needs: needsConfig, // the Docker client is made here: an unreachable engine is a finding
	run: func(e *env, _ any, args []string) error {
		if len(args) > 0 {
			return e.cmd.usagef("doctor takes no arguments")
		}
		return doctor(e)
	},
}

// finding is one check's outcome.
type finding struct {
	name   string
	failed bool
	detail string   // what was seen
	fix    string   // what to do, when failed
	notes  []string // what else is worth knowing
}

// fromError makes a failed finding of err, whose text says after " — "
// what to do, as errors here do.
func fromError(name string, err error, fix string) finding {
	problem, how, ok := strings.Cut(err.Error(), " — ")
	if ok && fix == "" {
		fix = how
	} else if ok {
		problem = err.Error()
	}
	return finding{name: name, failed: true, detail: problem, fix: fix}
}

func (f finding) write(w io.Writer) {
	mark := "pass"
	if f.failed {
		mark = "FAIL"
	}
	fmt.Fprintf(w, "%s  %-11s %s\n", mark, f.name, f.detail)
	for _, n := range f.notes {
		fmt.Fprintf(w, "      %-11s note: %s\n", "", n)
	}
	if f.failed && f.fix != "" {
		fmt.Fprintf(w, "      %-11s fix: %s\n", "", f.fix)
	}
}

func doctor(e *env) error {
	cfg := e.cfg
	var findings []finding
	report := func(f finding) {
		findings = append(findings, f)
		f.write(e.stdout)
	}

	engine, docker, facts, probeErr := checkEngine(e)
	report(engine)
	if !engine.failed {
		report(checkLimits(cfg, facts, probeErr))
		for _, runtime := range cfg.Toolchains.Runtimes() {
			if runtime != "" {
				report(checkRuntime(e, cfg, docker, runtime))
			}
		}
	} else {
		report(finding{name: "limits", failed: true, detail: "not checked: it needs the Docker engine", fix: "fix the engine first"})
	}
	if !engine.failed {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		cimg, err := (images.Codex{Ref: cfg.Image, Version: cfg.CodexVersion}).Inspect(ctx, docker)
		if err != nil {
			report(fromError("image", err, ""))
		} else {
			f := finding{name: "image", detail: fmt.Sprintf("%s, %s", cfg.Image, view.ShortID(cimg.ID))}
			if cfg.CodexVersion != "" {
				f.detail += " with Codex " + cfg.CodexVersion
			}
			var b bytes.Buffer
			checkImages(ctx, &b, cfg, docker, cimg)
			f.notes = lines(b.String(), "images: ")
			report(f)
		}
		cancel()
	} else {
		report(finding{name: "image", failed: true, detail: "not checked: it needs the Docker engine", fix: "fix the engine first"})
	}

	var creds bytes.Buffer
	credErr := checkCredentials(&creds, cfg)
	cf := finding{name: "credentials"}
	said := lines(creds.String(), "credentials: ")
	if credErr != nil {
		cf = fromError("credentials", errors.New(strings.TrimPrefix(credErr.Error(), "credentials: ")), "")
		cf.notes = said
	} else if len(said) > 0 {
		cf.detail, cf.notes = said[0], said[1:]
	}
	report(cf)

	report(checkHome(cfg.Home))
	report(checkDatabase(cfg))

	if !engine.failed {
		report(checkEgress(cfg, docker))
	} else {
		report(finding{name: "egress", failed: true, detail: "not checked: it needs the Docker engine", fix: "fix the engine first"})
	}
	report(checkSandbox(cfg))
	report(checkWorkspaces(cfg))

	failed := 0
	for _, f := range findings {
		if f.failed {
			failed++
		}
	}
	if failed > 0 {
		fmt.Fprintf(e.stdout, "\n%d of %d checks failed: fix them, then run codex-connector doctor again.\n", failed, len(findings))
		return exitCode(1)
	}
	fmt.Fprintf(e.stdout, "\nready: add it to Claude Code with `claude mcp add codex-connector -- codex-connector`,\n"+
		"or {\"mcpServers\":{\"codex-connector\":{\"command\":\"codex-connector\"}}} in ~/.mcp.json; or try `codex-connector run \"TASK\"` in a repository.\n")
	return nil
}

// checkEngine dials the engine and says which it is.
func checkEngine(e *env) (finding, *client.Client, *dockerbe.Facts, error) {
	docker, err := newDockerClient()
	if err != nil {
		return fromError("docker", err, "check DOCKER_HOST"), nil, nil, nil
	}
	e.docker = docker
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	host := docker.DaemonHost()
	if _, err := docker.Ping(ctx); err != nil {
		return finding{name: "docker", failed: true, detail: fmt.Sprintf("the engine at %s does not answer: %v", host, err),
			fix: "start Docker (e.g. `sudo systemctl start docker`, or dockerd), or set DOCKER_HOST to the engine you use; a user not in the docker group needs rootless Docker or to be added to it"}, nil, nil, nil
	}
	f := finding{name: "docker"}
	self, err := os.Executable()
	if err != nil {
		return fromError("docker", err, ""), nil, nil, nil
	}
	// What the engine says, and what a look from inside one of its runs
	// shows (Podman 4 does not say it is rootless).
	pctx, pcancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer pcancel()
	be := dockerbe.New(docker)
	facts, probeErr := runner.EngineFacts(pctx, be, e.cfg.Home, self, "")
	if probeErr != nil {
		// What the engine says of itself still names it; the limits check
		// says why the probe failed.
		d, err := be.Describe(ctx)
		if err != nil {
			return fromError("docker", err, "check that the engine at "+host+" is Docker or Podman"), nil, nil, nil
		}
		facts = dockerbe.Facts{Description: d}
	}
	mode := "rootful"
	if facts.Rootless() {
		mode = "rootless"
	}
	f.detail = fmt.Sprintf("%s, at %s", facts, host)
	if probeErr != nil && !facts.SaysRootless {
		f.detail += " (rootless or not: not seen, see limits)"
	}
	if facts.Name == "Docker" && strings.HasPrefix(facts.Version, "20.10.") {
		// Seen here under the tests' container churn.
		f.notes = append(f.notes, fmt.Sprintf("Docker %s can hang when many containers start and stop at once (moby/moby#46661); Docker 23 or newer is safer", facts.Version))
	}
	if facts.Enforced.UserNamespace {
		f.notes = append(f.notes, "its runs are in a user namespace: uids inside map to other uids on this machine")
	}
	if mode == "rootful" {
		f.notes = append(f.notes, "with a rootful engine, anyone who can reach its socket is root on this machine; rootless Docker or Podman keeps tasks to your own user (the README's \"On a shared machine\")")
	}
	if probeErr != nil {
		return f, docker, nil, probeErr
	}
	return f, docker, &facts, nil
}

// checkLimits says which limits the engine enforces on its runs, as the
// probe of checkEngine saw from inside one, and fails when tasks would be
// refused for it.
func checkLimits(cfg config, facts *dockerbe.Facts, probeErr error) finding {
	if facts == nil {
		return fromError("limits", probeErr, "the helper image is this binary in an image FROM scratch: build codex-connector with `make build` (a static binary), and check that the engine can build and run images")
	}
	return limitsFinding("limits", "", "tasks", " (seen from inside one)", cfg, facts)
}

// limitsFinding is the finding name of what facts' runs get: lead and
// whose name the runs ("runsc: ", "its tasks"), seen says how it was seen.
// It fails when tasks would be refused for a limit not enforced.
func limitsFinding(name, lead, whose, seen string, cfg config, facts *dockerbe.Facts) finding {
	missing := facts.Enforced.Missing()
	if len(missing) == 0 {
		return finding{name: name, detail: fmt.Sprintf("%smemory, cpu and pids limits are enforced on %s%s", lead, whose, seen)}
	}
	detail := fmt.Sprintf("%s%s NOT enforced on %s by %s%s", lead, strings.Join(missing, ", "), whose, facts, seen)
	if len(runner.RefusedLimits(missing, cfg.Limits.AcceptUnenforced)) == 0 {
		return finding{name: name, detail: detail + "; accepted by limits.acceptUnenforced: a task may take all of this machine's " + strings.Join(missing, ", ")}
	}
	return finding{name: name, failed: true, detail: detail + "; " + whose + " will not start", fix: runner.UnenforcedFix(missing)}
}

// checkRuntime checks a runtime config.json names for tasks (images.runtime,
// images.repos[].runtime): the engine has it, set up as tasks need, and
// what its runs get, as a probe under it saw.
func checkRuntime(e *env, cfg config, docker *client.Client, runtime string) finding {
	self, err := os.Executable()
	if err != nil {
		return fromError("runtime", err, "")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	facts, err := runner.EngineFacts(ctx, dockerbe.New(docker), e.cfg.Home, self, runtime)
	if err != nil {
		f := fromError("runtime", err, "")
		f.detail = runtime + ": " + f.detail
		return f
	}
	kernel := "the host's kernel"
	if facts.Enforced.Sandboxed {
		kernel = fmt.Sprintf("a kernel of its own (%q), so its limits were read on the host's cgroup of its sandbox", strings.TrimSpace(strings.SplitN(facts.Enforced.Kernel, "#", 2)[0]))
	}
	return limitsFinding("runtime", runtime+": ", "its tasks", "; they run on "+kernel, cfg, &facts)
}

// checkHome checks that the data directory is the user's own and writable.
func checkHome(home string) finding {
	f := finding{name: "data", detail: home}
	fi, err := os.Stat(home)
	if errors.Is(err, os.ErrNotExist) {
		parent := filepath.Dir(home)
		if err := syscall.Access(parent, 2 /* W_OK */); err != nil {
			return finding{name: "data", failed: true, detail: fmt.Sprintf("%s does not exist, and %s is not writable: %v", home, parent, err),
				fix: "create it (mkdir -m 700 " + home + ") or set CODEX_CONNECTOR_HOME to a directory of yours"}
		}
		f.detail += " (not there yet; the first task makes it)"
		return f
	}
	if err != nil {
		return fromError("data", err, "set CODEX_CONNECTOR_HOME to a directory of yours")
	}
	if !fi.IsDir() {
		return finding{name: "data", failed: true, detail: home + " is not a directory", fix: "move it away, or set CODEX_CONNECTOR_HOME"}
	}
	st := fi.Sys().(*syscall.Stat_t)
	if int(st.Uid) != os.Geteuid() {
		return finding{name: "data", failed: true, detail: fmt.Sprintf("%s belongs to uid %d, not to you (uid %d)", home, st.Uid, os.Geteuid()),
			fix: "use a data directory of your own: set CODEX_CONNECTOR_HOME, or chown it"}
	}
	if fi.Mode().Perm()&0o022 != 0 {
		return finding{name: "data", failed: true, detail: fmt.Sprintf("%s is writable by others (mode %o): they could plant task records and logs", home, fi.Mode().Perm()),
			fix: "chmod 700 " + home}
	}
	probe, err := os.CreateTemp(home, ".doctor-*")
	if err != nil {
		return finding{name: "data", failed: true, detail: fmt.Sprintf("cannot write in %s: %v", home, err), fix: "free some space, or make it writable for you"}
	}
	probe.Close()
	os.Remove(probe.Name())
	if fi.Mode().Perm()&0o077 != 0 {
		f.notes = append(f.notes, fmt.Sprintf("mode %o lets others read task logs and results; chmod 700 %s keeps them yours", fi.Mode().Perm(), home))
	}
	var sfs syscall.Statfs_t
	if syscall.Statfs(home, &sfs) == nil {
		free := sfs.Bavail * uint64(sfs.Bsize)
		f.detail += fmt.Sprintf(" (yours, writable, %.1f GiB free)", float64(free)/(1<<30))
		if free < 1<<30 {
			f.notes = append(f.notes, "less than 1 GiB free: logs of long tasks may not fit")
		}
	}
	return f
}

// checkDatabase reads the task database as a server would.
func checkDatabase(cfg config) finding {
	path := filepath.Join(cfg.Home, "tasks.db")
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		return finding{name: "database", detail: path + " (not there yet; the first task makes it)"}
	}
	if err := store.New(path, cfg.LockTimeout).Check(); err != nil {
		return fromError("database", err, "")
	}
	return finding{name: "database", detail: path + " reads"}
}

// checkEgress looks at the egress proxy, which read-only and
// workspace-write tasks reach the network through, without changing it: a
// proxy replaced under running tasks would drop their connections.
func checkEgress(cfg config, docker *client.Client) finding {
	self, err := os.Executable()
	if err != nil {
		return fromError("egress", err, "")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	detail, err := runner.EgressStatus(ctx, docker, cfg.Home, self, version)
	if err != nil {
		return fromError("egress", err, "")
	}
	return finding{name: "egress", detail: detail}
}

// checkSandbox checks the allowed roots and says the ceiling.
func checkSandbox(cfg config) finding {
	f := finding{name: "sandbox", detail: fmt.Sprintf("tasks may run under %s, at up to %s (maxSandbox)", strings.Join(cfg.AllowedRoots, ", "), cfg.MaxSandbox)}
	var missing []string
	for _, root := range cfg.AllowedRoots {
		if fi, err := os.Stat(root); err != nil || !fi.IsDir() {
			missing = append(missing, root)
		}
	}
	if len(missing) > 0 {
		f.failed = true
		f.detail = fmt.Sprintf("allowed roots that are not directories: %s", strings.Join(missing, ", "))
		f.fix = "correct allowedRoots in config.json (or CODEX_CONNECTOR_ALLOWED_ROOTS)"
	}
	if cfg.MaxSandbox == runner.DangerFullAccess {
		f.notes = append(f.notes, "callers may ask for danger-full-access (the default level): full network and .git; set maxSandbox to workspace-write in config.json to keep every task off the network and out of .git")
	}
	return f
}

// checkWorkspaces says where tasks work by default, and what the branch
// workspaces of running tasks use of their cap.
func checkWorkspaces(cfg config) finding {
	kind := cfg.Workspace
	if kind == "" {
		kind = workspace.KindShared
	}
	limit := cfg.Limits.WorkspacesBytes
	if limit <= 0 {
		limit = runner.DefaultLimits.WorkspacesBytes
	}
	dir := filepath.Join(cfg.Home, "workspaces")
	entries, _ := os.ReadDir(dir)
	var used int64
	if len(entries) > 0 {
		var err error
		if used, err = hostfs.TreeUsage(dir, 0); err != nil {
			return fromError("workspaces", fmt.Errorf("measure %s: %w", dir, err), "")
		}
	}
	f := finding{name: "workspaces", detail: fmt.Sprintf("tasks that ask for none work in the %s workspace (workspace in config.json); %d branch workspace(s) use %s of the %d MiB limits.workspacesMB allows", kind, len(entries), hostfs.HumanSize(used), limit>>20)}
	if used > limit {
		f.notes = append(f.notes, "branch tasks fail to start until workspaces go: they go when their tasks end; `codex-connector prune` removes those of ended tasks whose branch could not be made")
	}
	return f
}

// lines splits printed lines and takes a prefix off each.
func lines(s, prefix string) []string {
	var out []string
	for _, l := range strings.Split(strings.TrimSpace(s), "\n") {
		if l = strings.TrimPrefix(strings.TrimSpace(l), prefix); l != "" {
			out = append(out, l)
		}
	}
	return out
}
