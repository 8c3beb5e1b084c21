package egress

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// The egress directory (home/egress on the host, /egress in the proxy's
// container) is split by who may write what. A task's container mounts
// only its own socket directory, read-only, so nothing a task can write is
// ever read back as policy.
const (
	// PoliciesDir holds <id>.json, one policy per task: written by the
	// server, read by the proxy, mounted into no task.
	PoliciesDir = "policies"
	// SocketsDir holds <id>/sock, one directory per task: the proxy makes
	// the socket, the task's container mounts <id> read-only.
	SocketsDir = "sockets"
	// SocketName is the proxy's socket in a task's socket directory.
	SocketName = "sock"
)

// Defaults of a policy's limits, for a policy that leaves them zero.
const (
	// DefaultMaxConns is how many connections one task may hold open at
	// once: Codex needs a handful; a cap keeps one task from taking the
	// proxy's memory and file descriptors from the others.
	DefaultMaxConns = 128
	// DefaultIdle closes a connection that carried no byte either way for
	// this long. It is above Codex's own stream idle timeout (5 minutes), so
	// the proxy never cuts a model stream that Codex would still wait for.
	DefaultIdle = 10 * time.Minute
)

// maxPolicyBytes caps what the proxy reads of a policy file.
const maxPolicyBytes = 64 << 10

// Policy is what one task may reach. The server writes it, atomically, as
// PoliciesDir/<id>.json; the proxy reads it into memory.
type Policy struct {
	TaskID string `json:"taskId"`
	// Allow lists host:port entries. "*.example.com:443" allows the
	// sub-domains of example.com (not example.com itself, and no IP
	// literal). An IP literal entry ("172.17.0.1:8080") is the only way to
	// reach a loopback, private, link-local or Docker address.
	Allow []string `json:"allow"`
	// Deny lists more networks (CIDR) the proxy refuses besides the fixed
	// classes: the subnets of the Docker engine's networks, which may lie
	// outside the private ranges.
	Deny []string `json:"deny,omitempty"`
	// MaxConns caps the task's open connections (0: DefaultMaxConns).
	MaxConns int `json:"maxConns,omitempty"`
	// IdleSeconds closes a connection idle this long (0: DefaultIdle).
	IdleSeconds int `json:"idleSeconds,omitempty"`
	// Routes are the model providers the task's Codex reaches through the
	// bridge, at every sandbox level: the proxy forwards to the real
	// upstream and puts the secrets in place of their placeholders (see
	// route.go).
	Routes []Route `json:"routes,omitempty"`
}

// ValidID says whether id is safe as a file name in the egress directory.
// The runner's task ids ("20060102-150405-abcdef") pass.
func ValidID(id string) bool {
	if id == "" || len(id) > 64 {
		return false
	}
	for _, c := range id {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// entry is one parsed Allow entry.
type entry struct {
	port string
	// Exactly one of these: an IP literal, a host name, or a wildcard's
	// suffix (".example.com").
	ip     netip.Addr
	name   string
	suffix string
}

// rules is a policy as the proxy holds it in memory.
type rules struct {
	taskID   string
	allow    []entry
	deny     []netip.Prefix
	maxConns int
	idle     time.Duration
	routes   map[string]*route
}

// Check says whether the proxy would serve p, and why not: the server
// checks a policy before it writes it, so that a task fails with the
// reason rather than wait for a socket that never comes.
func (p Policy) Check() error {
	_, err := compile(p)
	return err
}

// compile checks a policy and parses it. A Deny entry that does not parse
// fails the whole policy: serving it without that network would let the
// task reach what the server meant to wall off.
func compile(p Policy) (*rules, error) {
	if !ValidID(p.TaskID) {
		return nil, fmt.Errorf("task id %q is not valid", p.TaskID)
	}
	r := &rules{taskID: p.TaskID, maxConns: p.MaxConns, idle: time.Duration(p.IdleSeconds) * time.Second}
	if r.maxConns <= 0 {
		r.maxConns = DefaultMaxConns
	}
	if r.idle <= 0 {
		r.idle = DefaultIdle
	}
	for _, a := range p.Allow {
		e, err := parseEntry(a)
		if err != nil {
			return nil, fmt.Errorf("allow %q: %w", a, err)
		}
		r.allow = append(r.allow, e)
	}
	for _, d := range p.Deny {
		pfx, err := netip.ParsePrefix(d)
		if err != nil {
			return nil, fmt.Errorf("deny %q: %w", d, err)
		}
		r.deny = append(r.deny, pfx.Masked())
	}
	for _, rt := range p.Routes {
		c, err := compileRoute(rt)
		if err != nil {
			return nil, fmt.Errorf("route %q: %w", rt.Name, err)
		}
		if r.routes == nil {
			r.routes = map[string]*route{}
		}
		if r.routes[c.name] != nil {
			return nil, fmt.Errorf("route %q is named twice", rt.Name)
		}
		r.routes[c.name] = c
	}
	return r, nil
}

// splitTarget splits host:port and brings the host to one spelling: lower
// case, no trailing dot, and an IP literal in its canonical form with an
// IPv4-mapped IPv6 address unmapped, so that "[::ffff:10.0.0.1]" is
// 10.0.0.1 to every check. A zoned IPv6 address is refused.
func splitTarget(hostport string) (host string, ip netip.Addr, port string, err error) {
	host, port, err = net.SplitHostPort(hostport)
	if err != nil {
		return "", ip, "", err
	}
	if n, err := strconv.ParseUint(port, 10, 16); err != nil || n == 0 {
		return "", ip, "", fmt.Errorf("port %q is not a port number", port)
	}
	host = strings.ToLower(strings.TrimSuffix(host, "."))
	if host == "" {
		return "", ip, "", errors.New("no host")
	}
	if a, err := netip.ParseAddr(host); err == nil {
		if a.Zone() != "" {
			return "", ip, "", errors.New("a zoned IPv6 address is refused")
		}
		a = a.Unmap()
		return a.String(), a, port, nil
	}
	return host, ip, port, nil
}

func parseEntry(s string) (entry, error) {
	host, ip, port, err := splitTarget(s)
	if err != nil {
		return entry{}, err
	}
	switch {
	case ip.IsValid():
		return entry{port: port, ip: ip}, nil
	case strings.HasPrefix(host, "*."):
		if strings.Contains(host[2:], "*") || host[2:] == "" {
			return entry{}, errors.New("a wildcard is only one leading \"*.\"")
		}
		return entry{port: port, suffix: host[1:]}, nil
	case strings.Contains(host, "*"):
		return entry{}, errors.New("a wildcard is only one leading \"*.\"")
	}
	return entry{port: port, name: host}, nil
}

// allows says whether target (host:port, as the task asked) is on the
// list. Names match names and literals match literals: a wildcard never
// matches an IP literal, whose "sub-domain" would be any address.
func (r *rules) allows(target string) bool {
	host, ip, port, err := splitTarget(target)
	if err != nil {
		return false
	}
	for _, e := range r.allow {
		if e.port != port {
			continue
		}
		switch {
		case ip.IsValid():
			if e.ip == ip {
				return true
			}
		case e.name != "":
			if e.name == host {
				return true
			}
		case e.suffix != "":
			if strings.HasSuffix(host, e.suffix) {
				return true
			}
		}
	}
	return false
}

// allowList spells the entries for the proxy's log.
func (r *rules) allowList() []string {
	var out []string
	for _, e := range r.allow {
		host := e.name
		switch {
		case e.ip.IsValid():
			host = e.ip.String()
		case e.suffix != "":
			host = "*" + e.suffix
		}
		out = append(out, net.JoinHostPort(host, e.port))
	}
	return out
}

// literal says whether the list names ip:port as an IP literal: the one
// way past the address wall.
func (r *rules) literal(ip netip.Addr, port string) bool {
	ip = ip.Unmap()
	for _, e := range r.allow {
		if e.ip.IsValid() && e.ip == ip && e.port == port {
			return true
		}
	}
	return false
}

// readPolicy reads a policy file without following a symlink, without
// blocking on a FIFO and without reading more than maxPolicyBytes. The
// policies directory is the server's, but the proxy reads it as if it were
// not: a file that is not plainly a small regular file is no policy.
func readPolicy(path string) (Policy, error) {
	var p Policy
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK|syscall.O_CLOEXEC, 0)
	if err != nil {
		return p, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return p, err
	}
	if !fi.Mode().IsRegular() {
		return p, fmt.Errorf("%s is not a regular file (%s)", filepath.Base(path), fi.Mode().Type())
	}
	if fi.Size() > maxPolicyBytes {
		return p, fmt.Errorf("%s is %d bytes, over the cap of %d", filepath.Base(path), fi.Size(), maxPolicyBytes)
	}
	data, err := io.ReadAll(io.LimitReader(f, maxPolicyBytes+1))
	if err != nil {
		return p, err
	}
	if len(data) > maxPolicyBytes {
		return p, fmt.Errorf("%s grew over the cap of %d bytes", filepath.Base(path), maxPolicyBytes)
	}
	dec := json.NewDecoder(strings.NewReader(string(data)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p); err != nil {
		return p, fmt.Errorf("%s: %w", filepath.Base(path), err)
	}
	return p, nil
}
