package egress

import "testing"

func TestPolicyAllows(t *testing.T) {
	p := Policy{TaskID: "t", Allow: []string{"api.openai.com:443", "*.example.com:443", "172.17.0.1:8080"}}
	for _, tc := range []struct {
		target string
		want   bool
	}{
		{"api.openai.com:443", true},
		{"API.OpenAI.com.:443", true},
		{"api.openai.com:80", false},
		{"a.example.com:443", true},
		{"a.b.example.com:443", true},
		{"example.com:443", false},
		{"badexample.com:443", false},
		{"172.17.0.1:8080", true},
		{"172.17.0.1:8081", false},
		{"no-port", false},
	} {
		if got := p.allows(tc.target); got != tc.want {
			t.Errorf("allows(%q) = %v, want %v", tc.target, got, tc.want)
		}
	}
}
