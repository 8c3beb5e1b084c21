package runner

import (
	"crypto/rand"
	"encoding/hex"
	"strconv"

	"github.com/codex-connector/codex-connector/runner/egress"
)

// Credentials stay on the host. A task's Codex gets placeholders where its
// provider's keys would be, and base URLs on the bridge in its container;
// the egress proxy forwards each model request to the real provider with
// the placeholders replaced (runner/egress/route.go). The secrets go from
// the server to the proxy in the task's policy file, which no task mounts,
// and appear nowhere a task can look: not its environment, its mounts, its
// command line, its log or its record.

// ModelRoute is how tasks reach one model provider.
type ModelRoute struct {
	// Provider is Codex's id of the provider: OpenAIProvider for the
	// built-in one, or a model_providers entry of codexConfig.
	Provider string
	// Upstream is the provider's real base URL.
	Upstream string
	// Secrets are the provider's credentials.
	Secrets []RouteSecret
}

// RouteSecret is one credential: the variable Codex reads it from inside
// the container, and its value on the host ("" when the server has none:
// the route then answers 401 saying what to set).
type RouteSecret struct {
	Env   string
	Value string
	// Header is where the provider reads it, and Prefix what goes before
	// it there: "Authorization" and "Bearer " for an API key (env_key),
	// the header alone for env_http_headers. The proxy puts the secret
	// only there, and only in place of the whole placeholder.
	Header string
	Prefix string
	// Source says where the server took the value from, for messages: a
	// variable of its environment, or a file; "" is Env.
	Source string
}

func (s RouteSecret) From() string {
	if s.Source != "" {
		return s.Source
	}
	return s.Env
}

// OpenAIProvider is Codex's built-in provider. Codex 0.169 takes its base
// URL from openai_base_url and, in `codex exec`, its key from
// CODEX_API_KEY (it does not read OPENAI_API_KEY).
const (
	OpenAIProvider = "openai"
	OpenAIKeyEnv   = "CODEX_API_KEY"
	OpenAIUpstream = "https://api.openai.com/v1"
)

// BearerKey is a secret Codex sends as "Authorization: Bearer KEY": the
// built-in provider's key, and the key a provider's env_key names.
func BearerKey(env, value, source string) RouteSecret {
	return RouteSecret{Env: env, Value: value, Source: source, Header: "Authorization", Prefix: "Bearer "}
}

// placeholderPrefix marks what a task holds instead of a secret.
const placeholderPrefix = "codex-connector-placeholder-"

// taskCredentials is what one launch of a task gets of the routes: the
// container's variables (placeholders) and `codex exec` arguments (base
// URLs on the bridge), and the proxy's routes (placeholders and secrets).
type taskCredentials struct {
	env    []string
	args   []string
	routes []egress.Route
}

// credentialsFor makes fresh placeholders for one launch. A placeholder is
// random, so one task's is worth nothing in another's hands, and a new
// launch (a requeue) gets new ones along with its new policy.
func credentialsFor(routes []ModelRoute) taskCredentials {
	var c taskCredentials
	placeholders := map[string]string{}
	for _, mr := range routes {
		base := "http://" + bridgeListen + egress.RoutePrefix + mr.Provider
		key := "model_providers." + mr.Provider + ".base_url"
		if mr.Provider == OpenAIProvider {
			key = "openai_base_url"
		}
		c.args = append(c.args, "-c", key+"="+strconv.Quote(base))
		rt := egress.Route{Name: mr.Provider, Upstream: mr.Upstream}
		for _, s := range mr.Secrets {
			// One variable, one placeholder, however many headers use it.
			ph, ok := placeholders[s.Env]
			if !ok {
				ph = newPlaceholder()
				placeholders[s.Env] = ph
				c.env = append(c.env, s.Env+"="+ph)
			}
			rt.Secrets = append(rt.Secrets, egress.Secret{Name: s.From(), Header: s.Header, Prefix: s.Prefix, Placeholder: ph, Value: s.Value})
		}
		c.routes = append(c.routes, rt)
	}
	return c
}

func newPlaceholder() string {
	b := make([]byte, 16)
	rand.Read(b) // never fails (crypto/rand)
	return placeholderPrefix + hex.EncodeToString(b)
}
