package bench

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"
)

// engineTrace stands between a server and the Docker engine and notes
// when each engine call began and ended, to tell the engine's time from
// codex-connector's own.
type engineTrace struct {
	// Host is what DOCKER_HOST must be for a process to go through it.
	Host  string
	mu    sync.Mutex
	calls []engineCall
}

type engineCall struct {
	what       string
	began, end time.Time
}

// startEngineTrace starts a recording proxy to the engine at
// /var/run/docker.sock (or DOCKER_HOST, when it is a unix socket).
func startEngineTrace(b *testing.B) *engineTrace {
	b.Helper()
	engine := "/var/run/docker.sock"
	if h, ok := strings.CutPrefix(os.Getenv("DOCKER_HOST"), "unix://"); ok {
		engine = h
	}
	// A short path: a unix socket's path is limited to 108 bytes.
	dir, err := os.MkdirTemp("", "engtrace")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "docker.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		b.Fatalf("listen for the engine trace: %v", err)
	}
	tr := &engineTrace{Host: "unix://" + sock}
	proxy := &httputil.ReverseProxy{
		Rewrite:       func(r *httputil.ProxyRequest) { r.SetURL(&url.URL{Scheme: "http", Host: "docker"}) },
		FlushInterval: -1, // followed logs stream as they come
		Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", engine)
		}},
	}
	srv := &http.Server{ReadHeaderTimeout: time.Minute, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c := engineCall{what: r.Method + " " + apiPath(r.URL.Path), began: time.Now()}
		proxy.ServeHTTP(w, r)
		c.end = time.Now()
		tr.mu.Lock()
		tr.calls = append(tr.calls, c)
		tr.mu.Unlock()
	})}
	go srv.Serve(ln)
	b.Cleanup(func() { srv.Close() })
	return tr
}

var (
	apiVersion = regexp.MustCompile(`^/v[0-9.]+`)
	apiID      = regexp.MustCompile(`/(containers|volumes|images|networks)/[^/]+`)
)

// apiPath is an engine call's path without its version and ids.
func apiPath(p string) string {
	return apiID.ReplaceAllStringFunc(apiVersion.ReplaceAllString(p, ""), func(m string) string {
		kind, id, _ := strings.Cut(m[1:], "/")
		if id == "create" || id == "json" {
			return m
		}
		return "/" + kind + "/X"
	})
}

// between sums the time of the calls that began in [from, to), up to to,
// and names the slowest, for a note: what the engine took of a stretch of
// codex-connector's time. Calls that overlap count once. A wait for a
// container's exit does not count: it is a registration, answered at the
// exit; a followed log counts until to, since the engine delivers the
// line through it.
func (tr *engineTrace) between(from, to time.Time) (total time.Duration, n int, summary string) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	type span struct{ a, z time.Time }
	var spans []span
	per := map[string]time.Duration{}
	for _, c := range tr.calls {
		if c.began.Before(from) || !c.began.Before(to) || strings.HasSuffix(c.what, "/wait") {
			continue
		}
		end := c.end
		if end.After(to) {
			end = to // still open at the end: a wait, a followed log
		}
		spans = append(spans, span{c.began, end})
		per[c.what] += end.Sub(c.began)
		n++
	}
	sort.Slice(spans, func(i, j int) bool { return spans[i].a.Before(spans[j].a) })
	var cur span
	for i, s := range spans {
		switch {
		case i == 0:
			cur = s
		case s.a.After(cur.z):
			total += cur.z.Sub(cur.a)
			cur = s
		case s.z.After(cur.z):
			cur.z = s.z
		}
	}
	if len(spans) > 0 {
		total += cur.z.Sub(cur.a)
	}
	names := make([]string, 0, len(per))
	for k := range per {
		names = append(names, k)
	}
	sort.Slice(names, func(i, j int) bool { return per[names[i]] > per[names[j]] })
	var parts []string
	for i, k := range names {
		if i == 4 {
			break
		}
		parts = append(parts, fmt.Sprintf("%s %.0f ms", k, ms(per[k])))
	}
	return total, n, strings.Join(parts, ", ")
}
