// Package egress holds the two programs of a restricted task's network path
// that run outside the MCP server: the egress proxy, in its own long-lived
// container, and the bridge, inside each task's container in front of
// Codex. The server side (starting the proxy, writing a task's policy) is
// the runner's.
package egress

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// The egress proxy is how a task in a restricted sandbox reaches the
// network: its container has no network at all, only a Unix socket into its
// own directory of the proxy's. The proxy allows CONNECT and absolute-URI
// HTTP requests to the host:port pairs of that task's policy, resolves the
// name itself and dials the address it checked; everything else is denied.
// It runs in its own long-lived container (see runner/egress.go), so it keeps
// serving tasks while MCP servers come and go.

// Policy is what one task may reach; the runner writes it as
// policy.json in the task's egress directory.
type Policy struct {
	TaskID string   `json:"taskId"`
	Allow  []string `json:"allow"` // host:port, lower case; "*.example.com:443" allows sub-domains
}

func (p Policy) allows(hostport string) bool {
	host, port, err := net.SplitHostPort(hostport)
	if err != nil {
		return false
	}
	host = strings.ToLower(strings.TrimSuffix(host, "."))
	for _, a := range p.Allow {
		ah, ap, err := net.SplitHostPort(a)
		if err != nil || ap != port {
			continue
		}
		if ah == host || strings.HasPrefix(ah, "*.") && strings.HasSuffix(host, ah[1:]) {
			return true
		}
	}
	return false
}

// deniedHeader is the header the proxy sets on a refusal, so the bridge in
// the task's container can tell a policy refusal from an upstream error.
const deniedHeader = "X-Codex-Connector-Egress"

// Proxy serves every task directory under Dir that holds a
// policy.json, on the socket "sock" beside it.
type Proxy struct {
	Dir  string
	Logf func(format string, args ...any)
	// Resolve looks a host up; tests may replace it.
	Resolve func(ctx context.Context, host string) ([]net.IPAddr, error)

	mu        sync.Mutex
	listeners map[string]net.Listener
}

// Run scans Dir for task policies until ctx ends, serving each on its socket.
func (p *Proxy) Run(ctx context.Context) error {
	if p.Resolve == nil {
		p.Resolve = net.DefaultResolver.LookupIPAddr
	}
	p.listeners = map[string]net.Listener{}
	defer p.closeAll()
	// A new task waits for its socket before its container starts: scan
	// often (a directory read) so that wait stays short.
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		p.scan(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

func (p *Proxy) closeAll() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, l := range p.listeners {
		l.Close()
	}
}

func (p *Proxy) scan(ctx context.Context) {
	entries, err := os.ReadDir(p.Dir)
	if err != nil {
		p.Logf("egress: read %s: %v", p.Dir, err)
		return
	}
	seen := map[string]bool{}
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		id := e.Name()
		dir := filepath.Join(p.Dir, id)
		if _, err := os.Stat(filepath.Join(dir, "policy.json")); err != nil {
			continue
		}
		seen[id] = true
		p.mu.Lock()
		_, serving := p.listeners[id]
		p.mu.Unlock()
		if serving {
			continue
		}
		sock := filepath.Join(dir, "sock")
		os.Remove(sock) // left by an earlier proxy
		l, err := net.Listen("unix", sock)
		if err != nil {
			p.Logf("egress: task %s: listen: %v", id, err)
			continue
		}
		// The task runs as the repo owner, not as the proxy's user; the
		// policy, not the socket's mode, decides what it may reach.
		os.Chmod(sock, 0o666)
		p.mu.Lock()
		p.listeners[id] = l
		p.mu.Unlock()
		go p.serve(ctx, id, dir, l)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for id, l := range p.listeners {
		if !seen[id] {
			l.Close()
			delete(p.listeners, id)
		}
	}
}

func (p *Proxy) serve(ctx context.Context, id, dir string, l net.Listener) {
	for {
		c, err := l.Accept()
		if err != nil {
			return
		}
		go p.handle(ctx, id, dir, c)
	}
}

// policy is re-read per connection, so a change applies at once and a
// removed task is refused.
func (p *Proxy) policy(dir string) (Policy, error) {
	var pol Policy
	data, err := os.ReadFile(filepath.Join(dir, "policy.json"))
	if err != nil {
		return pol, err
	}
	return pol, json.Unmarshal(data, &pol)
}

func (p *Proxy) handle(ctx context.Context, id, dir string, client net.Conn) {
	defer client.Close()
	client.SetReadDeadline(time.Now().Add(30 * time.Second))
	br := bufio.NewReader(client)
	req, err := http.ReadRequest(br)
	if err != nil {
		return
	}
	client.SetReadDeadline(time.Time{})
	target := req.Host
	if req.Method != http.MethodConnect {
		if req.URL == nil || req.URL.Host == "" || req.URL.Scheme != "http" {
			p.refuse(client, id, req.Method+" "+req.RequestURI, "only CONNECT and absolute http:// requests go through the proxy", http.StatusBadRequest)
			return
		}
		target = req.URL.Host
		if _, _, err := net.SplitHostPort(target); err != nil {
			target = net.JoinHostPort(target, "80")
		}
	}
	what := req.Method + " " + target
	pol, err := p.policy(dir)
	if err != nil {
		p.refuse(client, id, what, "the task has no egress policy (it has ended?)", http.StatusForbidden)
		return
	}
	if !pol.allows(target) {
		p.refuse(client, id, what, target+" is not an allowed host for this task: add it to allowedHosts in config.json, or use sandbox danger-full-access", http.StatusForbidden)
		return
	}
	upstream, addr, err := p.dial(ctx, target)
	if err != nil {
		p.refuse(client, id, what, err.Error(), http.StatusBadGateway)
		return
	}
	defer upstream.Close()
	p.Logf("egress: task %s: %s allowed (dialed %s)", id, what, addr)
	if req.Method == http.MethodConnect {
		fmt.Fprintf(client, "HTTP/1.1 200 Connection established\r\n%s: allowed %s\r\n\r\n", deniedHeader, addr)
		splice(client, br, upstream)
		return
	}
	// One request per connection: a kept-alive connection could carry a
	// second request to another host past the check.
	req.Header.Set("Connection", "close")
	req.RequestURI = ""
	if err := req.Write(upstream); err != nil {
		return
	}
	io.Copy(client, upstream)
}

// dial resolves the target itself and dials the address it resolved, so
// that what was checked is what is reached.
func (p *Proxy) dial(ctx context.Context, target string) (net.Conn, string, error) {
	host, port, _ := net.SplitHostPort(target)
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	ips, err := p.Resolve(ctx, host)
	if err != nil || len(ips) == 0 {
		return nil, "", fmt.Errorf("resolve %s: %v", host, err)
	}
	var lastErr error
	var d net.Dialer
	for _, ip := range ips {
		addr := net.JoinHostPort(ip.IP.String(), port)
		c, err := d.DialContext(ctx, "tcp", addr)
		if err == nil {
			return c, addr, nil
		}
		lastErr = err
	}
	return nil, "", fmt.Errorf("connect %s: %v", target, lastErr)
}

func (p *Proxy) refuse(c net.Conn, id, what, reason string, code int) {
	p.Logf("egress: task %s: %s denied: %s", id, what, reason)
	body := "codex-connector egress proxy: " + reason + "\n"
	fmt.Fprintf(c, "HTTP/1.1 %d %s\r\n%s: denied\r\nContent-Type: text/plain\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s",
		code, http.StatusText(code), deniedHeader, len(body), body)
}

// splice copies both ways until either side closes.
func splice(client net.Conn, clientBuf *bufio.Reader, upstream net.Conn) {
	done := make(chan struct{}, 2)
	go func() { io.Copy(upstream, clientBuf); closeWrite(upstream); done <- struct{}{} }()
	go func() { io.Copy(client, upstream); closeWrite(client); done <- struct{}{} }()
	<-done
	<-done
}

func closeWrite(c net.Conn) {
	type writeCloser interface{ CloseWrite() error }
	if wc, ok := c.(writeCloser); ok {
		wc.CloseWrite()
	}
}

// ServeProxy runs the proxy until ctx ends: the `egress-proxy`
// subcommand, inside the proxy container.
func ServeProxy(ctx context.Context, dir string) error {
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
		return errors.New("egress proxy: no directory " + dir)
	}
	logger := log.New(os.Stderr, "", log.LstdFlags|log.Lmicroseconds)
	p := &Proxy{Dir: dir, Logf: logger.Printf}
	logger.Printf("egress proxy serving task policies under %s", dir)
	return p.Run(ctx)
}
