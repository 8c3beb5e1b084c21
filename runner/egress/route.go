package egress

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
)

// Model routes keep credentials out of the sandbox. Codex in a task is
// given placeholders instead of its provider's keys, and a base URL on the
// bridge (http://127.0.0.1:3128/model/NAME/...). The bridge passes the
// request to the proxy, which forwards it to the provider's real base URL
// (over TLS for https) with each of the route's placeholders replaced by
// its secret in the header the provider reads it from. The secrets reach
// the proxy in the task's policy file, which no task mounts; the task never
// holds them, at any sandbox level.
//
// A placeholder is replaced only on its own route, towards its own
// upstream, and only where it is the whole of its header's value (after
// the prefix, "Bearer "), in a header sent once: sent anywhere else
// (another header, another route, an allowed host, a tunnel), or with
// anything around it, it travels as the meaningless string it is. So a
// task cannot have the provider echo the key back in an error about some
// other header, nor learn its first or last characters from a key made
// wrong on purpose.
//
// A route carries Codex's model requests and nothing else (modelCalls): a
// task cannot use the key for the rest of the provider's API (files, fine
// tuning, keys), nor for a method that echoes the request (TRACE). A
// WebSocket is spliced only once the upstream agreed to it (101); any
// other answer ends the connection, so no second, unchecked request rides
// on it.

// RoutePrefix starts the path of every request for a model route.
const RoutePrefix = "/model/"

// Route is one model provider as a task's policy names it.
type Route struct {
	// Name is the path segment after RoutePrefix: the provider's id.
	Name string `json:"name"`
	// Upstream is the provider's real base URL, http:// or https://.
	Upstream string `json:"upstream"`
	// Secrets are put in place of their placeholders in the headers of
	// this route's requests.
	Secrets []Secret `json:"secrets,omitempty"`
}

// Secret is one credential of a route.
type Secret struct {
	// Name is where it came from (an environment variable), for messages.
	Name string `json:"name"`
	// Header is where the provider reads it from, and Prefix what comes
	// before it there ("Authorization" and "Bearer " for an API key).
	Header string `json:"header"`
	Prefix string `json:"prefix,omitempty"`
	// Placeholder is what the task was given instead of Value.
	Placeholder string `json:"placeholder"`
	// Value is the real secret; empty when the server had none, and then
	// the route answers 401 with what to set.
	Value string `json:"value"`
}

// minPlaceholder keeps a short, guessable string from standing in for a
// secret: every occurrence of a placeholder in a header is replaced.
const minPlaceholder = 24

// route is a Route as the proxy holds it.
type route struct {
	name    string
	base    *url.URL
	addr    string // host:port to dial
	secrets []Secret
}

func compileRoute(rt Route) (*route, error) {
	if !ValidID(rt.Name) {
		return nil, errors.New("a route name is letters, digits, '-' and '_'")
	}
	u, err := CheckUpstream(rt.Upstream)
	if err != nil {
		return nil, err
	}
	port := u.Port()
	if port == "" {
		port = map[string]string{"http": "80", "https": "443"}[u.Scheme]
	}
	for i, s := range rt.Secrets {
		if s.Header == "" || strings.ContainsFunc(s.Header, func(r rune) bool { return r <= ' ' || r == ':' || r >= 0x7f }) {
			return nil, fmt.Errorf("the secret %s has no header, or one that is not a header name", s.Name)
		}
		rt.Secrets[i].Header = http.CanonicalHeaderKey(s.Header)
		if len(s.Placeholder) < minPlaceholder {
			return nil, fmt.Errorf("the placeholder of %s is shorter than %d characters", s.Name, minPlaceholder)
		}
		if !HeaderValue(s.Value) {
			return nil, fmt.Errorf("the secret in %s holds a control character: it cannot go in a header", s.Name)
		}
	}
	return &route{name: rt.Name, base: u, addr: net.JoinHostPort(u.Hostname(), port), secrets: rt.Secrets}, nil
}

// modelCalls are the requests Codex 0.169 makes of its model provider
// (its codex-api endpoints): the path under the provider's base URL, and
// the method. GET on responses is Codex's WebSocket (an upgrade). A
// request refused here is in the task's log, with its path, should a new
// Codex need one more.
var modelCalls = []struct {
	method, path string
	websocket    bool // the call is a WebSocket, and only it may be one
}{
	{http.MethodPost, "/responses", false},
	{http.MethodPost, "/responses/compact", false},
	{http.MethodPost, "/chat/completions", false},
	{http.MethodPost, "/images/generations", false},
	{http.MethodPost, "/images/edits", false},
	{http.MethodGet, "/models", false},
	{http.MethodGet, "/responses", true},
}

// modelCall says whether method and rest (the path under the base,
// escaped), as a WebSocket or not, are one of Codex's model requests.
func modelCall(method, rest string, websocket bool) bool {
	for _, c := range modelCalls {
		if c.method == method && c.path == rest && c.websocket == websocket {
			return true
		}
	}
	return false
}

// wantsWebSocket says whether req asks to become a WebSocket, as Codex
// does: a GET with one Upgrade, to websocket.
func wantsWebSocket(req *http.Request) bool {
	up := req.Header.Values("Upgrade")
	return req.Method == http.MethodGet && len(up) == 1 && strings.EqualFold(strings.TrimSpace(up[0]), "websocket") &&
		headerHasToken(req.Header, "Connection", "upgrade")
}

// switchedToWebSocket says whether an upstream's answer head agrees to a
// WebSocket: status 101 and Upgrade: websocket.
func switchedToWebSocket(head []byte) bool {
	resp, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(head)), nil)
	return err == nil && resp.StatusCode == http.StatusSwitchingProtocols && strings.EqualFold(resp.Header.Get("Upgrade"), "websocket")
}

func headerHasToken(h http.Header, name, token string) bool {
	for _, v := range h.Values(name) {
		for _, t := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), token) {
				return true
			}
		}
	}
	return false
}

// HeaderValue says whether a secret can go in a header: no control
// character, which would end or split the header.
func HeaderValue(s string) bool {
	return !strings.ContainsFunc(s, func(r rune) bool { return r < ' ' || r == 0x7f })
}

// CheckUpstream parses a provider's base URL as a route's upstream: http or
// https, a host, and no user, query or fragment. Its error never repeats
// the URL, which may hold a secret in those parts.
func CheckUpstream(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Hostname() == "" {
		return nil, errors.New("the base URL is not an http:// or https:// URL with a host")
	}
	if u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("the base URL %s://%s has a user, a query or a fragment: a route's base URL has none (put query parameters in the provider's query_params, keys in its env_key or env_http_headers)", u.Scheme, u.Host)
	}
	return u, nil
}

// isRouteRequest says whether req asks for a model route: an origin-form
// request (a path, no host) under RoutePrefix.
func isRouteRequest(req *http.Request) bool {
	return req.Method != http.MethodConnect && req.URL != nil && req.URL.Host == "" && strings.HasPrefix(req.URL.Path, RoutePrefix)
}

// routeTarget splits a route request's path into the route's name and the
// rest, escaped, which goes after the upstream's base path. A rest that
// climbs out of the base (a ".." segment) is refused: the task gets the
// provider's API, not the rest of its host.
func routeTarget(u *url.URL) (name, rest string, err error) {
	escaped := u.EscapedPath()
	tail := strings.TrimPrefix(escaped, RoutePrefix)
	name, rest, _ = strings.Cut(tail, "/")
	rest = "/" + rest
	plain, err := url.PathUnescape(rest)
	if err != nil {
		return name, "", fmt.Errorf("the path %q does not unescape", rest)
	}
	for _, seg := range strings.Split(plain, "/") {
		if seg == ".." || seg == "." {
			return name, "", fmt.Errorf("the path %q has a %q segment", plain, seg)
		}
	}
	return name, rest, nil
}

// serveRoute forwards one request of a model route to its upstream, with
// the route's secrets in place of their placeholders, and copies the
// answer back. A WebSocket upgrade (Codex tries one first with OpenAI's
// API) is spliced both ways once the upgrade request went out.
func (p *Proxy) serveRoute(t *task, raw net.Conn, br *bufio.Reader, req *http.Request, act *activity) {
	r := t.rules.Load()
	name, rest, err := routeTarget(req.URL)
	what := req.Method + " " + RoutePrefix + name
	if err != nil {
		p.refuse(raw, t.id, what, err.Error(), http.StatusBadRequest)
		return
	}
	rt := r.routes[name]
	if rt == nil {
		p.refuse(raw, t.id, what, fmt.Sprintf("this task has no model route %q", name), http.StatusNotFound)
		return
	}
	upgrade := wantsWebSocket(req)
	if !modelCall(req.Method, rest, upgrade) {
		p.refuse(raw, t.id, what, fmt.Sprintf("%s %s is not one of Codex's model requests: a model route carries those alone", req.Method, rest), http.StatusForbidden)
		return
	}
	for _, s := range rt.secrets {
		if s.Value == "" {
			p.refuse(raw, t.id, what, fmt.Sprintf("no key for the model provider %q: %s is not set in codex-connector's environment; set it where the server starts (the env of the ~/.mcp.json entry) and run the task again", name, s.Name), http.StatusUnauthorized)
			return
		}
	}
	out, err := rt.outgoing(req, rest, upgrade)
	if err != nil {
		p.refuse(raw, t.id, what, err.Error(), http.StatusBadRequest)
		return
	}
	ctx, cancel := context.WithTimeout(t.ctx, dialTimeout)
	up, addr, err := p.dialRoute(ctx, rt)
	cancel()
	if err != nil {
		p.refuse(raw, t.id, what, err.Error(), http.StatusBadGateway)
		return
	}
	defer up.Close()
	p.Logf("egress: task %s: %s → %s%s (dialed %s)", t.id, what, rt.base.Host, rt.base.Path, addr)
	client, upc, stop := p.watch(t, r, what, raw, br, act, up)
	defer stop()
	if err := out.Write(upc); err != nil {
		return
	}
	if !upgrade {
		io.Copy(client, upc)
		return
	}
	// Spliced only once the upstream switched protocols; any other answer
	// is passed on whole, and the connection ends with it.
	ur := bufio.NewReader(upc)
	head, err := readHead(ur, maxResponseHead)
	if err != nil {
		return
	}
	if !switchedToWebSocket(head) {
		resp, err := http.ReadResponse(bufio.NewReader(io.MultiReader(bytes.NewReader(head), ur)), out)
		if err != nil {
			return
		}
		defer resp.Body.Close()
		resp.Close = true
		resp.Write(client)
		return
	}
	if _, err := client.Write(head); err != nil {
		return
	}
	splice(client, act.conn(up, ur))
}

// outgoing is req as the upstream gets it: its URL under the base, its
// Host the upstream's, hop-by-hop headers dropped, and each secret of this
// route in its header, where that header is sent once and its value is
// exactly the prefix and the placeholder. One request per connection, as
// on the proxy's other path, unless it is a WebSocket.
func (rt *route) outgoing(req *http.Request, rest string, upgrade bool) (*http.Request, error) {
	base := strings.TrimSuffix(rt.base.EscapedPath(), "/")
	u := &url.URL{Scheme: rt.base.Scheme, Host: rt.base.Host, RawQuery: req.URL.RawQuery}
	u.Path, _ = url.PathUnescape(base + rest)
	u.RawPath = base + rest
	for _, s := range rt.secrets {
		if len(req.Header.Values(s.Header)) > 1 {
			return nil, fmt.Errorf("the request sends %s more than once", s.Header)
		}
	}
	h := http.Header{}
	for k, vs := range req.Header {
		switch http.CanonicalHeaderKey(k) {
		case "Proxy-Connection", "Proxy-Authorization", "Keep-Alive", "Te", "Trailer", "Host":
			continue
		}
		key := http.CanonicalHeaderKey(k)
		for _, v := range vs {
			for _, s := range rt.secrets {
				if key == s.Header && v == s.Prefix+s.Placeholder {
					v = s.Prefix + s.Value
				}
			}
			h.Add(k, v)
		}
	}
	if upgrade {
		h.Set("Connection", "Upgrade")
	} else {
		h.Set("Connection", "close")
		h.Del("Upgrade")
	}
	out := &http.Request{Method: req.Method, URL: u, Host: rt.base.Host, Header: h, Body: req.Body,
		ContentLength: req.ContentLength, TransferEncoding: req.TransferEncoding, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1}
	if out.Body == nil || req.ContentLength == 0 && len(req.TransferEncoding) == 0 {
		out.Body = nil
	}
	return out, nil
}

// dialRoute connects to the route's upstream: the host the user's
// configuration names, not one the task chose, so the address wall does
// not apply (a model server on the Docker bridge is a fine upstream). An
// https upstream gets TLS with the system's certificates.
func (p *Proxy) dialRoute(ctx context.Context, rt *route) (net.Conn, string, error) {
	host, port, _ := net.SplitHostPort(rt.addr)
	var addrs []string
	if ip := net.ParseIP(host); ip != nil {
		addrs = []string{rt.addr}
	} else {
		ips, err := p.Resolve(ctx, host)
		if err != nil || len(ips) == 0 {
			return nil, "", fmt.Errorf("resolve %s: %v", host, err)
		}
		for _, ip := range ips {
			addrs = append(addrs, net.JoinHostPort(ip.IP.String(), port))
		}
	}
	var conn net.Conn
	var addr string
	var lastErr error
	for _, a := range addrs {
		c, err := p.Dial(ctx, "tcp", a)
		if err == nil {
			conn, addr = c, a
			break
		}
		lastErr = err
	}
	if conn == nil {
		return nil, "", fmt.Errorf("connect %s: %v", rt.addr, lastErr)
	}
	if rt.base.Scheme != "https" {
		return conn, addr, nil
	}
	tc := tls.Client(conn, &tls.Config{ServerName: host, NextProtos: []string{"http/1.1"}, RootCAs: p.RootCAs, MinVersion: tls.VersionTLS12})
	if err := tc.HandshakeContext(ctx); err != nil {
		conn.Close()
		return nil, "", fmt.Errorf("TLS with %s: %v (the proxy trusts the CA certificates of the server's machine)", rt.addr, err)
	}
	return tc, addr, nil
}

// routeNames spells a policy's routes for the proxy's log: names and
// upstreams, never secrets.
func (r *rules) routeNames() []string {
	var out []string
	for _, rt := range r.routes {
		out = append(out, rt.name+"="+rt.base.Host+rt.base.Path)
	}
	slices.Sort(out)
	return out
}
