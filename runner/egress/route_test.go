package egress

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"testing"
)

const (
	phA = "codex-connector-placeholder-aaaaaaaaaaaaaaaa"
	phB = "codex-connector-placeholder-bbbbbbbbbbbbbbbb"
	phC = "codex-connector-placeholder-cccccccccccccccc"
)

// routePolicy has two routes: "mock" with two secrets, "other" with one.
func routePolicy() Policy {
	return Policy{
		Allow: []string{"plain.example.com:80"},
		Routes: []Route{
			{Name: "mock", Upstream: "http://model.example.com:8080/v1", Secrets: []Secret{
				{Name: "MOCK_KEY", Header: "Authorization", Prefix: "Bearer ", Placeholder: phA, Value: "sk-real-a"},
				{Name: "MOCK_HEADER", Header: "api-key", Placeholder: phB, Value: "real-b"},
			}},
			{Name: "other", Upstream: "http://other.example.com/", Secrets: []Secret{{Name: "OTHER_KEY", Header: "X-C", Placeholder: phC, Value: "sk-real-c"}}},
		},
	}
}

// recordingUpstream answers every request 200 "ok" and hands it to got,
// body read.
func recordingUpstream(n *testNet) chan *http.Request {
	got := make(chan *http.Request, 4)
	n.serve = func(c net.Conn) {
		defer c.Close()
		req, err := http.ReadRequest(bufio.NewReader(c))
		if err != nil {
			return
		}
		b, _ := io.ReadAll(req.Body)
		req.Body = io.NopCloser(strings.NewReader(string(b)))
		got <- req
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
	}
	return got
}

func TestRouteReplacesItsPlaceholdersInTheirHeaders(t *testing.T) {
	// The model server is on a private address: the route's host is the
	// user's, so the wall that keeps tasks off such addresses does not apply.
	p, n := newTestProxy(t, map[string][]string{"model.example.com": {"10.0.0.5"}})
	got := recordingUpstream(n)
	tk := addTask(t, p, routePolicy())
	sent := "{\"key\":\"" + phA + "\"}" // in the body: not a header, not replaced
	_, _, resp := connect(t, p, tk, "POST /model/mock/responses?api-version=2025 HTTP/1.1\r\nHost: 127.0.0.1:3128\r\n"+
		"Authorization: Bearer "+phA+"\r\napi-key: "+phB+"\r\nX-Foreign: "+phC+"\r\nProxy-Authorization: x\r\n"+
		fmt.Sprintf("Content-Length: %d\r\n\r\n", len(sent))+sent)
	if resp.StatusCode != 200 || body(resp) != "ok" {
		t.Fatalf("status %d", resp.StatusCode)
	}
	req := <-got
	b, _ := io.ReadAll(req.Body)
	for _, c := range []struct{ what, got, want string }{
		{"path", req.URL.RequestURI(), "/v1/responses?api-version=2025"},
		{"host", req.Host, "model.example.com:8080"},
		{"Authorization", req.Header.Get("Authorization"), "Bearer sk-real-a"},
		{"Api-Key", req.Header.Get("Api-Key"), "real-b"},
		{"another route's placeholder", req.Header.Get("X-Foreign"), phC},
		{"Proxy-Authorization", req.Header.Get("Proxy-Authorization"), ""},
		{"Connection", req.Header.Get("Connection"), "close"},
		{"body", string(b), sent},
	} {
		if c.got != c.want {
			t.Errorf("%s: upstream got %q, want %q", c.what, c.got, c.want)
		}
	}
	if d := n.dials(); len(d) != 1 || d[0] != "10.0.0.5:8080" {
		t.Errorf("dialed %v", d)
	}
	if strings.Contains(n.log(), "sk-real") || strings.Contains(n.log(), "real-b") {
		t.Errorf("the proxy's log holds a secret:\n%s", n.log())
	}
}

func TestPlaceholderElsewhereIsNeverReplaced(t *testing.T) {
	p, n := newTestProxy(t, map[string][]string{"plain.example.com": {"93.184.216.34"}, "other.example.com": {"93.184.216.35"}, "model.example.com": {"93.184.216.36"}})
	got := recordingUpstream(n)
	tk := addTask(t, p, routePolicy())
	t.Run("to an allowed host, forwarded as it is", func(t *testing.T) {
		_, _, resp := connect(t, p, tk, "GET http://plain.example.com/ HTTP/1.1\r\nHost: plain.example.com\r\nAuthorization: Bearer "+phA+"\r\n\r\n")
		if resp.StatusCode != 200 {
			t.Fatalf("status %d", resp.StatusCode)
		}
		if h := (<-got).Header.Get("Authorization"); h != "Bearer "+phA {
			t.Errorf("the allowed host got %q", h)
		}
	})
	// An upstream's error may echo a header it did not like, or a masked
	// key's first and last characters: a placeholder in another header, or
	// with anything around it, is never replaced.
	t.Run("on its route, anywhere but the whole of its header", func(t *testing.T) {
		_, _, resp := connect(t, p, tk, "GET /model/mock/models HTTP/1.1\r\nHost: 127.0.0.1\r\n"+
			"Authorization: Bearer "+phA+"x\r\nApi-Key: Bearer "+phB+"\r\nOpenAI-Organization: "+phA+"\r\nX-Api-Key: Bearer "+phA+"\r\n\r\n")
		if resp.StatusCode != 200 {
			t.Fatalf("status %d", resp.StatusCode)
		}
		req := <-got
		for name, want := range map[string]string{"Authorization": "Bearer " + phA + "x", "Api-Key": "Bearer " + phB,
			"Openai-Organization": phA, "X-Api-Key": "Bearer " + phA} {
			if got := req.Header.Get(name); got != want {
				t.Errorf("%s: upstream got %q, want the placeholder untouched", name, got)
			}
		}
	})
	t.Run("on another route, forwarded with that route's secrets alone", func(t *testing.T) {
		_, _, resp := connect(t, p, tk, "GET /model/other/models HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer "+phA+"\r\nX-C: "+phC+"\r\n\r\n")
		if resp.StatusCode != 200 {
			t.Fatalf("status %d", resp.StatusCode)
		}
		req := <-got
		if h := req.Header.Get("Authorization"); h != "Bearer "+phA {
			t.Errorf("route other replaced mock's placeholder: %q", h)
		}
		if h := req.Header.Get("X-C"); h != "sk-real-c" {
			t.Errorf("route other did not replace its own: %q", h)
		}
		if req.URL.Path != "/models" || req.Host != "other.example.com" {
			t.Errorf("upstream got %s on %s", req.URL, req.Host)
		}
	})
}

func TestRouteRefusals(t *testing.T) {
	pol := routePolicy()
	pol.Routes = append(pol.Routes, Route{Name: "nokey", Upstream: "https://api.example.com/v1", Secrets: []Secret{{Name: "NOKEY_API_KEY", Header: "Authorization", Prefix: "Bearer ", Placeholder: phA + "x"}}})
	for _, c := range []struct {
		name, line string
		code       int
		reason     string
	}{
		{"an unknown route", "POST /model/elsewhere/responses", 404, `no model route "elsewhere"`},
		{"a path that climbs out of the base", "GET /model/mock/../../admin", 400, `".." segment`},
		{"an escaped climb", "GET /model/mock/%2e%2e/admin", 400, `".." segment`},
		{"a route whose key the server lacks", "POST /model/nokey/responses", 401, "NOKEY_API_KEY is not set"},
		{"a path outside the routes", "GET /elsewhere", 400, "only CONNECT"},
		// A route carries Codex's model requests alone.
		{"TRACE, which echoes the request", "TRACE /model/mock/responses", 403, "not one of Codex's model requests"},
		{"another method", "DELETE /model/mock/models/gpt-5", 403, "not one of Codex's model requests"},
		{"the rest of the provider's API", "GET /model/mock/files", 403, "not one of Codex's model requests"},
		{"a model name that climbs", "GET /model/mock/models/..%5cadmin", 403, "not one of Codex's model requests"},
		{"a WebSocket elsewhere than responses", "GET /model/mock/models\r\nConnection: Upgrade\r\nUpgrade: websocket", 403, "not one of Codex's model requests"},
		{"two upgrades", "GET /model/mock/responses\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nUpgrade: h2c", 403, "not one of Codex's model requests"},
		{"a GET of responses that is no WebSocket", "GET /model/mock/responses", 403, "not one of Codex's model requests"},
	} {
		t.Run(c.name, func(t *testing.T) {
			p, n := newTestProxy(t, map[string][]string{"model.example.com": {"93.184.216.34"}, "api.example.com": {"93.184.216.34"}})
			tk := addTask(t, p, pol)
			// A line may carry headers after its first "\r\n".
			first, more, _ := strings.Cut(c.line, "\r\n")
			if more != "" {
				more += "\r\n"
			}
			_, _, resp := connect(t, p, tk, first+" HTTP/1.1\r\n"+more+"Host: 127.0.0.1\r\nAuthorization: Bearer "+phA+"\r\n\r\n")
			if resp.StatusCode != c.code || !strings.Contains(body(resp), c.reason) {
				t.Errorf("got %d %q, want %d with %q", resp.StatusCode, body(resp), c.code, c.reason)
			}
			if d := n.dials(); len(d) != 0 {
				t.Errorf("dialed %v", d)
			}
		})
	}
}

// Codex tries a WebSocket to OpenAI's API first: the upgrade goes out with
// the secret, and the connection then carries frames both ways.
func TestRouteUpgradeIsSplicedBothWays(t *testing.T) {
	p, n := newTestProxy(t, map[string][]string{"model.example.com": {"93.184.216.34"}})
	auth := make(chan string, 1)
	n.serve = func(c net.Conn) {
		defer c.Close()
		br := bufio.NewReader(c)
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		auth <- req.Header.Get("Authorization") + " | " + req.Header.Get("Connection") + " " + req.Header.Get("Upgrade")
		io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
		io.Copy(c, br) // echo the frames
	}
	tk := addTask(t, p, routePolicy())
	c, br, resp := connect(t, p, tk, "GET /model/mock/responses HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nAuthorization: Bearer "+phA+"\r\n\r\n")
	if resp.StatusCode != 101 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	if got := <-auth; got != "Bearer sk-real-a | Upgrade websocket" {
		t.Errorf("upstream got %q", got)
	}
	go io.WriteString(c, "frame-1")
	buf := make([]byte, 7)
	if _, err := io.ReadFull(br, buf); err != nil || string(buf) != "frame-1" {
		t.Errorf("echo %q %v", buf, err)
	}
}

func TestRouteRefusesASecretHeaderSentTwice(t *testing.T) {
	p, n := newTestProxy(t, map[string][]string{"model.example.com": {"93.184.216.34"}})
	tk := addTask(t, p, routePolicy())
	_, _, resp := connect(t, p, tk, "POST /model/mock/responses HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "+phA+"\r\nAuthorization: Bearer "+phA+"\r\nContent-Length: 0\r\n\r\n")
	if resp.StatusCode != 400 || len(n.dials()) != 0 {
		t.Errorf("status %d, dialed %v", resp.StatusCode, n.dials())
	}
}

// An upgrade the upstream does not agree to ends the connection: a second
// request written after the first never reaches the upstream.
func TestRefusedUpgradeCarriesNothingMore(t *testing.T) {
	p, n := newTestProxy(t, map[string][]string{"model.example.com": {"93.184.216.34"}})
	requests := make(chan string, 4)
	n.serve = func(c net.Conn) {
		defer c.Close()
		br := bufio.NewReader(c)
		for {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			requests <- req.Method + " " + req.URL.Path
			io.WriteString(c, "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
		}
	}
	tk := addTask(t, p, routePolicy())
	c, br, resp := connect(t, p, tk, "GET /model/mock/responses HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nAuthorization: Bearer "+phA+"\r\n\r\n")
	if resp.StatusCode != 404 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	io.WriteString(c, "DELETE /v1/admin HTTP/1.1\r\nHost: elsewhere.example\r\nContent-Length: 0\r\n\r\n")
	if _, err := br.ReadByte(); err != io.EOF {
		t.Errorf("after the refused upgrade the connection gave %v, want its end", err)
	}
	close(requests)
	var got []string
	for r := range requests {
		got = append(got, r)
	}
	if !slices.Equal(got, []string{"GET /v1/responses"}) {
		t.Errorf("the upstream got %q", got)
	}
}

func TestRouteCompileRefuses(t *testing.T) {
	for name, rt := range map[string]Route{
		"a short placeholder":       {Name: "x", Upstream: "https://a.example/v1", Secrets: []Secret{{Name: "K", Header: "Authorization", Placeholder: "short", Value: "v"}}},
		"a secret without a header": {Name: "x", Upstream: "https://a.example/v1", Secrets: []Secret{{Name: "K", Placeholder: phA, Value: "v"}}},
		"a header that is none":     {Name: "x", Upstream: "https://a.example/v1", Secrets: []Secret{{Name: "K", Header: "X: y", Placeholder: phA, Value: "v"}}},
		"a non-http upstream":       {Name: "x", Upstream: "ftp://a.example/"},
		"an upstream with a user":   {Name: "x", Upstream: "https://u:p@a.example/"},
		"a bad name":                {Name: "../x", Upstream: "https://a.example/"},
		"a secret with a newline":   {Name: "x", Upstream: "https://a.example/", Secrets: []Secret{{Name: "K", Header: "Authorization", Placeholder: phA, Value: "v\r\nX-Evil: 1"}}},
	} {
		if _, err := compile(Policy{TaskID: "t1", Routes: []Route{rt}}); err == nil {
			t.Errorf("%s: compiled", name)
		}
	}
	if _, err := compile(Policy{TaskID: "t1", Routes: []Route{{Name: "x", Upstream: "https://a.example/"}, {Name: "x", Upstream: "https://b.example/"}}}); err == nil {
		t.Error("a route named twice compiled")
	}
}

// A base URL's user and query may hold a secret: the error never repeats
// them.
func TestCheckUpstreamNeverRepeatsTheURL(t *testing.T) {
	for _, raw := range []string{"https://user:pw-secret@a.example/v1", "https://a.example/v1?key=pw-secret", "https://a.example/v1#pw-secret"} {
		_, err := CheckUpstream(raw)
		if err == nil || strings.Contains(err.Error(), "pw-secret") {
			t.Errorf("%s: %v", raw, err)
		}
	}
	if _, err := CheckUpstream("https://a.example:8443/openai"); err != nil {
		t.Error(err)
	}
}
