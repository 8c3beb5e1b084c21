package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/codex-connector/codex-connector/images"
	"github.com/codex-connector/codex-connector/runner"
	"github.com/codex-connector/codex-connector/workspace"
)

// config is everything the process is told from outside, in one place: the
// file <home>/config.json, then the environment, which wins.
type config struct {
	Home         string
	Image        string
	CodexVersion string
	MaxRunning   int
	StopGrace    time.Duration
	StallTimeout time.Duration
	LockTimeout  time.Duration
	// Lease is how long a server's claim on a task holds without renewal;
	// another server takes a task over when it lapses.
	Lease  time.Duration
	Limits runner.Limits
	// CodexArgs are -c overrides for `codex exec`, from codexConfig.
	CodexArgs []string
	// Env is passed into every task's container (NAME=value): never a
	// provider's key, which goes in Routes.
	Env []string
	// Routes are the model providers tasks reach through the egress proxy,
	// which alone holds their keys.
	Routes []runner.ModelRoute
	// AuthFile is the user's ChatGPT login, copied into each task without
	// its refresh token when no API key is given.
	AuthFile string
	// CABundle is the host's CA certificates, for the proxy's TLS to the
	// model providers.
	CABundle string
	// ModelHosts are reachable from every restricted sandbox (the hosts of
	// a ChatGPT login); AllowedHosts from workspace-write too. Both
	// host:port.
	ModelHosts   []string
	AllowedHosts []string
	// AllowedRoots are where tasks may run.
	AllowedRoots []string
	// MaxSandbox is the highest sandbox level a caller may ask for.
	MaxSandbox string
	// Workspace is the workspace kind of a task that asks for none.
	Workspace string
	// Retention removes tasks that ended this long ago; 0 keeps them.
	Retention time.Duration
	// Toolchains choose the image each repository's tasks run on; Caches
	// are the package caches tasks that may write get.
	Toolchains runner.Toolchains
	Caches     []string
	// FollowAfterExit leaves a detached follower behind a server that exits
	// (or dies) while tasks are live, so that they run to their end.
	FollowAfterExit bool
	// ProxyIdle is how long the follower keeps the egress proxy after the
	// last task ended, for the next one-shot client to find it running.
	ProxyIdle time.Duration

	// From config.json, for loadConfig to finish once the file is read:
	// the model providers it names, env and passEnv.
	providers     map[string]*providerConfig
	modelProvider string
	openAIBaseURL string
	fileEnv       map[string]string
	passEnv       []string
}

// fileConfig is the shape of config.json.
type fileConfig struct {
	Image        string `json:"image"`
	CodexVersion string `json:"codexVersion"`
	MaxRunning   int    `json:"maxRunning"`
	StopGrace    string `json:"stopGrace"`
	StallTimeout string `json:"stallTimeout"`
	// ProxyIdle is how long the egress proxy is kept after the last task.
	ProxyIdle string `json:"proxyIdle"`
	// Retention is how long ended tasks are kept ("30d", "720h"); unset
	// keeps them forever.
	Retention string `json:"retention"`
	// CodexConfig becomes `-c key=value` arguments of codex exec: strings
	// are quoted as TOML strings, numbers and booleans kept as they are.
	CodexConfig map[string]any `json:"codexConfig"`
	// Env sets variables in the container; PassEnv copies them from the
	// server's environment.
	Env     map[string]string `json:"env"`
	PassEnv []string          `json:"passEnv"`
	// AllowedHosts (host:port, "*.example.com:443" for sub-domains) are
	// reachable from workspace-write tasks, besides the model API.
	AllowedHosts []string `json:"allowedHosts"`
	// AllowedRoots replace the default (the home directory).
	AllowedRoots []string `json:"allowedRoots"`
	// MaxSandbox is the ceiling on the sandbox level a caller may ask for.
	MaxSandbox string `json:"maxSandbox"`
	// Workspace is the default workspace kind: shared or branch.
	Workspace string `json:"workspace"`
	// Images choose the toolchain image of each repository (see the
	// README's "Your toolchain in tasks").
	Images *imagesConfig `json:"images"`
	// Caches are the package caches kept between a user's tasks; unset
	// keeps them all, [] none.
	Caches *[]string `json:"caches"`
	// FollowAfterExit: false leaves live tasks unfollowed while no server
	// runs (they go on when one starts).
	FollowAfterExit *bool `json:"followAfterExit"`
	Limits          struct {
		MemoryMB int     `json:"memoryMB"`
		CPUs     float64 `json:"cpus"`
		Pids     int64   `json:"pids"`
		TmpMB    int     `json:"tmpMB"`
		// LogMB caps a task's log (and the engine's copy of its output);
		// StateMB its state directory; RecordKB its record; RepoMB what
		// it adds to the work tree.
		LogMB    int `json:"logMB"`
		StateMB  int `json:"stateMB"`
		RecordKB int `json:"recordKB"`
		RepoMB   int `json:"repoMB"`
		// WorkspacesMB caps the disk all branch workspaces use at once.
		WorkspacesMB int `json:"workspacesMB"`
		// AcceptUnenforced names the limits tasks may run without on an
		// engine that does not enforce them.
		AcceptUnenforced []string `json:"acceptUnenforced"`
	} `json:"limits"`
}

// imagesConfig is the "images" object of config.json.
type imagesConfig struct {
	Default      string `json:"default"`
	Devcontainer bool   `json:"devcontainer"`
	// Runtime is the engine's runtime tasks run under (e.g. "runsc" for
	// gVisor); a repository's entry may name its own.
	Runtime string `json:"runtime"`
	Repos   []struct {
		Path         string          `json:"path"`
		Image        string          `json:"image"`
		Runtime      string          `json:"runtime"`
		Devcontainer json.RawMessage `json:"devcontainer"`
		// BuildNetwork lets the RUN steps of a dev container build reach
		// the engine's default network; they have none without it.
		BuildNetwork bool `json:"buildNetwork"`
	} `json:"repos"`
}

// toolchains reads the images object: paths may start with ~/, and a
// directory is taken through its symlinks as repositories are.
func (ic *imagesConfig) toolchains(home string) (runner.Toolchains, error) {
	tc := runner.Toolchains{Default: strings.TrimSpace(ic.Default), Devcontainer: ic.Devcontainer, Runtime: strings.TrimSpace(ic.Runtime)}
	if err := checkRuntimeName(tc.Runtime); err != nil {
		return tc, fmt.Errorf("images.runtime: %w", err)
	}
	if tc.Default != "" {
		if err := images.CheckRef(tc.Default); err != nil {
			return tc, fmt.Errorf("images.default: %w", err)
		}
	}
	for i, e := range ic.Repos {
		field := fmt.Sprintf("images.repos[%d]", i)
		p := strings.TrimSpace(e.Path)
		if rest, ok := strings.CutPrefix(p, "~/"); ok && home != "" {
			p = filepath.Join(home, rest)
		}
		if !filepath.IsAbs(p) {
			return tc, fmt.Errorf("%s.path: want an absolute path, ~/path or pattern such as /home/me/src/*, got %q", field, e.Path)
		}
		if _, err := filepath.Match(p, ""); err != nil {
			return tc, fmt.Errorf("%s.path: %q is not a valid pattern: %w", field, e.Path, err)
		}
		if !strings.ContainsAny(p, "*?[") {
			p = filepath.Clean(p)
			if real, err := filepath.EvalSymlinks(p); err == nil {
				p = real
			}
		}
		rule := runner.ToolchainRule{Path: p, Image: strings.TrimSpace(e.Image), Runtime: strings.TrimSpace(e.Runtime)}
		if err := checkRuntimeName(rule.Runtime); err != nil {
			return tc, fmt.Errorf("%s.runtime: %w", field, err)
		}
		if rule.Image != "" {
			if err := images.CheckRef(rule.Image); err != nil {
				return tc, fmt.Errorf("%s.image: %w", field, err)
			}
		}
		switch v := strings.TrimSpace(string(e.Devcontainer)); v {
		case "":
		case "true":
			rule.Devcontainer = runner.DevcontainerImage
		case "false":
			rule.Devcontainer = runner.DevcontainerOff
		case `"build"`:
			rule.Devcontainer = runner.DevcontainerBuild
		default:
			return tc, fmt.Errorf("%s.devcontainer: want true (its image), \"build\" (also build its Dockerfile) or false, got %s", field, v)
		}
		if rule.BuildNetwork = e.BuildNetwork; rule.BuildNetwork && rule.Devcontainer != runner.DevcontainerBuild {
			return tc, fmt.Errorf("%s.buildNetwork: it is for dev container builds; set \"devcontainer\": \"build\" too, or drop it", field)
		}
		if rule.Image == "" && rule.Devcontainer == runner.DevcontainerInherit && rule.Runtime == "" {
			return tc, fmt.Errorf("%s: give an image, devcontainer or runtime", field)
		}
		tc.Rules = append(tc.Rules, rule)
	}
	return tc, nil
}

// checkRuntimeName checks the name of an engine runtime ("" the engine's
// default): what the engine registers it under, e.g. runsc.
func checkRuntimeName(name string) error {
	if name == "" {
		return nil
	}
	for i, c := range name {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || i > 0 && strings.ContainsRune("._-", c)) {
			return fmt.Errorf("want the name the engine registers a runtime under, such as \"runsc\", got %q", name)
		}
	}
	return nil
}

// envNames documents every variable codex-connector reads.
var envNames = []string{
	"CODEX_CONNECTOR_HOME           data directory and config.json (default ~/.codex-connector)",
	"CODEX_CONNECTOR_IMAGE          Codex image (default " + images.RefOf("<CODEX_CONNECTOR_CODEX_VERSION>") + ", the one `make image CODEX_VERSION=…` builds)",
	"CODEX_CONNECTOR_CODEX_VERSION  Codex version the image must carry (default " + images.DefaultCodexVersion + "; \"any\" skips the check)",
	"CODEX_CONNECTOR_MAX_RUNNING    tasks run at once; more wait queued (default 4)",
	"CODEX_CONNECTOR_STOP_GRACE     time Codex gets between SIGTERM and SIGKILL (default 10s)",
	"CODEX_CONNECTOR_STALL_TIMEOUT  end a task that makes no progress this long (default 10m; 0 = never)",
	"CODEX_CONNECTOR_PROXY_IDLE     keep the egress proxy this long after the last task ended (default 10m; 0 = remove it at once)",
	"OPENAI_API_KEY                 the key of Codex's built-in OpenAI provider (or CODEX_API_KEY): kept on the host, added by the egress proxy; tasks get a placeholder",
	"CODEX_HOME                     where your Codex login is (default ~/.codex), used when no API key is set",
	"CODEX_CONNECTOR_ALLOWED_ROOTS  directories tasks may run under, separated by ':' (default: the home directory)",
	"CODEX_CONNECTOR_LEASE          how long a server's claim on a task holds unrenewed (default 30s)",
	"CODEX_CONNECTOR_RETENTION      remove tasks (record, log, result) this long after they ended, e.g. 30d (default: keep)",
	"CODEX_CONNECTOR_LOCK_TIMEOUT   how long a call waits for another server's hold on tasks.db (default 5s)",
	"CODEX_CONNECTOR_MAX_SANDBOX    the highest sandbox level a caller may ask for: read-only, workspace-write or danger-full-access (default)",
	"CODEX_CONNECTOR_WORKSPACE      where a task that asks for none works: shared (default; the work tree) or branch (a checkout of its own)",
	"CODEX_CONNECTOR_LOG_MB         stop a task whose log passes this many MiB; the engine keeps no more either (default 256)",
	"CODEX_CONNECTOR_STATE_MB       stop a task whose state directory passes this many MiB on disk (default 1024)",
	"CODEX_CONNECTOR_RECORD_KB      the most a task's record holds, in KiB; its summary is clipped to fit (default 256)",
	"CODEX_CONNECTOR_REPO_MB        stop a task that adds more than this many MiB on disk to the work tree (default 2048)",
	"CODEX_CONNECTOR_FOLLOW_AFTER_EXIT  false: no detached follower runs live tasks on while no server does (default true)",
}

// sizeLimits are the limits set in whole units, in config.json and the
// environment alike: name in the file, variable, unit, the least allowed.
var sizeLimits = []struct {
	field, env string
	unit, min  int64
	dst        func(*runner.Limits) *int64
}{
	{"limits.logMB", "CODEX_CONNECTOR_LOG_MB", 1 << 20, 1, func(l *runner.Limits) *int64 { return &l.LogBytes }},
	{"limits.stateMB", "CODEX_CONNECTOR_STATE_MB", 1 << 20, 1, func(l *runner.Limits) *int64 { return &l.StateBytes }},
	// A record holds the task text (up to a quarter of it) beside the summary.
	{"limits.recordKB", "CODEX_CONNECTOR_RECORD_KB", 1 << 10, 16, func(l *runner.Limits) *int64 { return &l.RecordBytes }},
	{"limits.repoMB", "CODEX_CONNECTOR_REPO_MB", 1 << 20, 1, func(l *runner.Limits) *int64 { return &l.RepoBytes }},
	{"limits.workspacesMB", "CODEX_CONNECTOR_WORKSPACES_MB", 1 << 20, 1, func(l *runner.Limits) *int64 { return &l.WorkspacesBytes }},
}

// setSize applies a size limit of n units, refusing one below its least.
func setSize(l *runner.Limits, i int, n int64) error {
	s := sizeLimits[i]
	if n < s.min || n > (1<<62)/s.unit {
		return fmt.Errorf("want a whole number of at least %d, got %d", s.min, n)
	}
	*s.dst(l) = n * s.unit
	return nil
}

func loadConfig(getenv func(string) string) (config, error) {
	c := config{
		CodexVersion:    images.DefaultCodexVersion,
		MaxRunning:      4,
		StopGrace:       10 * time.Second,
		StallTimeout:    10 * time.Minute,
		LockTimeout:     5 * time.Second,
		Lease:           runner.DefaultLease,
		Limits:          runner.DefaultLimits,
		MaxSandbox:      runner.DangerFullAccess,
		FollowAfterExit: true,
		ProxyIdle:       10 * time.Minute,
		Caches:          runner.DefaultCaches,
	}
	home, _ := os.UserHomeDir()
	if home != "" {
		c.AllowedRoots = []string{home}
	}
	c.Home = getenv("CODEX_CONNECTOR_HOME")
	if c.Home == "" {
		if home == "" {
			return c, errors.New("cannot find the home directory: set CODEX_CONNECTOR_HOME")
		}
		c.Home = filepath.Join(home, ".codex-connector")
	}
	if !filepath.IsAbs(c.Home) {
		return c, fmt.Errorf("CODEX_CONNECTOR_HOME must be an absolute path, got %q", c.Home)
	}
	if err := c.applyFile(filepath.Join(c.Home, "config.json"), getenv); err != nil {
		return c, err
	}
	if err := c.applyEnv(getenv); err != nil {
		return c, err
	}
	if c.Image == "" {
		// The image `make image CODEX_VERSION=…` built: upgrading Codex is
		// that build and this version, not a third setting to keep in step.
		version := c.CodexVersion
		if version == "any" {
			version = images.DefaultCodexVersion
		}
		c.Image = images.RefOf(version)
		if err := images.CheckRef(c.Image); err != nil {
			return c, fmt.Errorf("the Codex version %q (CODEX_CONNECTOR_CODEX_VERSION or codexVersion) does not name an image (%s): give a version such as %s, or set CODEX_CONNECTOR_IMAGE", version, c.Image, images.DefaultCodexVersion)
		}
	}
	if c.CodexVersion == "any" {
		c.CodexVersion = ""
	}
	if len(c.AllowedRoots) == 0 {
		return c, errors.New("no allowed roots: set allowedRoots in config.json or CODEX_CONNECTOR_ALLOWED_ROOTS")
	}
	// A key is taken from the server's environment, or else from env in
	// config.json; it goes to the proxy alone, never in as it is, whatever
	// env or passEnv say.
	lookup := func(k string) string {
		if v := getenv(k); v != "" {
			return v
		}
		return c.fileEnv[k]
	}
	var err error
	if c.Routes, err = c.modelRoutes(lookup, home); err != nil {
		return c, fmt.Errorf("%s: %w", filepath.Join(c.Home, "config.json"), err)
	}
	for _, k := range slices.Sorted(maps.Keys(c.fileEnv)) {
		if !keptOut(c.Routes, k) {
			c.Env = append(c.Env, k+"="+c.fileEnv[k])
		}
	}
	for _, k := range c.passEnv {
		if v := getenv(k); v != "" && !keptOut(c.Routes, k) {
			c.Env = append(c.Env, k+"="+v)
		}
	}
	c.CABundle = caBundle(getenv)
	// A ChatGPT login, when no API key is given: Codex 0.169 cannot be
	// pointed at a route for it (see the README's Credentials), so each
	// task gets a copy without its refresh token, as the README warns.
	// Not for another provider, which has no use for it.
	if c.usesOpenAI() && !slices.ContainsFunc(c.Routes, func(rt runner.ModelRoute) bool { return rt.Provider == runner.OpenAIProvider }) {
		if auth := codexLogin(getenv, home); auth != "" {
			c.AuthFile = auth
			// A ChatGPT login talks to these, and refreshes its token there.
			c.ModelHosts = append(c.ModelHosts, "chatgpt.com:443", "auth.openai.com:443")
		}
	}
	return c, nil
}

func (c *config) applyFile(path string, getenv func(string) string) error {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read %s: %w", path, err)
	}
	var f fileConfig
	dec := json.NewDecoder(strings.NewReader(string(data)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		return fmt.Errorf("%s: %w — see the Configuration section of the README", path, err)
	}
	bad := func(field string, err error) error { return fmt.Errorf("%s: %s: %w", path, field, err) }
	if f.Image != "" {
		c.Image = f.Image
	}
	if f.CodexVersion != "" {
		c.CodexVersion = f.CodexVersion
	}
	if f.MaxRunning < 0 {
		return bad("maxRunning", errors.New("must be at least 1"))
	} else if f.MaxRunning > 0 {
		c.MaxRunning = f.MaxRunning
	}
	if err := setDuration(&c.StopGrace, f.StopGrace, false); err != nil {
		return bad("stopGrace", err)
	}
	if err := setDuration(&c.StallTimeout, f.StallTimeout, true); err != nil {
		return bad("stallTimeout", err)
	}
	if err := setDuration(&c.ProxyIdle, f.ProxyIdle, true); err != nil {
		return bad("proxyIdle", err)
	}
	if err := setRetention(&c.Retention, f.Retention); err != nil {
		return bad("retention", err)
	}
	providers := map[string]*providerConfig{}
	for _, k := range slices.Sorted(maps.Keys(f.CodexConfig)) {
		v, err := tomlValue(f.CodexConfig[k])
		if err != nil {
			return bad("codexConfig."+k, err)
		}
		// A provider's base_url is the runner's to set (the bridge); its
		// keys are the proxy's to add.
		routed, err := collectProvider(providers, k, f.CodexConfig[k])
		if err != nil {
			return bad("codexConfig."+k, err)
		}
		if k == "openai_base_url" {
			c.openAIBaseURL, routed = fmt.Sprint(f.CodexConfig[k]), true
		}
		if !routed {
			c.CodexArgs = append(c.CodexArgs, "-c", k+"="+v)
		}
	}
	c.providers = providers
	if mp, ok := f.CodexConfig["model_provider"].(string); ok {
		c.modelProvider = mp
	}
	// A profile may choose the provider instead.
	if p, ok := f.CodexConfig["profile"].(string); ok {
		if mp, ok := f.CodexConfig["profiles."+p+".model_provider"].(string); ok {
			c.modelProvider = mp
		}
	}
	for _, h := range f.AllowedHosts {
		if _, _, err := net.SplitHostPort(h); err != nil {
			return bad("allowedHosts", fmt.Errorf("%q is not host:port (e.g. github.com:443)", h))
		}
		c.AllowedHosts = append(c.AllowedHosts, strings.ToLower(h))
	}
	if len(f.AllowedRoots) > 0 {
		c.AllowedRoots = f.AllowedRoots
	}
	if err := setSandbox(&c.MaxSandbox, f.MaxSandbox); err != nil {
		return bad("maxSandbox", err)
	}
	if f.Workspace != "" {
		if !slices.Contains(workspace.Kinds, f.Workspace) {
			return bad("workspace", fmt.Errorf("%q is not a workspace kind: use %s", f.Workspace, strings.Join(workspace.Kinds, " or ")))
		}
		c.Workspace = f.Workspace
	}
	if f.FollowAfterExit != nil {
		c.FollowAfterExit = *f.FollowAfterExit
	}
	if f.Images != nil {
		home, _ := os.UserHomeDir()
		tc, err := f.Images.toolchains(home)
		if err != nil {
			return bad("images", err)
		}
		c.Toolchains = tc
	}
	if f.Caches != nil {
		c.Caches = nil
		for _, name := range *f.Caches {
			if _, ok := runner.KnownCaches[name]; !ok {
				return bad("caches", fmt.Errorf("%q is not a cache codex-connector keeps: use any of %s, or [] for none", name, strings.Join(runner.DefaultCaches, ", ")))
			}
			if !slices.Contains(c.Caches, name) {
				c.Caches = append(c.Caches, name)
			}
		}
	}
	c.fileEnv, c.passEnv = f.Env, f.PassEnv
	if f.Limits.MemoryMB > 0 {
		c.Limits.MemoryBytes = int64(f.Limits.MemoryMB) << 20
	}
	if f.Limits.CPUs > 0 {
		c.Limits.NanoCPUs = int64(f.Limits.CPUs * 1e9)
	}
	if f.Limits.Pids > 0 {
		c.Limits.Pids = f.Limits.Pids
	}
	if f.Limits.TmpMB > 0 {
		c.Limits.TmpBytes = int64(f.Limits.TmpMB) << 20
	}
	for _, name := range f.Limits.AcceptUnenforced {
		if !slices.Contains(runner.UnenforceableLimits, name) {
			return bad("limits.acceptUnenforced", fmt.Errorf("%q is not a limit an engine may leave unenforced: use any of %s", name, strings.Join(runner.UnenforceableLimits, ", ")))
		}
		if !slices.Contains(c.Limits.AcceptUnenforced, name) {
			c.Limits.AcceptUnenforced = append(c.Limits.AcceptUnenforced, name)
		}
	}
	for i, n := range []int{f.Limits.LogMB, f.Limits.StateMB, f.Limits.RecordKB, f.Limits.RepoMB, f.Limits.WorkspacesMB} {
		if n == 0 {
			continue // unset: the default
		}
		if err := setSize(&c.Limits, i, int64(n)); err != nil {
			return bad(sizeLimits[i].field, err)
		}
	}
	return nil
}

func (c *config) applyEnv(getenv func(string) string) error {
	if v := getenv("CODEX_CONNECTOR_ALLOWED_ROOTS"); v != "" {
		c.AllowedRoots = filepath.SplitList(v)
	}
	if err := setSandbox(&c.MaxSandbox, getenv("CODEX_CONNECTOR_MAX_SANDBOX")); err != nil {
		return fmt.Errorf("CODEX_CONNECTOR_MAX_SANDBOX: %w", err)
	}
	if v := getenv("CODEX_CONNECTOR_WORKSPACE"); v != "" {
		if !slices.Contains(workspace.Kinds, v) {
			return fmt.Errorf("CODEX_CONNECTOR_WORKSPACE: %q is not a workspace kind: use %s", v, strings.Join(workspace.Kinds, " or "))
		}
		c.Workspace = v
	}
	if v := getenv("CODEX_CONNECTOR_IMAGE"); v != "" {
		c.Image = v
	}
	if v := getenv("CODEX_CONNECTOR_FOLLOW_AFTER_EXIT"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return fmt.Errorf("CODEX_CONNECTOR_FOLLOW_AFTER_EXIT must be true or false, got %q", v)
		}
		c.FollowAfterExit = b
	}
	if v := getenv("CODEX_CONNECTOR_CODEX_VERSION"); v != "" {
		c.CodexVersion = v
	}
	if v := getenv("CODEX_CONNECTOR_MAX_RUNNING"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			return fmt.Errorf("CODEX_CONNECTOR_MAX_RUNNING must be a whole number of at least 1, got %q", v)
		}
		c.MaxRunning = n
	}
	if err := setDuration(&c.StopGrace, getenv("CODEX_CONNECTOR_STOP_GRACE"), false); err != nil {
		return fmt.Errorf("CODEX_CONNECTOR_STOP_GRACE: %w", err)
	}
	if err := setDuration(&c.StallTimeout, getenv("CODEX_CONNECTOR_STALL_TIMEOUT"), true); err != nil {
		return fmt.Errorf("CODEX_CONNECTOR_STALL_TIMEOUT: %w", err)
	}
	if err := setDuration(&c.ProxyIdle, getenv("CODEX_CONNECTOR_PROXY_IDLE"), true); err != nil {
		return fmt.Errorf("CODEX_CONNECTOR_PROXY_IDLE: %w", err)
	}
	if err := setDuration(&c.Lease, getenv("CODEX_CONNECTOR_LEASE"), false); err != nil {
		return fmt.Errorf("CODEX_CONNECTOR_LEASE: %w", err)
	}
	if err := setRetention(&c.Retention, getenv("CODEX_CONNECTOR_RETENTION")); err != nil {
		return fmt.Errorf("CODEX_CONNECTOR_RETENTION: %w", err)
	}
	if err := setDuration(&c.LockTimeout, getenv("CODEX_CONNECTOR_LOCK_TIMEOUT"), false); err != nil {
		return fmt.Errorf("CODEX_CONNECTOR_LOCK_TIMEOUT: %w", err)
	}
	for i, s := range sizeLimits {
		v := getenv(s.env)
		if v == "" {
			continue
		}
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			err = fmt.Errorf("want a whole number of at least %d, got %q", s.min, v)
		} else {
			err = setSize(&c.Limits, i, n)
		}
		if err != nil {
			return fmt.Errorf("%s: %w", s.env, err)
		}
	}
	return nil
}

func setDuration(dst *time.Duration, v string, zeroOK bool) error {
	if v == "" {
		return nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < 0 || (d == 0 && !zeroOK) {
		return fmt.Errorf("want a positive duration such as 10s or 5m, got %q", v)
	}
	*dst = d
	return nil
}

func setSandbox(dst *string, v string) error {
	if v == "" {
		return nil
	}
	if !slices.Contains(runner.SandboxLevels, v) {
		return fmt.Errorf("want one of %s, got %q", strings.Join(runner.SandboxLevels, ", "), v)
	}
	*dst = v
	return nil
}

// setRetention reads a retention: days ("30d") or a Go duration ("720h");
// "0" or "forever" keeps tasks.
func setRetention(dst *time.Duration, v string) error {
	switch v {
	case "":
		return nil
	case "0", "forever":
		*dst = 0
		return nil
	}
	if days, ok := strings.CutSuffix(v, "d"); ok {
		n, err := strconv.Atoi(days)
		if err != nil || n < 1 {
			return fmt.Errorf("want a number of days such as 30d, got %q", v)
		}
		*dst = time.Duration(n) * 24 * time.Hour
		return nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < time.Hour {
		return fmt.Errorf("want days such as 30d or a duration of at least 1h such as 720h, got %q", v)
	}
	*dst = d
	return nil
}

// tomlValue renders a JSON value as the TOML value Codex's -c expects.
func tomlValue(v any) (string, error) {
	switch x := v.(type) {
	case string:
		b, _ := json.Marshal(x) // a JSON string is a valid TOML basic string
		return string(b), nil
	case bool:
		return strconv.FormatBool(x), nil
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64), nil
	case []any:
		parts := make([]string, len(x))
		for i, e := range x {
			s, err := tomlValue(e)
			if err != nil {
				return "", err
			}
			parts[i] = s
		}
		return "[" + strings.Join(parts, ", ") + "]", nil
	}
	return "", fmt.Errorf("use a string, number, boolean or list, or dotted keys for tables (got %T)", v)
}

func fileExists(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.Mode().IsRegular()
}
