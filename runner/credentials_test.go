package runner

import (
	"slices"
	"strings"
	"testing"
)

func TestCredentialsForALaunch(t *testing.T) {
	routes := []ModelRoute{
		{Provider: "azure", Upstream: "https://a.example/openai", Secrets: []RouteSecret{
			BearerKey("AZ_KEY", "sk-az", ""), {Env: "AZ_KEY", Value: "sk-az", Header: "api-key"}}},
		{Provider: OpenAIProvider, Upstream: OpenAIUpstream, Secrets: []RouteSecret{BearerKey(OpenAIKeyEnv, "sk-oa", "OPENAI_API_KEY")}},
	}
	c := credentialsFor(routes)
	wantArgs := []string{"-c", `model_providers.azure.base_url="http://127.0.0.1:3128/model/azure"`, "-c", `openai_base_url="http://127.0.0.1:3128/model/openai"`}
	if !slices.Equal(c.args, wantArgs) {
		t.Errorf("args %q", c.args)
	}
	if len(c.env) != 2 || !strings.HasPrefix(c.env[0], "AZ_KEY="+placeholderPrefix) || !strings.HasPrefix(c.env[1], OpenAIKeyEnv+"="+placeholderPrefix) {
		t.Fatalf("env %q: one placeholder per variable", c.env)
	}
	az := c.routes[0].Secrets
	if len(az) != 2 || az[0].Placeholder != az[1].Placeholder || "AZ_KEY="+az[0].Placeholder != c.env[0] {
		t.Errorf("a variable in two headers has two placeholders: %+v", az)
	}
	if s := c.routes[1].Secrets[0]; s.Name != "OPENAI_API_KEY" || s.Value != "sk-oa" || s.Header != "Authorization" || s.Prefix != "Bearer " {
		t.Errorf("openai secret %+v", s)
	}
	if again := credentialsFor(routes); again.env[0] == c.env[0] {
		t.Error("a second launch got the same placeholder")
	}
	for _, e := range c.env {
		if strings.Contains(e, "sk-") {
			t.Errorf("a key in the container's environment: %s", e)
		}
	}
}
