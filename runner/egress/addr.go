package egress

import (
	"net/netip"
)

// The address wall: after the proxy resolves a name, it refuses every
// address that is not plainly on the public internet, so that an allowed
// name (or one an attacker's DNS answers for) cannot lead into the host,
// the Docker networks or the user's LAN. Only an allowed entry that names
// the IP literal itself opens such an address (rules.literal).

type addrClass struct {
	prefix netip.Prefix
	what   string
}

// wall lists the fixed classes, most specific first where they overlap, so
// that a refusal names the class a reader would recognise.
var wall = func() []addrClass {
	var out []addrClass
	for _, c := range []struct{ cidr, what string }{
		{"0.0.0.0/32", "the unspecified address"},
		{"0.0.0.0/8", "a \"this network\" address (0.0.0.0/8)"},
		{"10.0.0.0/8", "a private address (RFC 1918)"},
		{"100.64.0.0/10", "a carrier-grade NAT address (100.64.0.0/10)"},
		{"127.0.0.0/8", "a loopback address"},
		{"169.254.0.0/16", "a link-local address (169.254.0.0/16, cloud metadata lives here)"},
		{"172.16.0.0/12", "a private address (RFC 1918)"},
		{"192.0.0.0/24", "a reserved address (IETF protocol assignments)"},
		{"192.0.2.0/24", "a reserved address (documentation)"},
		{"192.88.99.0/24", "a reserved address (6to4 relay)"},
		{"192.168.0.0/16", "a private address (RFC 1918)"},
		{"198.18.0.0/15", "a reserved address (benchmarking)"},
		{"198.51.100.0/24", "a reserved address (documentation)"},
		{"203.0.113.0/24", "a reserved address (documentation)"},
		{"224.0.0.0/4", "a multicast address"},
		{"255.255.255.255/32", "the broadcast address"},
		{"240.0.0.0/4", "a reserved address (240.0.0.0/4)"},
		{"::/128", "the unspecified address"},
		{"::1/128", "a loopback address"},
		{"::/96", "a reserved address (IPv4-compatible IPv6)"},
		{"64:ff9b:1::/48", "a reserved address (local-use NAT64)"},
		{"100::/64", "a reserved address (discard-only)"},
		{"2001::/23", "a reserved address (IETF protocol assignments, Teredo)"},
		{"2001:db8::/32", "a reserved address (documentation)"},
		{"fc00::/7", "a private address (unique local, fc00::/7)"},
		{"fe80::/10", "a link-local address (fe80::/10)"},
		{"fec0::/10", "a reserved address (site-local)"},
		{"ff00::/8", "a multicast address"},
	} {
		out = append(out, addrClass{netip.MustParsePrefix(c.cidr), c.what})
	}
	return out
}()

var (
	nat64     = netip.MustParsePrefix("64:ff9b::/96")
	sixToFour = netip.MustParsePrefix("2002::/16")
	// globalUnicast is all of IPv6 that is routed on the internet today;
	// the rest is reserved, whatever a future use of it may be.
	globalUnicast = netip.MustParsePrefix("2000::/3")
)

// refusal says why the proxy must not connect to ip, or "" when it may.
// docker are the subnets of the engine's networks: a user may have put
// them outside the private ranges. IPv6 forms that carry an IPv4 address
// (NAT64, 6to4) are judged by the address they carry.
func refusal(ip netip.Addr, docker []netip.Prefix) string {
	ip = ip.Unmap()
	if !ip.IsValid() {
		return "not an address"
	}
	if ip.Zone() != "" {
		return "a zoned address"
	}
	for _, p := range docker {
		if p.Contains(ip) {
			return "in a Docker network (" + p.String() + ")"
		}
	}
	for _, c := range wall {
		if c.prefix.Contains(ip) {
			return c.what
		}
	}
	if nat64.Contains(ip) || sixToFour.Contains(ip) {
		b := ip.As16()
		var v4 netip.Addr
		if nat64.Contains(ip) {
			v4 = netip.AddrFrom4([4]byte{b[12], b[13], b[14], b[15]})
		} else {
			v4 = netip.AddrFrom4([4]byte{b[2], b[3], b[4], b[5]})
		}
		if why := refusal(v4, docker); why != "" {
			return "an IPv6 address that carries " + v4.String() + ", " + why
		}
		return ""
	}
	if ip.Is6() && !globalUnicast.Contains(ip) {
		return "a reserved address (outside IPv6 global unicast, 2000::/3)"
	}
	return ""
}
