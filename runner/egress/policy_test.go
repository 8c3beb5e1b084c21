package egress

import (
	"net/netip"
	"strings"
	"testing"
)

func mustCompile(t *testing.T, p Policy) *rules {
	t.Helper()
	if p.TaskID == "" {
		p.TaskID = "task-a"
	}
	r, err := compile(p)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestAllowList(t *testing.T) {
	r := mustCompile(t, Policy{Allow: []string{"api.openai.com:443", "*.example.com:443", "172.17.0.1:8080", "[fd00::1]:443", "*.0.0.1:80"}})
	for _, tc := range []struct {
		name, target string
		want         bool
	}{
		{"an exact name", "api.openai.com:443", true},
		{"a name in another case, with the root dot", "API.OpenAI.com.:443", true},
		{"a listed name on another port", "api.openai.com:80", false},
		{"a sub-domain of a wildcard", "a.example.com:443", true},
		{"a deeper sub-domain of a wildcard", "a.b.example.com:443", true},
		{"the wildcard's own domain", "example.com:443", false},
		{"a name that only ends like the wildcard", "badexample.com:443", false},
		{"an IP literal entry", "172.17.0.1:8080", true},
		{"the same literal as IPv4-mapped IPv6", "[::ffff:172.17.0.1]:8080", true},
		{"a literal entry on another port", "172.17.0.1:8081", false},
		{"an IPv6 literal entry", "[FD00:0::1]:443", true},
		{"a wildcard never matches an IP literal", "127.0.0.1:80", false},
		{"a zoned address", "[fe80::1%eth0]:443", false},
		{"no port", "api.openai.com", false},
		{"port 0", "api.openai.com:0", false},
		{"a port that is not a number", "api.openai.com:https", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := r.allows(tc.target); got != tc.want {
				t.Errorf("allows(%q) = %v, want %v", tc.target, got, tc.want)
			}
		})
	}
}

func TestPolicyCompileRefuses(t *testing.T) {
	for _, tc := range []struct {
		name string
		p    Policy
		want string
	}{
		{"a wildcard inside a name", Policy{TaskID: "a", Allow: []string{"a*.example.com:443"}}, "wildcard"},
		{"two wildcards", Policy{TaskID: "a", Allow: []string{"*.*.example.com:443"}}, "wildcard"},
		{"an entry without a port", Policy{TaskID: "a", Allow: []string{"example.com"}}, "missing port"},
		{"a deny entry that is no network", Policy{TaskID: "a", Deny: []string{"172.17.0.0"}}, "deny"},
		{"a task id that is no file name", Policy{TaskID: "../x"}, "not valid"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := compile(tc.p); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("compile: %v, want an error with %q", err, tc.want)
			}
		})
	}
}

func TestAddressWall(t *testing.T) {
	docker := []netip.Prefix{netip.MustParsePrefix("172.17.0.0/16"), netip.MustParsePrefix("11.0.0.0/16")}
	for _, tc := range []struct {
		ip   string
		want string // a part of the reason; "" for an address the proxy may dial
	}{
		{"127.0.0.1", "loopback"},
		{"127.8.9.10", "loopback"},
		{"::1", "loopback"},
		{"::ffff:127.0.0.1", "loopback"},
		{"10.1.2.3", "private"},
		{"172.16.0.1", "private"},
		{"172.31.255.255", "private"},
		{"192.168.1.1", "private"},
		{"fd12:3456::1", "private"},
		{"::ffff:192.168.1.1", "private"},
		{"172.17.0.1", "Docker network (172.17.0.0/16)"},
		{"11.0.3.4", "Docker network (11.0.0.0/16)"},
		{"169.254.169.254", "link-local"},
		{"fe80::1", "link-local"},
		{"100.64.0.1", "carrier-grade NAT"},
		{"100.127.255.255", "carrier-grade NAT"},
		{"224.0.0.1", "multicast"},
		{"239.255.255.250", "multicast"},
		{"ff02::1", "multicast"},
		{"0.0.0.0", "unspecified"},
		{"::", "unspecified"},
		{"0.1.2.3", "this network"},
		{"255.255.255.255", "broadcast"},
		{"240.0.0.1", "reserved"},
		{"192.0.2.1", "documentation"},
		{"198.18.0.1", "benchmarking"},
		{"2001:db8::1", "documentation"},
		{"::127.0.0.1", "IPv4-compatible"},
		{"64:ff9b::a00:1", "carries 10.0.0.1"},
		{"2002:7f00:1::", "carries 127.0.0.1"},
		{"fe00::", "outside IPv6 global unicast"},
		{"4000::1", "outside IPv6 global unicast"},
		{"8.8.8.8", ""},
		{"100.63.255.255", ""},
		{"100.128.0.0", ""},
		{"172.32.0.1", ""},
		{"11.1.0.1", ""},
		{"2606:4700::1111", ""},
		{"64:ff9b::808:808", ""},
	} {
		t.Run(tc.ip, func(t *testing.T) {
			got := refusal(netip.MustParseAddr(tc.ip), docker)
			if tc.want == "" && got != "" || tc.want != "" && !strings.Contains(got, tc.want) {
				t.Fatalf("refusal(%s) = %q, want %q", tc.ip, got, tc.want)
			}
		})
	}
}

func TestLiteralEntryOpensOnlyThatAddressAndPort(t *testing.T) {
	r := mustCompile(t, Policy{Allow: []string{"172.17.0.1:8080", "[::ffff:10.0.0.7]:443"}})
	for _, tc := range []struct {
		ip, port string
		want     bool
	}{
		{"172.17.0.1", "8080", true},
		{"::ffff:172.17.0.1", "8080", true},
		{"172.17.0.1", "8081", false},
		{"172.17.0.2", "8080", false},
		{"10.0.0.7", "443", true},
	} {
		if got := r.literal(netip.MustParseAddr(tc.ip), tc.port); got != tc.want {
			t.Errorf("literal(%s, %s) = %v, want %v", tc.ip, tc.port, got, tc.want)
		}
	}
}
