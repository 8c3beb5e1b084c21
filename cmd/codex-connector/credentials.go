package main

import (
	"errors"
	"fmt"
	"io"
	"maps"
	"path/filepath"
	"slices"
	"strings"

	"github.com/codex-connector/codex-connector/runner"
	"github.com/codex-connector/codex-connector/runner/egress"
)

// providerConfig is what codexConfig says of one model provider that
// matters to credentials: where it is, and which variables hold its keys.
type providerConfig struct {
	baseURL string
	// The variables of its keys: env_key, sent as a bearer token, and
	// env_http_headers, each in its header.
	keys []runner.RouteSecret
}

// providerKey reads a codexConfig key of a model provider:
// "model_providers.NAME.FIELD" or "model_providers.NAME.env_http_headers.H".
func providerKey(k string) (name, field string, ok bool) {
	rest, ok := strings.CutPrefix(k, "model_providers.")
	if !ok {
		return "", "", false
	}
	name, field, ok = strings.Cut(rest, ".")
	return name, field, ok
}

// collectProvider notes what key k of codexConfig says about a provider.
// It returns true when the key is the provider's base_url, which the
// runner sets itself (to the bridge) and so is not passed to Codex.
func collectProvider(providers map[string]*providerConfig, k string, v any) (bool, error) {
	name, field, ok := providerKey(k)
	if !ok {
		return false, nil
	}
	p := providers[name]
	if p == nil {
		p = &providerConfig{}
		providers[name] = p
	}
	s, isString := v.(string)
	switch {
	case field == "base_url":
		if !isString {
			return false, fmt.Errorf("want a URL string")
		}
		if _, err := egress.CheckUpstream(s); err != nil {
			return false, err
		}
		p.baseURL = s
		return true, nil
	case strings.HasPrefix(field, "http_headers.") && secretHeader(strings.TrimPrefix(field, "http_headers.")):
		return false, fmt.Errorf("a key written in codexConfig is visible to tasks: put it in a variable of the server's environment and name that in model_providers.%s.env_http_headers instead", name)
	case field == "experimental_bearer_token":
		// It would be a -c argument: in the task's command line.
		return false, fmt.Errorf("a key written in codexConfig is visible to tasks: put it in a variable of the server's environment and name that in model_providers.%s.env_key", name)
	case field == "env_key", strings.HasPrefix(field, "env_http_headers."):
		if !isString || s == "" {
			return false, fmt.Errorf("want the name of an environment variable")
		}
		key := runner.BearerKey(s, "", "")
		if header, ok := strings.CutPrefix(field, "env_http_headers."); ok {
			key = runner.RouteSecret{Env: s, Header: header}
		}
		p.keys = append(p.keys, key)
	}
	return false, nil
}

// modelRoutes turns the providers of codexConfig, and an OpenAI key in the
// server's environment, into the routes tasks reach their models by. Each
// key's value is read here, by getenv (the server's environment, then env
// in config.json), and goes no further than the egress proxy.
func (c *config) modelRoutes(getenv func(string) string, home string) ([]runner.ModelRoute, error) {
	routes, err := c.providerRoutes(getenv)
	if err != nil {
		return nil, err
	}
	// Codex's built-in provider, when it is the one in use: a key named
	// for another provider must not go to OpenAI too. Codex 0.169 reads
	// its key from CODEX_API_KEY in `codex exec`; users know it as
	// OPENAI_API_KEY, and `codex login --with-api-key` keeps it in the
	// login file.
	if !c.usesOpenAI() {
		return routes, nil
	}
	upstream := runner.OpenAIUpstream
	for _, u := range []string{c.openAIBaseURL, getenv("OPENAI_BASE_URL")} {
		if u != "" {
			if _, err := egress.CheckUpstream(u); err != nil {
				return nil, fmt.Errorf("openai_base_url: %w", err)
			}
			upstream = u
			break
		}
	}
	key, from := "", ""
	for _, name := range []string{"OPENAI_API_KEY", runner.OpenAIKeyEnv} {
		if key = getenv(name); key != "" {
			from = name
			break
		}
	}
	if key == "" {
		if login := codexLogin(getenv, home); login != "" {
			if key, err = runner.LoginAPIKey(login); err != nil {
				return nil, err
			}
			from = login
		}
	}
	if key == "" {
		if upstream != runner.OpenAIUpstream {
			// A keyless server of the user's (a local model server).
			return append(routes, runner.ModelRoute{Provider: runner.OpenAIProvider, Upstream: upstream}), nil
		}
		return routes, nil
	}
	if err := checkSecret(from, key); err != nil {
		return nil, err
	}
	return append(routes, runner.ModelRoute{Provider: runner.OpenAIProvider, Upstream: upstream,
		Secrets: []runner.RouteSecret{runner.BearerKey(runner.OpenAIKeyEnv, key, from)}}), nil
}

// secretHeader says whether a header name is one that carries a key.
func secretHeader(name string) bool {
	n := strings.ToLower(name)
	return n == "authorization" || strings.Contains(n, "key") || strings.Contains(n, "token") || strings.Contains(n, "secret")
}

// usesOpenAI says whether Codex's built-in provider is the one in use.
func (c *config) usesOpenAI() bool {
	return c.modelProvider == "" || c.modelProvider == runner.OpenAIProvider
}

// checkSecret refuses a key that cannot go in a header.
func checkSecret(from, value string) error {
	if !egress.HeaderValue(value) {
		return fmt.Errorf("the key in %s holds a control character (a trailing newline?): set it without one", from)
	}
	return nil
}

// providerRoutes are the routes of the providers codexConfig defines.
func (c *config) providerRoutes(getenv func(string) string) ([]runner.ModelRoute, error) {
	var routes []runner.ModelRoute
	for _, name := range slices.Sorted(maps.Keys(c.providers)) {
		p := c.providers[name]
		if !egress.ValidID(name) {
			return nil, fmt.Errorf("codexConfig: model provider %q: codex-connector names routes by provider: use letters, digits, '-' and '_'", name)
		}
		if p.baseURL == "" {
			if len(p.keys) > 0 {
				return nil, fmt.Errorf("codexConfig: model_providers.%s names a key (%s) but no base_url: codex-connector sends a provider's requests, and adds its key, through its egress proxy by the base_url — set model_providers.%s.base_url", name, p.keys[0].Env, name)
			}
			continue
		}
		if name == runner.OpenAIProvider {
			return nil, fmt.Errorf("codexConfig: model_providers.openai is Codex's built-in provider and cannot be redefined: name yours otherwise")
		}
		rt := runner.ModelRoute{Provider: name, Upstream: p.baseURL}
		for _, key := range p.keys {
			key.Value = getenv(key.Env)
			if err := checkSecret(key.Env, key.Value); err != nil {
				return nil, err
			}
			rt.Secrets = append(rt.Secrets, key)
		}
		routes = append(routes, rt)
	}
	return routes, nil
}

// keptOut says whether a variable stays out of containers: a key,
// OpenAI's or one a route carries (by the name Codex reads it under, or
// the server's), or OPENAI_BASE_URL, which is the route's to set.
func keptOut(routes []runner.ModelRoute, name string) bool {
	if name == "OPENAI_API_KEY" || name == runner.OpenAIKeyEnv || name == "OPENAI_BASE_URL" {
		return true
	}
	for _, rt := range routes {
		for _, s := range rt.Secrets {
			if s.Env == name || s.From() == name {
				return true
			}
		}
	}
	return false
}

// codexLogin finds the user's Codex login file, used when no API key is
// given.
func codexLogin(getenv func(string) string, home string) string {
	codexHome := getenv("CODEX_HOME")
	if codexHome == "" && home != "" {
		codexHome = filepath.Join(home, ".codex")
	}
	if auth := filepath.Join(codexHome, "auth.json"); codexHome != "" && fileExists(auth) {
		return auth
	}
	return ""
}

// caBundle is the file of CA certificates the egress proxy verifies model
// providers with: SSL_CERT_FILE, or the first of the usual places.
func caBundle(getenv func(string) string) string {
	candidates := []string{getenv("SSL_CERT_FILE"),
		"/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt",
		"/etc/ssl/ca-bundle.pem", "/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem", "/etc/ssl/cert.pem"}
	for _, c := range candidates {
		if c == "" {
			continue
		}
		if real, err := filepath.EvalSymlinks(c); err == nil && fileExists(real) {
			return real
		}
	}
	return ""
}

// checkCredentials tells how credentials reach Codex, and fails when none
// are configured or a configured key is not set.
func checkCredentials(w io.Writer, cfg config) error {
	var missing []string
	for _, rt := range cfg.Routes {
		fmt.Fprintf(w, "credentials: model provider %s (%s) through the egress proxy", rt.Provider, rt.Upstream)
		var from []string
		for _, s := range rt.Secrets {
			if s.Value == "" && !slices.Contains(missing, s.From()) {
				missing = append(missing, s.From())
			}
			if !slices.Contains(from, s.From()) {
				from = append(from, s.From())
			}
		}
		if len(from) > 0 {
			fmt.Fprintf(w, ", which adds the key (from %s); tasks hold a placeholder, never the key", strings.Join(from, ", "))
		}
		fmt.Fprintln(w)
	}
	if cfg.AuthFile != "" {
		fmt.Fprintf(w, "credentials: your ChatGPT login %s, copied into each task without its refresh token (run `codex` on the host when it expires).\n"+
			"credentials: warning: with a ChatGPT login, tasks can read your token; use an API key (OPENAI_API_KEY) for untrusted repos\n", cfg.AuthFile)
	}
	for _, e := range cfg.Env {
		name, _, _ := strings.Cut(e, "=")
		if slices.Contains(cfg.passEnv, name) {
			fmt.Fprintf(w, "credentials: note: passEnv %s goes into every task as it is, where tasks can read it; a model provider's key belongs in its env_key or env_http_headers instead\n", name)
		}
	}
	switch {
	case len(missing) > 0:
		return fmt.Errorf("credentials: %s named in config.json but not set in codex-connector's environment: set it where the server starts (the env of the ~/.mcp.json entry)", strings.Join(missing, ", "))
	case len(cfg.Routes) == 0 && cfg.AuthFile == "":
		return errors.New("credentials: none found — set OPENAI_API_KEY in the server's environment (the env of the ~/.mcp.json entry), configure a model provider in config.json's codexConfig, or run `codex login` on the host")
	}
	return nil
}
