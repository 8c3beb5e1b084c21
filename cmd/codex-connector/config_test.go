package main

import (
	"bytes"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/codex-connector/codex-connector/images"
	"github.com/codex-connector/codex-connector/runner"
)

func envOf(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func writeConfig(t *testing.T, home, body string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(home, "config.json"), []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestConfigFileThenEnvironment(t *testing.T) {
	home := t.TempDir()
	writeConfig(t, home, `{
  "image": "my/codex:1", "maxRunning": 2, "stallTimeout": "2m",
  "codexConfig": {"model_provider": "azure", "model_providers.azure.base_url": "https://x.example/openai", "model_reasoning_effort": "high", "model_providers.azure.stream_max_retries": 3, "show_raw": true,
    "model_providers.azure.env_key": "AZURE_OPENAI_API_KEY", "model_providers.azure.env_http_headers.api-key": "AZURE_HEADER_KEY"},
  "env": {"B": "2", "A": "1", "AZURE_HEADER_KEY": "from-the-file"}, "passEnv": ["AZURE_OPENAI_API_KEY", "UNSET", "PLAIN", "OPENAI_API_KEY", "CODEX_API_KEY"],
  "limits": {"memoryMB": 512, "cpus": 1.5, "pids": 100},
  "allowedHosts": ["GitHub.com:443", "*.pypi.org:443"], "allowedRoots": ["/srv/code"]
}`)
	c, err := loadConfig(envOf(map[string]string{
		"CODEX_CONNECTOR_HOME": home, "CODEX_CONNECTOR_MAX_RUNNING": "3", "AZURE_OPENAI_API_KEY": "k", "OPENAI_API_KEY": "sk",
		"AZURE_HEADER_KEY": "h", "PLAIN": "p", "CODEX_API_KEY": "sk2",
	}))
	if err != nil {
		t.Fatal(err)
	}
	if c.Image != "my/codex:1" || c.MaxRunning != 3 || c.StallTimeout != 2*time.Minute {
		t.Errorf("image %s, maxRunning %d (env wins), stall %s", c.Image, c.MaxRunning, c.StallTimeout)
	}
	// The provider's base_url is the runner's to set (the bridge).
	wantArgs := []string{"-c", `model_provider="azure"`, "-c", `model_providers.azure.env_http_headers.api-key="AZURE_HEADER_KEY"`,
		"-c", `model_providers.azure.env_key="AZURE_OPENAI_API_KEY"`,
		"-c", "model_providers.azure.stream_max_retries=3", "-c", `model_reasoning_effort="high"`, "-c", "show_raw=true"}
	if !slices.Equal(c.CodexArgs, wantArgs) {
		t.Errorf("codex args %q", c.CodexArgs)
	}
	// No key goes in as it is, whatever env and passEnv say: they copy the
	// rest. The server's environment wins over env in the file.
	if want := []string{"A=1", "B=2", "PLAIN=p"}; !slices.Equal(c.Env, want) {
		t.Errorf("env %q, want %q", c.Env, want)
	}
	// model_provider is azure: OPENAI_API_KEY gets no route of its own.
	wantRoutes := []runner.ModelRoute{
		{Provider: "azure", Upstream: "https://x.example/openai", Secrets: []runner.RouteSecret{{Env: "AZURE_HEADER_KEY", Value: "h", Header: "api-key"}, runner.BearerKey("AZURE_OPENAI_API_KEY", "k", "")}},
	}
	if !reflect.DeepEqual(c.Routes, wantRoutes) {
		t.Errorf("routes %+v, want %+v", c.Routes, wantRoutes)
	}
	if c.Limits.MemoryBytes != 512<<20 || c.Limits.NanoCPUs != 1.5e9 || c.Limits.Pids != 100 || c.Limits.TmpBytes == 0 {
		t.Errorf("limits %+v", c.Limits)
	}
	if c.AuthFile != "" {
		t.Errorf("an API key was given, but the login file %s is used too", c.AuthFile)
	}
	if len(c.ModelHosts) != 0 {
		t.Errorf("model hosts %q: the model providers are reached by their routes alone", c.ModelHosts)
	}
	if want := []string{"github.com:443", "*.pypi.org:443"}; !slices.Equal(c.AllowedHosts, want) {
		t.Errorf("allowed hosts %q", c.AllowedHosts)
	}
	if !slices.Equal(c.AllowedRoots, []string{"/srv/code"}) {
		t.Errorf("allowed roots %q", c.AllowedRoots)
	}
}

// Upgrading Codex is `make image CODEX_VERSION=x` and the same version
// here: the version names the default image, unless an image is given.
func TestTheCodexVersionNamesTheDefaultImage(t *testing.T) {
	for _, c := range []struct {
		name, file          string
		env                 map[string]string
		image, codexVersion string
	}{
		{"nothing set: this build's", "", nil, images.DefaultRef, images.DefaultCodexVersion},
		{"a version in the environment", "", map[string]string{"CODEX_CONNECTOR_CODEX_VERSION": "0.171.0"}, "codex-connector/codex:0.171.0", "0.171.0"},
		{"a version in config.json", `{"codexVersion": "0.171.0"}`, nil, "codex-connector/codex:0.171.0", "0.171.0"},
		{"the environment's version wins", `{"codexVersion": "0.170.0"}`, map[string]string{"CODEX_CONNECTOR_CODEX_VERSION": "0.171.0"}, "codex-connector/codex:0.171.0", "0.171.0"},
		{"an image given in the environment stays", "", map[string]string{"CODEX_CONNECTOR_CODEX_VERSION": "0.171.0", "CODEX_CONNECTOR_IMAGE": "my/codex:next"}, "my/codex:next", "0.171.0"},
		{"an image given in config.json stays", `{"image": "my/codex:1"}`, map[string]string{"CODEX_CONNECTOR_CODEX_VERSION": "0.171.0"}, "my/codex:1", "0.171.0"},
		{"any version: this build's image, unchecked", "", map[string]string{"CODEX_CONNECTOR_CODEX_VERSION": "any"}, images.DefaultRef, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			home := t.TempDir()
			if c.file != "" {
				writeConfig(t, home, c.file)
			}
			env := map[string]string{"CODEX_CONNECTOR_HOME": home, "CODEX_CONNECTOR_ALLOWED_ROOTS": "/srv"}
			for k, v := range c.env {
				env[k] = v
			}
			cfg, err := loadConfig(envOf(env))
			if err != nil {
				t.Fatal(err)
			}
			if cfg.Image != c.image || cfg.CodexVersion != c.codexVersion {
				t.Errorf("image %q with Codex %q, want %q with %q", cfg.Image, cfg.CodexVersion, c.image, c.codexVersion)
			}
		})
	}
	t.Run("a version that names no image says so", func(t *testing.T) {
		_, err := loadConfig(envOf(map[string]string{"CODEX_CONNECTOR_HOME": t.TempDir(), "CODEX_CONNECTOR_CODEX_VERSION": "0.171.0 beta"}))
		if err == nil || !strings.Contains(err.Error(), "does not name an image") || !strings.Contains(err.Error(), "CODEX_CONNECTOR_IMAGE") {
			t.Fatalf("got %v", err)
		}
	})
}

func TestCodexLoginIsUsedWithoutAnAPIKey(t *testing.T) {
	codexHome := t.TempDir()
	if err := os.WriteFile(filepath.Join(codexHome, "auth.json"), []byte(`{}`), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := loadConfig(envOf(map[string]string{"CODEX_CONNECTOR_HOME": t.TempDir(), "CODEX_HOME": codexHome}))
	if err != nil || c.AuthFile != filepath.Join(codexHome, "auth.json") {
		t.Fatalf("auth file %q, %v", c.AuthFile, err)
	}
}

// `codex login --with-api-key` keeps the key in the login file: it is
// routed like OPENAI_API_KEY, and the file is not mounted.
func TestCodexLoginWithAnAPIKeyIsRouted(t *testing.T) {
	codexHome := t.TempDir()
	login := filepath.Join(codexHome, "auth.json")
	if err := os.WriteFile(login, []byte(`{"OPENAI_API_KEY": "sk-from-login", "tokens": null}`), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := loadConfig(envOf(map[string]string{"CODEX_CONNECTOR_HOME": t.TempDir(), "CODEX_HOME": codexHome}))
	if err != nil {
		t.Fatal(err)
	}
	want := []runner.ModelRoute{{Provider: "openai", Upstream: "https://api.openai.com/v1", Secrets: []runner.RouteSecret{runner.BearerKey("CODEX_API_KEY", "sk-from-login", login)}}}
	if !reflect.DeepEqual(c.Routes, want) || c.AuthFile != "" {
		t.Errorf("routes %+v, auth file %q", c.Routes, c.AuthFile)
	}
	// A login for another provider's sake is not mounted either.
	home := t.TempDir()
	writeConfig(t, home, `{"codexConfig": {"model_provider": "local", "model_providers.local.base_url": "http://172.17.0.1:11434/v1"}}`)
	os.WriteFile(login, []byte(`{"tokens": {"access_token": "a"}}`), 0o600)
	c, err = loadConfig(envOf(map[string]string{"CODEX_CONNECTOR_HOME": home, "CODEX_HOME": codexHome}))
	if err != nil || c.AuthFile != "" {
		t.Errorf("auth file %q (%v) with model_provider local", c.AuthFile, err)
	}
}

func TestBadConfigSaysWhere(t *testing.T) {
	for _, tc := range []struct{ name, file, env, want string }{
		{"unknown field", `{"imag": "x"}`, "", `unknown field "imag"`},
		{"bad duration", `{"stopGrace": "soon"}`, "", "stopGrace"},
		{"nested table value", `{"codexConfig": {"a": {"b": 1}}}`, "", "codexConfig.a"},
		{"bad max running in env", `{}`, "zero", "CODEX_CONNECTOR_MAX_RUNNING"},
		{"allowed host without port", `{"allowedHosts": ["github.com"]}`, "", "not host:port"},
		{"provider URL that is not one", `{"codexConfig": {"model_providers.x.base_url": "::"}}`, "", "not an http:// or https:// URL"},
		{"provider URL with a query", `{"codexConfig": {"model_providers.x.base_url": "https://a.example/v1?key=secret-in-url"}}`, "", "has a user, a query or a fragment"},
		{"a bearer token written in the file", `{"codexConfig": {"model_providers.x.experimental_bearer_token": "sk-1"}}`, "", "visible to tasks"},
		{"provider key without a base URL", `{"codexConfig": {"model_providers.x.env_key": "X_KEY"}}`, "", "set model_providers.x.base_url"},
		{"the built-in provider redefined", `{"codexConfig": {"model_providers.openai.base_url": "https://a.example"}}`, "", "built-in"},
		{"a provider key that is no name", `{"codexConfig": {"model_providers.x.env_key": 3}}`, "", "environment variable"},
		{"retention in minutes", `{"retention": "5m"}`, "", "retention"},
		{"retention of no days", `{"retention": "0d"}`, "", "retention"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			home := t.TempDir()
			writeConfig(t, home, tc.file)
			_, err := loadConfig(envOf(map[string]string{"CODEX_CONNECTOR_HOME": home, "CODEX_CONNECTOR_MAX_RUNNING": tc.env}))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want %q", err, tc.want)
			}
		})
	}
}

func TestRetention(t *testing.T) {
	for _, tc := range []struct {
		file, env string
		want      time.Duration
	}{
		{`{}`, "", 0},
		{`{"retention": "30d"}`, "", 30 * 24 * time.Hour},
		{`{"retention": "30d"}`, "48h", 48 * time.Hour},
		{`{"retention": "30d"}`, "forever", 0},
	} {
		home := t.TempDir()
		writeConfig(t, home, tc.file)
		c, err := loadConfig(envOf(map[string]string{"CODEX_CONNECTOR_HOME": home, "CODEX_CONNECTOR_RETENTION": tc.env}))
		if err != nil || c.Retention != tc.want {
			t.Errorf("file %s, env %q: retention %s, %v; want %s", tc.file, tc.env, c.Retention, err, tc.want)
		}
	}
}

func TestSizeLimits(t *testing.T) {
	for _, tc := range []struct {
		name, file               string
		env                      map[string]string
		log, state, record, repo int64
	}{
		{"defaults", `{}`, nil, 256 << 20, 1 << 30, 256 << 10, 2 << 30},
		{"from the file", `{"limits": {"logMB": 64, "stateMB": 512, "recordKB": 128, "repoMB": 100}}`, nil, 64 << 20, 512 << 20, 128 << 10, 100 << 20},
		{"the environment wins", `{"limits": {"logMB": 64, "stateMB": 512, "repoMB": 100}}`,
			map[string]string{"CODEX_CONNECTOR_LOG_MB": "32", "CODEX_CONNECTOR_RECORD_KB": "64", "CODEX_CONNECTOR_REPO_MB": "10"}, 32 << 20, 512 << 20, 64 << 10, 10 << 20},
	} {
		t.Run(tc.name, func(t *testing.T) {
			home := t.TempDir()
			writeConfig(t, home, tc.file)
			env := map[string]string{"CODEX_CONNECTOR_HOME": home}
			for k, v := range tc.env {
				env[k] = v
			}
			c, err := loadConfig(envOf(env))
			if err != nil {
				t.Fatal(err)
			}
			if c.Limits.LogBytes != tc.log || c.Limits.StateBytes != tc.state || c.Limits.RecordBytes != tc.record || c.Limits.RepoBytes != tc.repo {
				t.Fatalf("log %d, state %d, record %d, repo %d; want %d, %d, %d, %d", c.Limits.LogBytes, c.Limits.StateBytes, c.Limits.RecordBytes, c.Limits.RepoBytes, tc.log, tc.state, tc.record, tc.repo)
			}
		})
	}
	for _, tc := range []struct{ name, file, envName, envValue, want string }{
		{"a negative log cap", `{"limits": {"logMB": -1}}`, "", "", "limits.logMB: want a whole number of at least 1"},
		{"a record too small for its task text", `{"limits": {"recordKB": 8}}`, "", "", "limits.recordKB: want a whole number of at least 16"},
		{"a state cap that is no number", `{}`, "CODEX_CONNECTOR_STATE_MB", "lots", `CODEX_CONNECTOR_STATE_MB: want a whole number of at least 1, got "lots"`},
		{"a log cap of zero in the environment", `{}`, "CODEX_CONNECTOR_LOG_MB", "0", "CODEX_CONNECTOR_LOG_MB: want a whole number of at least 1"},
		{"a negative work-tree cap", `{"limits": {"repoMB": -5}}`, "", "", "limits.repoMB: want a whole number of at least 1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			home := t.TempDir()
			writeConfig(t, home, tc.file)
			_, err := loadConfig(envOf(map[string]string{"CODEX_CONNECTOR_HOME": home, tc.envName: tc.envValue}))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want %q", err, tc.want)
			}
		})
	}
}

func TestMaxSandbox(t *testing.T) {
	for _, tc := range []struct {
		name, file, env, want, err string
	}{
		{name: "no ceiling by default", want: "danger-full-access"},
		{name: "from config.json", file: `{"maxSandbox": "workspace-write"}`, want: "workspace-write"},
		{name: "the environment wins", file: `{"maxSandbox": "workspace-write"}`, env: "read-only", want: "read-only"},
		{name: "a level that does not exist", file: `{"maxSandbox": "sandboxed"}`, err: "maxSandbox: want one of read-only, workspace-write, danger-full-access"},
		{name: "a bad environment value", env: "none", err: "CODEX_CONNECTOR_MAX_SANDBOX: want one of"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			home := t.TempDir()
			if tc.file != "" {
				writeConfig(t, home, tc.file)
			}
			c, err := loadConfig(envOf(map[string]string{"CODEX_CONNECTOR_HOME": home, "CODEX_CONNECTOR_MAX_SANDBOX": tc.env}))
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("got %v, want an error with %q", err, tc.err)
				}
				return
			}
			if err != nil || c.MaxSandbox != tc.want {
				t.Fatalf("maxSandbox %q (%v), want %q", c.MaxSandbox, err, tc.want)
			}
		})
	}
}

func TestFollowAfterExit(t *testing.T) {
	for _, tc := range []struct {
		name, file, env, err string
		want                 bool
	}{
		{name: "on by default", want: true},
		{name: "off in config.json", file: `{"followAfterExit": false}`, want: false},
		{name: "the environment wins", file: `{"followAfterExit": false}`, env: "true", want: true},
		{name: "a bad environment value", env: "sometimes", err: "CODEX_CONNECTOR_FOLLOW_AFTER_EXIT must be true or false"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			home := t.TempDir()
			if tc.file != "" {
				writeConfig(t, home, tc.file)
			}
			c, err := loadConfig(envOf(map[string]string{"CODEX_CONNECTOR_HOME": home, "CODEX_CONNECTOR_FOLLOW_AFTER_EXIT": tc.env}))
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("got %v, want an error with %q", err, tc.err)
				}
				return
			}
			if err != nil || c.FollowAfterExit != tc.want {
				t.Fatalf("followAfterExit %t (%v), want %t", c.FollowAfterExit, err, tc.want)
			}
		})
	}
}

// check tells how credentials reach Codex, and fails when there are none
// or a named key is not set.
func TestCheckCredentials(t *testing.T) {
	codexHome := t.TempDir()
	os.WriteFile(filepath.Join(codexHome, "auth.json"), []byte(`{}`), 0o600)
	for _, tc := range []struct {
		name, file string
		env        map[string]string
		fails      bool
		says       []string
	}{
		{"none", `{}`, nil, true, []string{"none found", "OPENAI_API_KEY"}},
		{"an OpenAI key", `{}`, map[string]string{"OPENAI_API_KEY": "sk-1"}, false,
			[]string{"model provider openai (https://api.openai.com/v1) through the egress proxy", "tasks hold a placeholder, never the key"}},
		{"a provider whose key is not set", `{"codexConfig": {"model_provider": "az", "model_providers.az.base_url": "https://a.example", "model_providers.az.env_key": "AZ_KEY"}}`, nil, true,
			[]string{"AZ_KEY named in config.json but not set"}},
		{"a local provider with no key", `{"codexConfig": {"model_provider": "local", "model_providers.local.base_url": "http://172.17.0.1:11434/v1"}}`, nil, false,
			[]string{"model provider local"}},
		{"a Codex login", `{}`, map[string]string{"CODEX_HOME": codexHome}, false,
			[]string{"without its refresh token", "with a ChatGPT login, tasks can read your token; use an API key"}},
		{"a passEnv variable", `{"passEnv": ["TOKEN"]}`, map[string]string{"OPENAI_API_KEY": "sk-1", "TOKEN": "t"}, false,
			[]string{"passEnv TOKEN goes into every task as it is"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			home := t.TempDir()
			writeConfig(t, home, tc.file)
			env := map[string]string{"CODEX_CONNECTOR_HOME": home, "CODEX_HOME": filepath.Join(home, "no-codex")}
			for k, v := range tc.env {
				env[k] = v
			}
			c, err := loadConfig(envOf(env))
			if err != nil {
				t.Fatal(err)
			}
			var out bytes.Buffer
			err = checkCredentials(&out, c)
			if (err != nil) != tc.fails {
				t.Fatalf("error %v, want failure %v; said:\n%s", err, tc.fails, out.String())
			}
			said := out.String()
			if err != nil {
				said += err.Error()
			}
			for _, want := range tc.says {
				if !strings.Contains(said, want) {
					t.Errorf("says %q, lacks %q", said, want)
				}
			}
			for _, v := range tc.env {
				if strings.HasPrefix(v, "sk-") && strings.Contains(said, v) {
					t.Errorf("check printed the key: %s", said)
				}
			}
		})
	}
}

// A key written in config.json's env is still a key: routed, never copied
// into the container.
// A key meant for one provider goes to that provider alone; OpenAI's route
// takes its base URL from openai_base_url or OPENAI_BASE_URL, which never
// go into the container.
func TestKeysGoWhereTheyAreMeant(t *testing.T) {
	home := t.TempDir()
	writeConfig(t, home, `{"codexConfig": {"model_provider": "corp", "model_providers.corp.base_url": "https://gw.corp.example/v1", "model_providers.corp.env_key": "OPENAI_API_KEY"}}`)
	c, err := loadConfig(envOf(map[string]string{"CODEX_CONNECTOR_HOME": home, "CODEX_HOME": filepath.Join(home, "none"), "OPENAI_API_KEY": "sk-corp"}))
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Routes) != 1 || c.Routes[0].Provider != "corp" {
		t.Errorf("routes %+v: a gateway's key must not go to OpenAI too", c.Routes)
	}

	writeConfig(t, home, `{"codexConfig": {"openai_base_url": "https://gw.corp.example/openai/v1"}, "passEnv": ["OPENAI_BASE_URL"]}`)
	c, err = loadConfig(envOf(map[string]string{"CODEX_CONNECTOR_HOME": home, "CODEX_HOME": filepath.Join(home, "none"), "OPENAI_API_KEY": "sk-gw", "OPENAI_BASE_URL": "https://elsewhere.example/v1"}))
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Routes) != 1 || c.Routes[0].Upstream != "https://gw.corp.example/openai/v1" || len(c.Env) != 0 || len(c.CodexArgs) != 0 {
		t.Errorf("routes %+v, env %q, args %q", c.Routes, c.Env, c.CodexArgs)
	}

	writeConfig(t, home, `{}`)
	_, err = loadConfig(envOf(map[string]string{"CODEX_CONNECTOR_HOME": home, "CODEX_HOME": filepath.Join(home, "none"), "OPENAI_API_KEY": "sk-1\n"}))
	if err == nil || !strings.Contains(err.Error(), "control character") || strings.Contains(err.Error(), "sk-1") {
		t.Errorf("a key with a newline: %v", err)
	}
}

func TestKeyInTheFilesEnvIsRouted(t *testing.T) {
	home := t.TempDir()
	writeConfig(t, home, `{"env": {"OPENAI_API_KEY": "sk-in-file", "X": "1"}}`)
	c, err := loadConfig(envOf(map[string]string{"CODEX_CONNECTOR_HOME": home, "CODEX_HOME": filepath.Join(home, "none")}))
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Routes) != 1 || c.Routes[0].Secrets[0].Value != "sk-in-file" || !slices.Equal(c.Env, []string{"X=1"}) {
		t.Errorf("routes %+v, env %q", c.Routes, c.Env)
	}
}

// From a second review: a profile's provider, a literal key header, and a
// keyless OpenAI-compatible server.
func TestProvidersAsProfilesAndHeadersSayThem(t *testing.T) {
	home := t.TempDir()
	base := map[string]string{"CODEX_CONNECTOR_HOME": home, "CODEX_HOME": filepath.Join(home, "none")}
	writeConfig(t, home, `{"codexConfig": {"profile": "az", "profiles.az.model_provider": "azure", "model_providers.azure.base_url": "https://a.example/openai", "model_providers.azure.env_key": "OPENAI_API_KEY"}}`)
	env := map[string]string{"OPENAI_API_KEY": "sk-az"}
	for k, v := range base {
		env[k] = v
	}
	c, err := loadConfig(envOf(env))
	if err != nil || len(c.Routes) != 1 || c.Routes[0].Provider != "azure" {
		t.Errorf("a profile's provider: routes %+v (%v)", c.Routes, err)
	}
	writeConfig(t, home, `{"codexConfig": {"model_providers.x.http_headers.Authorization": "Bearer sk-inline"}}`)
	if _, err := loadConfig(envOf(base)); err == nil || !strings.Contains(err.Error(), "visible to tasks") {
		t.Errorf("a key in http_headers: %v", err)
	}
	writeConfig(t, home, `{"codexConfig": {"openai_base_url": "http://172.17.0.1:8000/v1"}}`)
	c, err = loadConfig(envOf(base))
	if err != nil || len(c.Routes) != 1 || c.Routes[0].Upstream != "http://172.17.0.1:8000/v1" || len(c.Routes[0].Secrets) != 0 {
		t.Errorf("a keyless base URL: routes %+v (%v)", c.Routes, err)
	}
}

func TestToolchainImagesAndCaches(t *testing.T) {
	home := t.TempDir()
	userHome, _ := os.UserHomeDir()
	repo := t.TempDir()
	link := filepath.Join(t.TempDir(), "link")
	if err := os.Symlink(repo, link); err != nil {
		t.Fatal(err)
	}
	writeConfig(t, home, `{
  "images": {"default": "golang:1.23", "devcontainer": true, "repos": [
    {"path": "~/src/ml-*", "image": "python:3.12-slim"},
    {"path": "`+link+`", "devcontainer": "build"},
    {"path": "/srv/apt", "devcontainer": "build", "buildNetwork": true},
    {"path": "/srv/plain", "image": "node:22", "devcontainer": false}
  ]},
  "caches": ["go", "npm", "go"]
}`)
	c, err := loadConfig(envOf(map[string]string{"CODEX_CONNECTOR_HOME": home}))
	if err != nil {
		t.Fatal(err)
	}
	want := runner.Toolchains{Default: "golang:1.23", Devcontainer: true, Rules: []runner.ToolchainRule{
		{Path: filepath.Join(userHome, "src/ml-*"), Image: "python:3.12-slim"},
		// A directory is taken through its symlinks, as repositories are.
		{Path: repo, Devcontainer: runner.DevcontainerBuild},
		{Path: "/srv/apt", Devcontainer: runner.DevcontainerBuild, BuildNetwork: true},
		{Path: "/srv/plain", Image: "node:22", Devcontainer: runner.DevcontainerOff},
	}}
	if !reflect.DeepEqual(c.Toolchains, want) {
		t.Errorf("toolchains %+v\nwant %+v", c.Toolchains, want)
	}
	if !slices.Equal(c.Caches, []string{"go", "npm"}) {
		t.Errorf("caches %q", c.Caches)
	}
	t.Run("caches default to all, and [] is none", func(t *testing.T) {
		writeConfig(t, home, `{}`)
		if c, _ := loadConfig(envOf(map[string]string{"CODEX_CONNECTOR_HOME": home})); !slices.Equal(c.Caches, runner.DefaultCaches) {
			t.Errorf("caches %q", c.Caches)
		}
		writeConfig(t, home, `{"caches": []}`)
		if c, _ := loadConfig(envOf(map[string]string{"CODEX_CONNECTOR_HOME": home})); len(c.Caches) != 0 {
			t.Errorf("caches %q", c.Caches)
		}
	})
	for body, wantErr := range map[string]string{
		`{"images": {"repos": [{"path": "src/x", "image": "a"}]}}`:                    "images.repos[0].path: want an absolute path",
		`{"images": {"repos": [{"path": "/x"}]}}`:                                     "images.repos[0]: give an image, devcontainer or runtime",
		`{"images": {"runtime": "run sc"}}`:                                           "images.runtime: want the name the engine registers a runtime under",
		`{"images": {"repos": [{"path": "/x", "runtime": "-x"}]}}`:                    "images.repos[0].runtime: want the name",
		`{"images": {"repos": [{"path": "/x", "devcontainer": "yes"}]}}`:              `images.repos[0].devcontainer: want true (its image), "build"`,
		`{"images": {"repos": [{"path": "/x", "image": "a", "buildNetwork": true}]}}`: "images.repos[0].buildNetwork: it is for dev container builds",
		`{"images": {"repos": [{"path": "/x[", "image": "a"}]}}`:                      "is not a valid pattern",
		`{"caches": ["maven"]}`:                                                       `caches: "maven" is not a cache codex-connector keeps`,
		`{"images": {"default": "golang:1.23\nRUN curl x"}}`:                          "images.default: not an image reference",
		`{"images": {"repos": [{"path": "/x", "image": "Bad Name"}]}}`:                "images.repos[0].image: not an image reference",
		`{"images": {"default": "a", "repos": [], "devcontainer": true, "x": 1}}`:     `unknown field "x"`,
	} {
		writeConfig(t, home, body)
		if _, err := loadConfig(envOf(map[string]string{"CODEX_CONNECTOR_HOME": home})); err == nil || !strings.Contains(err.Error(), wantErr) {
			t.Errorf("%s: error %v, want %q", body, err, wantErr)
		}
	}
}
