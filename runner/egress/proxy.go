// Package egress holds the two programs of a restricted task's network path
// that run outside the MCP server: the egress proxy, in its own long-lived
// container, and the bridge, inside each task's container in front of
// Codex. The server side (starting the proxy, writing a task's policy) is
// the runner's.
package egress

import (
	"bufio"
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log"
	"math"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
)

// The egress proxy is how a task in a restricted sandbox reaches the
// network: its container has no network at all, only a Unix socket in a
// directory of its own. The proxy allows CONNECT and absolute-URI HTTP
// requests to the host:port pairs of that task's policy, resolves the name
// itself, refuses addresses behind the wall (addr.go) and dials the address
// it checked; everything else is denied. It runs in its own long-lived
// container (see backend/docker/helpers.go), so it keeps serving tasks while MCP
// servers come and go, and a restart of it serves again from the policy
// files.
//
// The control plane is one-way: the server writes policies into a
// directory no task mounts; the proxy reads them into memory and never
// reads anything from where a task can write.

// deniedHeader is the header the proxy sets on a refusal, so the bridge in
// the task's container can tell a policy refusal from an upstream error.
const deniedHeader = "X-Codex-Connector-Egress"

// Proxy-wide defaults.
const (
	// DefaultMaxHeadBytes caps a request's line and header: http.ReadRequest
	// has no cap of its own. Codex's requests carry a few kilobytes.
	DefaultMaxHeadBytes = 32 << 10
	// DefaultHeadTimeout is how long a connection may take to send its
	// request's head, so a slow-loris cannot hold a slot for ever.
	DefaultHeadTimeout = 10 * time.Second
	// dialTimeout bounds resolving and connecting upstream.
	dialTimeout = 15 * time.Second
)

// Proxy serves, for every policy in Dir/policies, the socket
// Dir/sockets/<id>/sock.
type Proxy struct {
	Dir  string
	Logf func(format string, args ...any)
	// Resolve looks a host up; tests may replace it.
	Resolve func(ctx context.Context, host string) ([]net.IPAddr, error)
	// Dial connects upstream; tests may replace it.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// RootCAs verify the https upstreams of model routes; nil is the
	// system's (in the proxy's container, the bundle the server mounts).
	RootCAs *x509.CertPool
	// MaxHeadBytes and HeadTimeout bound a request's head (0: the defaults).
	MaxHeadBytes int
	HeadTimeout  time.Duration

	// tasks is owned by the goroutine that scans (Run).
	tasks map[string]*task
	// noted remembers what was logged about a policy that cannot be
	// served, so that a scan every 50 ms does not repeat it.
	noted map[string]string
}

// task is what the proxy serves for one policy.
type task struct {
	id string
	// ctx ends when the policy is gone: its connections are closed.
	ctx    context.Context
	cancel context.CancelFunc
	rules  atomic.Pointer[rules]
	file   fileKey // of the policy file the rules came from
	ln     *net.UnixListener
	sock   fileKey // of the socket ln listens on
	conns  atomic.Int64
	// Refusals at the connection cap are logged at most once a second.
	lastBusyLog atomic.Int64
	busy        atomic.Int64
}

// fileKey tells one version of a file from the next: the server replaces
// a policy by rename, so a new policy is a new inode.
type fileKey struct {
	dev, ino uint64
	size     int64
	mtime    int64
}

func keyOf(fi os.FileInfo) fileKey {
	k := fileKey{size: fi.Size(), mtime: fi.ModTime().UnixNano()}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		k.dev, k.ino = uint64(st.Dev), st.Ino
	}
	return k
}

func (p *Proxy) init() {
	if p.Resolve == nil {
		p.Resolve = net.DefaultResolver.LookupIPAddr
	}
	if p.Dial == nil {
		p.Dial = (&net.Dialer{}).DialContext
	}
	if p.MaxHeadBytes <= 0 {
		p.MaxHeadBytes = DefaultMaxHeadBytes
	}
	if p.HeadTimeout <= 0 {
		p.HeadTimeout = DefaultHeadTimeout
	}
	if p.Logf == nil {
		p.Logf = func(string, ...any) {}
	}
	p.tasks = map[string]*task{}
	p.noted = map[string]string{}
}

// Run scans the policies until ctx ends, serving each on its socket.
func (p *Proxy) Run(ctx context.Context) error {
	p.init()
	defer func() {
		// The sockets stay: the next proxy replaces them, and until then
		// a task's bridge finds nobody behind its socket, as after a crash.
		for _, t := range p.tasks {
			t.cancel()
			if t.ln != nil {
				t.ln.Close()
			}
		}
	}()
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

// note logs msg about key once, until it changes.
func (p *Proxy) note(key, msg string) {
	if p.noted[key] == msg {
		return
	}
	p.noted[key] = msg
	p.Logf("egress: %s", msg)
}

func (p *Proxy) scan(ctx context.Context) {
	dir := filepath.Join(p.Dir, PoliciesDir)
	entries, err := os.ReadDir(dir)
	if err != nil {
		p.note(dir, fmt.Sprintf("read %s: %v", dir, err))
		return
	}
	delete(p.noted, dir)
	listed, serving := map[string]bool{}, map[string]bool{}
	for _, e := range entries {
		id, ok := strings.CutSuffix(e.Name(), ".json")
		if !ok || !ValidID(id) {
			continue // the server's temporary files, or nothing of ours
		}
		listed[id] = true
		serving[id] = p.sync(ctx, id)
	}
	for id := range p.tasks {
		if !serving[id] {
			p.drop(id)
		}
	}
	for key := range p.noted {
		if key != dir && !listed[key] {
			delete(p.noted, key)
		}
	}
}

// sync brings task id up to its policy file and makes sure its socket is
// served. It returns false when the policy cannot be served: then the task
// is dropped, and its connections closed, rather than served an old policy.
func (p *Proxy) sync(ctx context.Context, id string) bool {
	sock := filepath.Join(p.Dir, SocketsDir, id, SocketName)
	t := p.tasks[id]
	// The socket first, the policy second. Before it relaunches a task the
	// server writes the new policy and then removes the old socket; a scan
	// that sees the socket gone reads the policy after that, so the socket
	// it makes is never served with the policy of the last launch.
	remake := t == nil || t.ln == nil || !sameSocket(sock, t.sock)
	path := filepath.Join(p.Dir, PoliciesDir, id+".json")
	fi, err := os.Lstat(path)
	if err != nil {
		return false // removed since the directory was read
	}
	key := keyOf(fi)
	if t == nil || t.file != key {
		r, err := loadRules(path, id)
		if err != nil {
			p.note(id, fmt.Sprintf("task %s: policy not served: %v", id, err))
			return false
		}
		delete(p.noted, id)
		if t == nil {
			t = &task{id: id}
			t.ctx, t.cancel = context.WithCancel(ctx)
			p.tasks[id] = t
		}
		t.rules.Store(r)
		t.file = key
		p.Logf("egress: task %s: policy loaded: allow %s; model routes %s; at most %d connections, closed after %s idle",
			id, strings.Join(r.allowList(), " "), strings.Join(r.routeNames(), " "), r.maxConns, r.idle)
	}
	if remake {
		p.listen(t, sock)
	}
	return true
}

// sameSocket says whether path is still the socket that was made as key:
// the server removes it before it relaunches a task; a proxy that
// restarted finds one its predecessor made.
func sameSocket(path string, key fileKey) bool {
	fi, err := os.Lstat(path)
	return err == nil && fi.Mode().Type() == os.ModeSocket && keyOf(fi).ino == key.ino && keyOf(fi).dev == key.dev
}

func loadRules(path, id string) (*rules, error) {
	pol, err := readPolicy(path)
	if err != nil {
		return nil, err
	}
	if pol.TaskID != id {
		return nil, fmt.Errorf("the policy in %s.json is for task %q", id, pol.TaskID)
	}
	return compile(pol)
}

// listen (re)makes the task's socket and serves it.
func (p *Proxy) listen(t *task, sock string) {
	if t.ln != nil {
		t.ln.Close()
		t.ln = nil
	}
	sockDir := filepath.Dir(sock)
	if fi, err := os.Lstat(sockDir); err != nil || !fi.IsDir() {
		// The server makes the directory before the policy and removes
		// the policy before the directory: the task is ending.
		p.note(t.id, fmt.Sprintf("task %s: no socket directory %s; not served", t.id, sockDir))
		return
	}
	// The socket is made under a temporary name and renamed into place
	// once it accepts connections from the task's user (who may not be the
	// proxy's): the server starts the task as soon as the name appears.
	tmp := filepath.Join(sockDir, ".sock.tmp")
	os.Remove(tmp)
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: tmp, Net: "unix"})
	if err != nil {
		p.note(t.id, fmt.Sprintf("task %s: listen on %s: %v", t.id, tmp, err))
		return
	}
	// This process decides when a socket goes; a listener closed at a
	// restart must not take the path its successor serves.
	l.SetUnlinkOnClose(false)
	// Anyone who can reach the socket may connect: the task's container
	// (it alone mounts this directory) and the home's owner (home is
	// 0700). The policy, not the mode, decides what a connection reaches.
	err = os.Chmod(tmp, 0o666)
	if err == nil {
		err = os.Rename(tmp, sock)
	}
	var fi os.FileInfo
	if err == nil {
		fi, err = os.Lstat(sock)
	}
	if err != nil {
		l.Close()
		os.Remove(tmp)
		p.note(t.id, fmt.Sprintf("task %s: serve %s: %v", t.id, sock, err))
		return
	}
	t.ln, t.sock = l, keyOf(fi)
	go p.serve(t, l)
}

// drop stops serving a task whose policy is gone.
func (p *Proxy) drop(id string) {
	t := p.tasks[id]
	if t == nil {
		return
	}
	delete(p.tasks, id)
	t.cancel()
	if t.ln != nil {
		t.ln.Close()
		sock := filepath.Join(p.Dir, SocketsDir, id, SocketName)
		if sameSocket(sock, t.sock) {
			os.Remove(sock)
		}
	}
	p.Logf("egress: task %s: policy removed; no longer served", id)
}

func (p *Proxy) serve(t *task, l *net.UnixListener) {
	for {
		c, err := l.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) || t.ctx.Err() != nil {
				return
			}
			// Out of file descriptors, say: wait and go on, rather than
			// stop serving this task for good.
			p.Logf("egress: task %s: accept: %v", t.id, err)
			select {
			case <-t.ctx.Done():
				return
			case <-time.After(100 * time.Millisecond):
			}
			continue
		}
		p.accept(t, c)
	}
}

// accept counts a task's connection against its cap and handles it, or
// refuses it at once when the task holds its cap already: one task's flood
// takes its own slots, never another task's.
func (p *Proxy) accept(t *task, c net.Conn) {
	r := t.rules.Load()
	if n := t.conns.Add(1); n > int64(r.maxConns) {
		t.conns.Add(-1)
		p.refuseBusy(t, c, r.maxConns)
		return
	}
	go func() {
		defer t.conns.Add(-1)
		p.handle(t, c)
	}()
}

func (p *Proxy) refuseBusy(t *task, c net.Conn, max int) {
	defer c.Close()
	// No read: the answer goes out before the request is read, so a
	// flood costs the proxy one short write per connection.
	reason := fmt.Sprintf("the task holds %d connections through the proxy, its cap: close some first", max)
	n := t.busy.Add(1)
	now := time.Now().UnixNano()
	if last := t.lastBusyLog.Load(); now-last >= int64(time.Second) && t.lastBusyLog.CompareAndSwap(last, now) {
		t.busy.Add(-n)
		p.Logf("egress: task %s: %d connections denied: %s", t.id, n, reason)
	}
	writeRefusal(c, reason, http.StatusTooManyRequests)
}

func (p *Proxy) handle(t *task, raw net.Conn) {
	defer raw.Close()
	stopClose := context.AfterFunc(t.ctx, func() { raw.Close() })
	defer stopClose()

	raw.SetReadDeadline(time.Now().Add(p.HeadTimeout))
	head := &io.LimitedReader{R: raw, N: int64(p.MaxHeadBytes)}
	act := newActivity()
	br := bufio.NewReader(act.reader(head))
	req, err := http.ReadRequest(br)
	if err != nil {
		var ne net.Error
		switch {
		case head.N <= 0:
			p.refuse(raw, t.id, "a request", fmt.Sprintf("the request line and header are over %d bytes", p.MaxHeadBytes), http.StatusRequestHeaderFieldsTooLarge)
		case errors.As(err, &ne) && ne.Timeout():
			p.refuse(raw, t.id, "a request", fmt.Sprintf("no complete request line and header within %s", p.HeadTimeout), http.StatusRequestTimeout)
		case errors.Is(err, io.EOF):
			// Closed before a request: nothing to say.
		default:
			p.refuse(raw, t.id, "a request", "malformed request: "+err.Error(), http.StatusBadRequest)
		}
		return
	}
	head.N = math.MaxInt64 // the head is in; a body or a tunnel is not capped
	raw.SetReadDeadline(time.Time{})
	if isRouteRequest(req) {
		p.serveRoute(t, raw, br, req, act)
		return
	}

	target := req.Host
	if req.Method != http.MethodConnect {
		if req.URL == nil || req.URL.Host == "" || req.URL.Scheme != "http" {
			p.refuse(raw, t.id, req.Method+" "+req.RequestURI, "only CONNECT, absolute http:// requests and model routes ("+RoutePrefix+"NAME/...) go through the proxy", http.StatusBadRequest)
			return
		}
		target = req.URL.Host
		if _, _, err := net.SplitHostPort(target); err != nil {
			target = net.JoinHostPort(strings.Trim(target, "[]"), "80")
		}
	}
	what := req.Method + " " + target
	r := t.rules.Load()
	if !r.allows(target) {
		p.refuse(raw, t.id, what, target+" is not an allowed host for this task: add it to allowedHosts in config.json, or use sandbox danger-full-access", http.StatusForbidden)
		return
	}
	upstream, addr, code, err := p.dial(t.ctx, r, target)
	if err != nil {
		p.refuse(raw, t.id, what, err.Error(), code)
		return
	}
	defer upstream.Close()
	p.Logf("egress: task %s: %s allowed (dialed %s)", t.id, what, addr)
	client, up, stop := p.watch(t, r, what, raw, br, act, upstream)
	defer stop()
	if req.Method == http.MethodConnect {
		if _, err := fmt.Fprintf(client, "HTTP/1.1 200 Connection established\r\n%s: allowed %s\r\n\r\n", deniedHeader, addr); err != nil {
			return
		}
		splice(client, up)
		return
	}
	// One request per connection: a kept-alive connection could carry a
	// second request to another host past the check.
	req.Header.Set("Connection", "close")
	req.Header.Del("Proxy-Connection")
	req.RequestURI = ""
	if err := req.Write(up); err != nil {
		return
	}
	io.Copy(client, up)
}

// watch makes a connection live while bytes flow, from the moment its
// upstream answers: client and up are its two ends, marking activity, and
// both close when the task's policy goes or when nothing passes either way
// for the task's idle time. stop ends the watch and must be deferred.
func (p *Proxy) watch(t *task, r *rules, what string, raw net.Conn, br *bufio.Reader, act *activity, upstream net.Conn) (client, up net.Conn, stop func()) {
	stopCloseUp := context.AfterFunc(t.ctx, func() { upstream.Close() })
	act.touch()
	idled := act.watch(r.idle, func() { raw.Close(); upstream.Close() })
	return act.conn(raw, br), act.conn(upstream, upstream), func() {
		stopCloseUp()
		if idled() {
			p.Logf("egress: task %s: %s closed after %s idle", t.id, what, r.idle)
		}
	}
}

// dial resolves the target itself, refuses the addresses behind the wall
// unless the task's list names that IP literal, and dials an address it
// checked, so that what was checked is what is reached. The code is the
// HTTP status of a failure: 403 for the wall, 502 for the network.
func (p *Proxy) dial(ctx context.Context, r *rules, target string) (net.Conn, string, int, error) {
	host, literal, port, err := splitTarget(target)
	if err != nil {
		return nil, "", http.StatusBadRequest, err
	}
	ctx, cancel := context.WithTimeout(ctx, dialTimeout)
	defer cancel()
	var ips []netip.Addr
	if literal.IsValid() {
		ips = []netip.Addr{literal}
	} else {
		addrs, err := p.Resolve(ctx, host)
		if err != nil || len(addrs) == 0 {
			return nil, "", http.StatusBadGateway, fmt.Errorf("resolve %s: %v", host, err)
		}
		for _, a := range addrs {
			if ip, ok := netip.AddrFromSlice(a.IP); ok {
				ips = append(ips, ip.Unmap().WithZone(a.Zone))
			}
		}
	}
	var open []netip.Addr
	var refused []string
	for _, ip := range ips {
		if r.literal(ip, port) {
			open = append(open, ip)
		} else if why := refusal(ip, r.deny); why != "" {
			refused = append(refused, ip.String()+" is "+why)
		} else {
			open = append(open, ip)
		}
	}
	if len(open) == 0 {
		return nil, "", http.StatusForbidden, fmt.Errorf("%s resolves to addresses the proxy refuses (%s): only an allowed entry that names the IP literal itself reaches such an address", host, strings.Join(refused, "; "))
	}
	var lastErr error
	for _, ip := range open {
		addr := net.JoinHostPort(ip.String(), port)
		c, err := p.Dial(ctx, "tcp", addr)
		if err == nil {
			return c, addr, 0, nil
		}
		lastErr = err
	}
	return nil, "", http.StatusBadGateway, fmt.Errorf("connect %s: %v", target, lastErr)
}

func (p *Proxy) refuse(c net.Conn, id, what, reason string, code int) {
	p.Logf("egress: task %s: %s denied: %s", id, what, reason)
	writeRefusal(c, reason, code)
}

// writeRefusal answers with code and reason, and gives up on a client that
// does not read within a few seconds.
func writeRefusal(c net.Conn, reason string, code int) {
	body := "codex-connector egress proxy: " + reason + "\n"
	c.SetWriteDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprintf(c, "HTTP/1.1 %d %s\r\n%s: denied\r\nContent-Type: text/plain\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s",
		code, http.StatusText(code), deniedHeader, len(body), body)
}

// splice copies both ways. The task's end may half-close (the upstream
// still answers); once the upstream is done, so is the tunnel, and the
// task's connection is closed so that its slot is free at once.
func splice(client, upstream net.Conn) {
	done := make(chan struct{})
	go func() { io.Copy(upstream, client); closeWrite(upstream); close(done) }()
	io.Copy(client, upstream)
	client.Close()
	upstream.Close()
	<-done
}

func closeWrite(c net.Conn) {
	type writeCloser interface{ CloseWrite() error }
	if wc, ok := c.(writeCloser); ok {
		wc.CloseWrite()
	}
}

// activity is when a connection last carried a byte.
type activity struct {
	start time.Time
	last  atomic.Int64 // since start
	idled atomic.Bool
}

func newActivity() *activity { return &activity{start: time.Now()} }

func (a *activity) touch() { a.last.Store(int64(time.Since(a.start))) }

func (a *activity) quiet() time.Duration { return time.Since(a.start) - time.Duration(a.last.Load()) }

// watch calls expire once the connection has been quiet for idle, and
// returns a function that stops the watch and says whether it expired.
func (a *activity) watch(idle time.Duration, expire func()) (stop func() bool) {
	done := make(chan struct{})
	go func() {
		timer := time.NewTimer(idle)
		defer timer.Stop()
		for {
			select {
			case <-done:
				return
			case <-timer.C:
				if left := idle - a.quiet(); left > 0 {
					timer.Reset(left)
					continue
				}
				a.idled.Store(true)
				expire()
				return
			}
		}
	}()
	return func() bool { close(done); return a.idled.Load() }
}

type activeReader struct {
	r io.Reader
	a *activity
}

func (r activeReader) Read(b []byte) (int, error) {
	n, err := r.r.Read(b)
	if n > 0 {
		r.a.touch()
	}
	return n, err
}

func (a *activity) reader(r io.Reader) io.Reader { return activeReader{r, a} }

// activeConn reads from r (the connection, or a buffer in front of it) and
// writes to the connection, marking activity both ways.
type activeConn struct {
	net.Conn
	r io.Reader
	a *activity
}

func (a *activity) conn(c net.Conn, r io.Reader) net.Conn { return &activeConn{c, a.reader(r), a} }

func (c *activeConn) Read(b []byte) (int, error) { return c.r.Read(b) }

func (c *activeConn) Write(b []byte) (int, error) {
	n, err := c.Conn.Write(b)
	if n > 0 {
		c.a.touch()
	}
	return n, err
}

func (c *activeConn) CloseWrite() error {
	closeWrite(c.Conn)
	return nil
}

// ServeProxy runs the proxy until ctx ends: the `egress-proxy`
// subcommand, inside the proxy container, where dir holds the policies
// (mounted read-only) and the sockets.
func ServeProxy(ctx context.Context, dir string) error {
	for _, sub := range []string{PoliciesDir, SocketsDir} {
		if fi, err := os.Stat(filepath.Join(dir, sub)); err != nil || !fi.IsDir() {
			return fmt.Errorf("egress proxy: no directory %s: the server makes it before it starts the proxy", filepath.Join(dir, sub))
		}
	}
	logger := log.New(os.Stderr, "", log.LstdFlags|log.Lmicroseconds)
	p := &Proxy{Dir: dir, Logf: logger.Printf}
	logger.Printf("egress proxy serving the task policies in %s", filepath.Join(dir, PoliciesDir))
	return p.Run(ctx)
}
