package runner

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/codex-connector/codex-connector/backend"
	"github.com/codex-connector/codex-connector/images"
	"github.com/codex-connector/codex-connector/runner/egress"
	"github.com/codex-connector/codex-connector/store"
	"github.com/codex-connector/codex-connector/workspace"
)

// Sandbox levels, as the MCP contract names them.
const (
	ReadOnly         = "read-only"
	WorkspaceWrite   = "workspace-write"
	DangerFullAccess = "danger-full-access"
)

// SandboxLevels lists the levels, most restrictive first.
var SandboxLevels = []string{ReadOnly, WorkspaceWrite, DangerFullAccess}

// DefaultSandbox is the level of the brief's contract when none is given.
const DefaultSandbox = DangerFullAccess

func validSandbox(level string) bool { return rank(level) >= 0 }

// rank orders the levels by what they allow; -1 for an unknown level.
func rank(level string) int {
	for i, l := range SandboxLevels {
		if l == level {
			return i
		}
	}
	return -1
}

// sandboxFor picks the level of a request: the one asked for, or, when
// none is, the contract's default lowered to the ceiling. A request above
// the ceiling is refused, not lowered: the caller should know.
func (r *Runner) sandboxFor(asked string) (string, error) {
	if asked == "" {
		if rank(DefaultSandbox) > rank(r.cfg.MaxSandbox) {
			return r.cfg.MaxSandbox, nil
		}
		return DefaultSandbox, nil
	}
	if !validSandbox(asked) {
		return "", invalid("sandbox %q is not a level: use one of %s", asked, strings.Join(SandboxLevels, ", "))
	}
	return asked, r.underCeiling(asked)
}

// underCeiling refuses a level above maxSandbox. The ceiling is the user's
// (config.json or the environment), never a tool argument: the caller may
// be steered by a prompt injection in the very repository the task reads.
func (r *Runner) underCeiling(level string) error {
	if rank(level) > rank(r.cfg.MaxSandbox) {
		return invalid("sandbox %s is above the ceiling this user set (maxSandbox %s, in config.json or CODEX_CONNECTOR_MAX_SANDBOX): ask for %s or lower; only the user can raise the ceiling", level, r.cfg.MaxSandbox, r.cfg.MaxSandbox)
	}
	return nil
}

// Limits bound what one task's container may use.
type Limits struct {
	MemoryBytes int64
	NanoCPUs    int64
	Pids        int64
	// TmpBytes caps the tmpfs at /tmp, where HOME also lives.
	TmpBytes int64
	// LogBytes caps the task's log: the copy ends there with a line that
	// says so, and the task is stopped. The engine's own copy of the output
	// is capped at engineLogFactor times it (logs.go says why).
	LogBytes int64
	// StateBytes caps the disk space of the task's state directory (a bind
	// mount has no quota): the task is stopped when it holds more.
	StateBytes int64
	// RecordBytes caps the encoded size of the task's record; summary
	// fields are clipped to fit.
	RecordBytes int64
	// RepoBytes caps the disk space a task may add to the work tree (a
	// bind mount has no quota either) over what it used when the run
	// began: the task is stopped when it adds more (repocap.go).
	RepoBytes int64
	// WorkspacesBytes caps the disk that the branch workspaces of live
	// tasks use together: a branch task whose workspace would pass it
	// fails before it starts (branch.go).
	WorkspacesBytes int64
	// AcceptUnenforced names the limits (memory, cpu, pids) tasks may run
	// without, on an engine that does not enforce them (enforced.go).
	AcceptUnenforced []string
}

// DefaultLimits fit a developer machine running a few tasks at once.
var DefaultLimits = Limits{MemoryBytes: 4 << 30, NanoCPUs: 2e9, Pids: 1024, TmpBytes: 1 << 30,
	LogBytes: 256 << 20, StateBytes: 1 << 30, RecordBytes: 256 << 10, RepoBytes: 2 << 30, WorkspacesBytes: 20 << 30}

// withDefaults fills the limits left unset (zero) with the defaults.
func (l Limits) withDefaults() Limits {
	d := DefaultLimits
	for _, f := range []struct{ v, def *int64 }{
		{&l.MemoryBytes, &d.MemoryBytes}, {&l.NanoCPUs, &d.NanoCPUs}, {&l.Pids, &d.Pids}, {&l.TmpBytes, &d.TmpBytes},
		{&l.LogBytes, &d.LogBytes}, {&l.StateBytes, &d.StateBytes}, {&l.RecordBytes, &d.RecordBytes}, {&l.RepoBytes, &d.RepoBytes},
		{&l.WorkspacesBytes, &d.WorkspacesBytes},
	} {
		if *f.v <= 0 {
			*f.v = *f.def
		}
	}
	return l
}

// Paths inside every task's container.
const (
	// stateMount holds the task's private, writable Codex state and the
	// last-message file. It is a bind of a per-task host directory, not a
	// tmpfs, because the last message must be readable after the container
	// exits and CODEX_HOME must outlive the run for a follow-up.
	stateMount  = "/codex-connector"
	codexHome   = stateMount + "/codex-home"
	lastMessage = stateMount + "/out/last-message.txt"
)

// Labels on every container the runner creates; the reconciler finds its
// containers by them.
const (
	LabelTask    = "codex-connector.task"
	LabelOwner   = "codex-connector.owner"
	LabelVersion = "codex-connector.version"
	LabelHome    = "codex-connector.home"
)

func containerName(id string) string { return "codex-connector-" + id }

// policy is what a sandbox level allows one task's container.
type policy struct {
	task     *store.Task
	stateDir string // host side of stateMount
	limits   Limits
	env      []string
	args     []string // extra arguments for `codex exec`, before the prompt
	version  string
	home     string // homeLabel of the data directory
	// socketDir (host) holds the task's proxy socket and nothing else:
	// for restricted levels, and for any level with model routes. bridge
	// is the static binary that runs the in-container bridge and the gate.
	socketDir string
	bridge    string
	// gate is the file name, in the state directory, whose existence lets
	// the bridge (or, at danger-full-access, `gated`) start Codex; see
	// gate.go.
	gate string
	// prompt is the file name, in the state directory, that the wrapper
	// gives Codex as its stdin: the prompt (promptfile.go).
	prompt string
	// git is what a workspace-write task binds over its repository to keep
	// git on the host out of its reach (protectGit, at launch).
	git workspace.GitMounts
	// caches are the user's package cache volumes (caches.go).
	caches []backend.Mount
	// branch are a branch task's workspace binds, in place of the work
	// tree's (branch.go).
	branch []backend.Mount
}

// containerUser picks the uid:gid the container runs as. Files Codex writes
// must stay the user's, so it is the owner of the repo root — but only when
// this process may act for that owner (it is that user, or root); otherwise a
// user could write into another user's repo with the other's identity.
func containerUser(repoRoot string) (string, error) {
	fi, err := os.Stat(repoRoot)
	if err != nil {
		return "", fmt.Errorf("stat repo root %s: %w", repoRoot, err)
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return "", fmt.Errorf("stat repo root %s: no owner information", repoRoot)
	}
	uid, gid := int(st.Uid), int(st.Gid)
	if euid := os.Geteuid(); euid != 0 && euid != uid {
		uid, gid = euid, os.Getegid()
	}
	return strconv.Itoa(uid) + ":" + strconv.Itoa(gid), nil
}

func (p policy) command() []string {
	codex := "codex"
	if p.task.BaseImage != "" || p.task.ImageBuild != nil {
		// Where the task image has it, whatever PATH env sets.
		codex = images.TaskCodex
	}
	cmd := []string{codex, "exec"}
	switch {
	case p.task.ResumeThread != "":
		cmd = append(cmd, "resume") // a reply (reply.go)
	case p.task.Review != nil:
		cmd = append(cmd, "review") // review.go
	}
	// Nothing in CODEX_HOME configures Codex: codex-connector's settings
	// go in as -c, and a config.toml or rules file there was written by a
	// task (a relaunch of this one reuses its state).
	cmd = append(cmd, "--json", "--skip-git-repo-check", "--ignore-user-config", "--ignore-rules",
		"--dangerously-bypass-approvals-and-sandbox", "--output-last-message", lastMessage)
	if p.task.Model != "" {
		cmd = append(cmd, "--model", p.task.Model)
	}
	cmd = append(cmd, p.args...)
	if p.task.Effort != "" {
		// After the configured overrides: the request wins.
		cmd = append(cmd, "-c", "model_reasoning_effort="+strconv.Quote(p.task.Effort))
	}
	if rv := p.task.Review; rv != nil {
		return p.gated(append(cmd, reviewArgs(rv)...))
	}
	// "--" keeps a prompt that starts with "-" from being read as a flag.
	cmd = append(cmd, "--")
	if p.task.ResumeThread != "" {
		cmd = append(cmd, p.task.ResumeThread)
	}
	// The prompt itself comes through stdin, never the command line
	// (promptfile.go).
	cmd = append(cmd, stdinPrompt)
	return p.gated(cmd)
}

// gated puts the bridge or the gate in front of Codex's command.
func (p policy) gated(cmd []string) []string {
	if p.socketDir != "" {
		// Codex runs under the bridge: a restricted task's only way to the
		// network, and at every level the way to its model routes.
		bridge := []string{bridgeBinary, "egress-bridge", "--listen", bridgeListen, "--socket", egressMount + "/" + egress.SocketName}
		bridge = append(bridge, p.wrapperFlags()...)
		if !restricted(p.task.Sandbox) {
			bridge = append(bridge, "--routes-only")
		}
		cmd = append(append(bridge, "--"), cmd...)
	} else if p.gate != "" || p.prompt != "" {
		cmd = append(append(append([]string{bridgeBinary, "gated"}, p.wrapperFlags()...), "--"), cmd...)
	}
	return cmd
}

// wrapperFlags are the flags of the bridge and of `gated` that hold Codex
// at the gate and give it the prompt file as stdin.
func (p policy) wrapperFlags() []string {
	var flags []string
	if p.gate != "" {
		flags = append(flags, "--gate", stateMount+"/"+p.gate)
	}
	if p.prompt != "" {
		flags = append(flags, "--stdin", stateMount+"/"+p.prompt)
	}
	return flags
}

func (p policy) mounts() []backend.Mount {
	t := p.task
	// Non-recursive: a mount below the repo on the host is not carried in,
	// and on engines before 25 a read-only recursive bind would leave such
	// sub-mounts writable.
	ms := []backend.Mount{
		{Source: t.RepoRoot, Target: t.RepoRoot, ReadOnly: t.Sandbox == ReadOnly, NonRecursive: true},
		{Source: p.stateDir, Target: stateMount},
	}
	if len(p.branch) > 0 {
		// Its own checkout, with a .git of its own: nothing of the user's
		// work tree or git directory is bound but the objects, read-only.
		ms = append(append([]backend.Mount(nil), p.branch...), ms[1])
		ms[0].ReadOnly = t.Sandbox == ReadOnly // a review of a branch
	}
	if p.socketDir != "" {
		// Read-only: a socket connects on a read-only mount, and the task
		// can neither replace its socket nor leave anything beside it.
		ms = append(ms, backend.Mount{Source: p.socketDir, Target: egressMount, ReadOnly: true})
	}
	if p.bridge != "" {
		// The bridge, and the gate at every level.
		ms = append(ms, backend.Mount{Source: p.bridge, Target: bridgeBinary, ReadOnly: true})
	}
	ms = append(ms, p.caches...)
	if p.git.Linked != "" {
		ms = append(ms, backend.Mount{Source: p.git.Linked, Target: p.git.Linked, ReadOnly: true, NonRecursive: true})
	}
	// Read-only binds over a writable repository, and the directories
	// pinned as mount points so that they cannot be renamed.
	for _, d := range p.git.Pinned {
		ms = append(ms, backend.Mount{Source: d, Target: d, NonRecursive: true})
	}
	for _, src := range p.git.ReadOnly {
		ms = append(ms, backend.Mount{Source: src, Target: src, ReadOnly: true, NonRecursive: true})
	}
	return ms
}

// spec is the run of the task as the policy allows it.
func (p policy) spec() backend.Spec {
	t := p.task
	env := append([]string{
		"HOME=/tmp",
		"CODEX_HOME=" + codexHome,
	}, p.env...)
	image := t.Image
	if t.ImageID != "" {
		image = t.ImageID // what was recorded, even if the tag moved since
	}
	s := backend.Spec{
		Task:    t.ID,
		Name:    t.ContainerName,
		Image:   image,
		Command: p.command(),
		Env:     env,
		User:    t.User,
		WorkDir: t.WorkingDirectory,
		Labels: map[string]string{
			LabelComponent: "task",
			LabelTask:      t.ID,
			LabelOwner:     strconv.Itoa(os.Geteuid()),
			LabelVersion:   p.version,
			LabelHome:      p.home,
		},
		Mounts: p.mounts(),
		// The engine's own copy of the output is a few times the task's
		// log cap, since it stores each line as JSON (logs.go says why).
		Limits: backend.Limits{MemoryBytes: p.limits.MemoryBytes, NanoCPUs: p.limits.NanoCPUs, Pids: p.limits.Pids,
			TmpBytes: p.limits.TmpBytes, LogBytes: engineLogCap(p.limits.LogBytes)},
		Network: backend.Bridged,
	}
	if t.Engine != nil {
		s.Runtime = t.Engine.Runtime // as checkEnforced probed it
	}
	if restricted(t.Sandbox) {
		// No interface but loopback, no DNS, no route: the egress proxy,
		// through a socket, is the only way out.
		s.Network = backend.NoNetwork
	}
	if p.gate != "" {
		g := &backend.Gate{File: filepath.Join(p.stateDir, p.gate)}
		for _, b := range p.git.Bound {
			g.Bound = append(g.Bound, backend.Bound{Path: b.Path, Dev: b.Dev, Ino: b.Ino})
		}
		s.Gate = g
	}
	return s
}
