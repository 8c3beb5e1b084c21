package egress

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// A test proxy has no sockets and no network: a task's connection is one
// end of a net.Pipe handed to accept, names resolve through a table, and
// every dial gets a pipe to an in-process upstream.

type testNet struct {
	t       *testing.T
	names   map[string][]string
	mu      sync.Mutex
	dialed  []string
	ups     []net.Conn
	serve   func(net.Conn) // the upstream's side of a dialed connection
	logMu   sync.Mutex
	logText strings.Builder
}

func newTestProxy(t *testing.T, names map[string][]string) (*Proxy, *testNet) {
	n := &testNet{t: t, names: names, serve: echo}
	p := &Proxy{
		Logf: func(f string, a ...any) {
			n.logMu.Lock()
			fmt.Fprintf(&n.logText, f+"\n", a...)
			n.logMu.Unlock()
		},
		Resolve: func(ctx context.Context, host string) ([]net.IPAddr, error) {
			var out []net.IPAddr
			for _, s := range n.names[host] {
				out = append(out, net.IPAddr{IP: net.ParseIP(s)})
			}
			if len(out) == 0 {
				return nil, fmt.Errorf("no such host %s", host)
			}
			return out, nil
		},
		Dial: func(ctx context.Context, network, addr string) (net.Conn, error) {
			a, b := net.Pipe()
			n.mu.Lock()
			n.dialed = append(n.dialed, addr)
			n.ups = append(n.ups, b)
			serve := n.serve
			n.mu.Unlock()
			go serve(b)
			return a, nil
		},
	}
	p.init()
	return p, n
}

func (n *testNet) log() string {
	n.logMu.Lock()
	defer n.logMu.Unlock()
	return n.logText.String()
}

func (n *testNet) dials() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]string(nil), n.dialed...)
}

// closeUpstreams ends every upstream connection, as servers that hang up.
func (n *testNet) closeUpstreams() {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, c := range n.ups {
		c.Close()
	}
}

func echo(c net.Conn) { io.Copy(c, c); c.Close() }

// addTask serves a task of policy p, as a policy file would.
func addTask(t *testing.T, p *Proxy, pol Policy) *task {
	t.Helper()
	r := mustCompile(t, pol)
	tk := &task{id: r.taskID}
	tk.ctx, tk.cancel = context.WithCancel(context.Background())
	tk.rules.Store(r)
	t.Cleanup(tk.cancel)
	return tk
}

// connect opens a connection of task tk and sends head; it returns the
// task's end, a reader of it and the proxy's answer.
func connect(t *testing.T, p *Proxy, tk *task, head string) (net.Conn, *bufio.Reader, *http.Response) {
	t.Helper()
	c, s := net.Pipe()
	t.Cleanup(func() { c.Close() })
	// A guard against a hang, not a timing claim.
	c.SetDeadline(time.Now().Add(30 * time.Second))
	go p.accept(tk, s)
	go io.WriteString(c, head)
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("no answer to %q: %v", firstLineOf([]byte(head)), err)
	}
	return c, br, resp
}

func body(resp *http.Response) string {
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

func connectHead(target string) string {
	return "CONNECT " + target + " HTTP/1.1\r\nHost: " + target + "\r\n\r\n"
}

func TestProxyDecisions(t *testing.T) {
	p, n := newTestProxy(t, map[string][]string{
		"api.example.com":      {"93.184.216.34"},
		"internal.example.com": {"10.0.0.5"},
		"rebind.example.com":   {"127.0.0.1", "93.184.216.35"},
		"mapped.example.com":   {"::ffff:127.0.0.1"},
		"docker.example.com":   {"11.0.3.4"},
		"gateway.example.com":  {"172.17.0.1"},
		"meta.example.com":     {"169.254.169.254"},
	})
	tk := addTask(t, p, Policy{
		Allow: []string{"api.example.com:443", "*.example.com:443", "172.17.0.1:8080", "gateway.example.com:8080"},
		Deny:  []string{"11.0.0.0/16"},
	})
	for _, tc := range []struct {
		name, target string
		code         int
		dialed       string // "" when nothing may be dialed
		reason       string
	}{
		{"an allowed name with a public address", "api.example.com:443", 200, "93.184.216.34:443", ""},
		{"a host not on the list", "other.test:443", 403, "", "other.test:443 is not an allowed host for this task"},
		{"an allowed name that resolves to a private address", "internal.example.com:443", 403, "", "10.0.0.5 is a private address"},
		{"an allowed name that resolves to a link-local address", "meta.example.com:443", 403, "", "169.254.169.254 is a link-local address"},
		{"an IPv4-mapped loopback answer", "mapped.example.com:443", 403, "", "127.0.0.1 is a loopback address"},
		{"a name in a Docker network outside the private ranges", "docker.example.com:443", 403, "", "in a Docker network (11.0.0.0/16)"},
		{"a mixed answer: only the public address is dialed", "rebind.example.com:443", 200, "93.184.216.35:443", ""},
		{"an IP literal entry reaches a bridge address", "172.17.0.1:8080", 200, "172.17.0.1:8080", ""},
		{"a name that resolves to an address a literal entry lists", "gateway.example.com:8080", 200, "172.17.0.1:8080", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := len(n.dials())
			c, _, resp := connect(t, p, tk, connectHead(tc.target))
			c.Close()
			if resp.StatusCode != tc.code {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tc.code, body(resp))
			}
			if tc.code != 200 {
				if got := body(resp); !strings.Contains(got, tc.reason) || resp.Header.Get(deniedHeader) != "denied" {
					t.Errorf("refusal %q (header %q), want the reason %q", got, resp.Header.Get(deniedHeader), tc.reason)
				}
				if !strings.Contains(n.log(), "CONNECT "+tc.target+" denied") {
					t.Errorf("the proxy's log lacks the denial:\n%s", n.log())
				}
			}
			dials := n.dials()[before:]
			if tc.dialed == "" && len(dials) != 0 || tc.dialed != "" && (len(dials) != 1 || dials[0] != tc.dialed) {
				t.Errorf("dialed %v, want %q", dials, tc.dialed)
			}
		})
	}
	t.Run("only CONNECT and absolute http:// requests", func(t *testing.T) {
		_, _, resp := connect(t, p, tk, "GET / HTTP/1.1\r\nHost: api.example.com:443\r\n\r\n")
		if resp.StatusCode != 400 {
			t.Fatalf("status %d", resp.StatusCode)
		}
	})
}

func TestPlainHTTPIsForwardedOnceAndClosed(t *testing.T) {
	p, n := newTestProxy(t, map[string][]string{"api.example.com": {"93.184.216.34"}})
	got := make(chan *http.Request, 1)
	n.serve = func(c net.Conn) {
		defer c.Close()
		req, err := http.ReadRequest(bufio.NewReader(c))
		if err != nil {
			return
		}
		got <- req
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello")
	}
	tk := addTask(t, p, Policy{Allow: []string{"api.example.com:80"}})
	_, _, resp := connect(t, p, tk, "GET http://api.example.com/v1 HTTP/1.1\r\nHost: api.example.com\r\nProxy-Connection: keep-alive\r\n\r\n")
	if resp.StatusCode != 200 || body(resp) != "hello" {
		t.Fatalf("status %d", resp.StatusCode)
	}
	req := <-got
	if req.URL.Path != "/v1" || req.Header.Get("Connection") != "close" || req.Header.Get("Proxy-Connection") != "" {
		t.Errorf("upstream got %s %s %v", req.Method, req.URL, req.Header)
	}
}

func TestHeadIsCapped(t *testing.T) {
	p, n := newTestProxy(t, map[string][]string{"api.example.com": {"93.184.216.34"}})
	tk := addTask(t, p, Policy{Allow: []string{"api.example.com:443"}})
	t.Run("a head over the cap is refused before the end of it", func(t *testing.T) {
		// The head never ends: the proxy must not wait for it nor keep it.
		head := "CONNECT api.example.com:443 HTTP/1.1\r\nX-Pad: " + strings.Repeat("a", 4*DefaultMaxHeadBytes)
		_, _, resp := connect(t, p, tk, head)
		if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge || !strings.Contains(body(resp), fmt.Sprintf("over %d bytes", DefaultMaxHeadBytes)) {
			t.Fatalf("status %d", resp.StatusCode)
		}
	})
	t.Run("a head under the cap passes", func(t *testing.T) {
		head := "CONNECT api.example.com:443 HTTP/1.1\r\nX-Pad: " + strings.Repeat("a", DefaultMaxHeadBytes/2) + "\r\n\r\n"
		if _, _, resp := connect(t, p, tk, head); resp.StatusCode != 200 {
			t.Fatalf("status %d", resp.StatusCode)
		}
	})
	t.Run("a head that never completes times out", func(t *testing.T) {
		p.HeadTimeout = 50 * time.Millisecond
		defer func() { p.HeadTimeout = DefaultHeadTimeout }()
		before := len(n.dials())
		_, _, resp := connect(t, p, tk, "CONNECT api.example.com:443 HTTP/1.1\r\nX-Slow: 1\r\n")
		if resp.StatusCode != http.StatusRequestTimeout || len(n.dials()) != before {
			t.Fatalf("status %d, dials %v", resp.StatusCode, n.dials()[before:])
		}
	})
}

func TestConnectionCapIsPerTask(t *testing.T) {
	p, n := newTestProxy(t, map[string][]string{"api.example.com": {"93.184.216.34"}})
	a := addTask(t, p, Policy{TaskID: "task-a", Allow: []string{"api.example.com:443"}, MaxConns: 3})
	b := addTask(t, p, Policy{TaskID: "task-b", Allow: []string{"api.example.com:443"}, MaxConns: 3})
	for i := 0; i < 3; i++ {
		if _, _, resp := connect(t, p, a, connectHead("api.example.com:443")); resp.StatusCode != 200 {
			t.Fatalf("tunnel %d: status %d", i, resp.StatusCode)
		}
	}
	_, _, resp := connect(t, p, a, connectHead("api.example.com:443"))
	if resp.StatusCode != http.StatusTooManyRequests || !strings.Contains(body(resp), "holds 3 connections") {
		t.Fatalf("a fourth connection of task A: status %d", resp.StatusCode)
	}
	if !strings.Contains(n.log(), "task task-a: 1 connections denied") {
		t.Errorf("the proxy's log lacks the refusal:\n%s", n.log())
	}
	t.Run("another task is not held back", func(t *testing.T) {
		c, br, resp := connect(t, p, b, connectHead("api.example.com:443"))
		if resp.StatusCode != 200 {
			t.Fatalf("status %d", resp.StatusCode)
		}
		go io.WriteString(c, "ping\n")
		if line, err := br.ReadString('\n'); err != nil || line != "ping\n" {
			t.Fatalf("echo %q %v", line, err)
		}
	})
	t.Run("closed tunnels free their slots", func(t *testing.T) {
		n.closeUpstreams()
		for a.conns.Load() > 0 {
			time.Sleep(5 * time.Millisecond)
		}
		if _, _, resp := connect(t, p, a, connectHead("api.example.com:443")); resp.StatusCode != 200 {
			t.Fatalf("status %d", resp.StatusCode)
		}
	})
}

func TestIdleTunnelIsClosed(t *testing.T) {
	p, n := newTestProxy(t, map[string][]string{"api.example.com": {"93.184.216.34"}})
	tk := addTask(t, p, Policy{Allow: []string{"api.example.com:443"}})
	tk.rules.Load().idle = 50 * time.Millisecond
	c, br, resp := connect(t, p, tk, connectHead("api.example.com:443"))
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	go io.WriteString(c, "ping\n")
	if line, _ := br.ReadString('\n'); line != "ping\n" {
		t.Fatalf("the tunnel does not carry bytes: %q", line)
	}
	// Nothing more is sent: the proxy ends the tunnel (the read ends with
	// EOF, not with the 30 s guard of connect).
	if _, err := br.ReadByte(); err != io.EOF {
		t.Fatalf("read after idling: %v, want EOF", err)
	}
	for !strings.Contains(n.log(), "CONNECT api.example.com:443 closed after 50ms idle") {
		time.Sleep(5 * time.Millisecond)
	}
	for tk.conns.Load() != 0 {
		time.Sleep(5 * time.Millisecond)
	}
}

func TestGoneTaskLosesItsTunnels(t *testing.T) {
	p, _ := newTestProxy(t, map[string][]string{"api.example.com": {"93.184.216.34"}})
	tk := addTask(t, p, Policy{Allow: []string{"api.example.com:443"}})
	_, br, resp := connect(t, p, tk, connectHead("api.example.com:443"))
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	tk.cancel() // as drop does when the policy file is removed
	if _, err := br.ReadByte(); err != io.EOF {
		t.Fatalf("read after the policy went: %v, want EOF", err)
	}
}

// One task pushing bytes as fast as it can does not stop another's
// exchange.
func TestByteFloodDoesNotStopAnotherTask(t *testing.T) {
	p, _ := newTestProxy(t, map[string][]string{"flood.example.com": {"93.184.216.34"}, "api.example.com": {"93.184.216.35"}})
	a := addTask(t, p, Policy{TaskID: "task-a", Allow: []string{"flood.example.com:443"}})
	b := addTask(t, p, Policy{TaskID: "task-b", Allow: []string{"api.example.com:443"}})
	flood, floodBr, resp := connect(t, p, a, connectHead("flood.example.com:443"))
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(2)
	chunk := []byte(strings.Repeat("x", 32<<10))
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := flood.Write(chunk); err != nil {
				return
			}
		}
	}()
	go func() { defer wg.Done(); io.Copy(io.Discard, floodBr) }()
	for i := 0; i < 20; i++ {
		c, br, resp := connect(t, p, b, connectHead("api.example.com:443"))
		if resp.StatusCode != 200 {
			t.Fatalf("exchange %d: status %d", i, resp.StatusCode)
		}
		go io.WriteString(c, "ping\n")
		if line, err := br.ReadString('\n'); err != nil || line != "ping\n" {
			t.Fatalf("exchange %d: %q %v", i, line, err)
		}
		c.Close()
	}
	close(stop)
	flood.Close()
	wg.Wait()
}
