package imagestest

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/client"
)

// Turn is one scripted answer of the model: a command for Codex to run
// (exec_command), or a final message.
type Turn struct {
	Command string
	Message string
	// Status and Body, when Status is set, answer with that HTTP error
	// instead, as the API does when it refuses a request.
	Status int
	Body   string
}

// ModelServer is a scripted OpenAI Responses API server: each POST to
// /v1/responses gets the next turn of the script, streamed as server-sent
// events the way the real API streams them. It listens on the host side of
// Docker's default bridge, so containers reach it and nothing leaves the
// machine.
type ModelServer struct {
	// BaseURL is what Codex's model provider base_url must be.
	BaseURL string
	// Key is the API key the server accepts, as OpenAI does: in
	// "Authorization: Bearer KEY". A request without it gets OpenAI's 401.
	Key     string
	mu      sync.Mutex
	turns   []Turn
	next    int
	bodies  []map[string]any
	headers []http.Header
	expect  http.Header
}

// MockKeyEnv is the variable the "mock" provider of CodexArgs reads its key
// from (its env_key).
const MockKeyEnv = "MOCK_API_KEY"

// Expect makes the server accept only requests whose header name holds
// value, besides the key.
func (m *ModelServer) Expect(name, value string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.expect.Set(name, value)
}

// SetTurns replaces the script, and the next request gets its first turn:
// for a test that knows a turn only once the server is made (a command
// that carries its key), or that runs one script per task.
func (m *ModelServer) SetTurns(turns ...Turn) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.turns, m.next = turns, 0
}

// Headers returns the headers of every request, in order (WebSocket
// attempts included).
func (m *ModelServer) Headers() []http.Header {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]http.Header(nil), m.headers...)
}

// StartModelServer starts a scripted model server reachable from containers
// on the default bridge and stops it when the test ends.
func StartModelServer(t testing.TB, engine *client.Client, turns ...Turn) *ModelServer {
	t.Helper()
	m, _ := startModelServer(t, engine, false, turns)
	return m
}

// StartModelServerTLS is StartModelServer over https, as real providers
// are, with a certificate for its address; caFile holds the certificate
// that verifies it (PEM), for the egress proxy's CA bundle.
func StartModelServerTLS(t testing.TB, engine *client.Client, turns ...Turn) (m *ModelServer, caFile string) {
	t.Helper()
	return startModelServer(t, engine, true, turns)
}

// StartModelServerAt is StartModelServer listening on ip: an engine in a
// network namespace of its own (rootless Docker's, whose own bridge has
// the default bridge's address) reaches the host at its default route's
// address (DefaultRouteAddress).
func StartModelServerAt(t testing.TB, ip string, turns ...Turn) *ModelServer {
	t.Helper()
	m, _ := startModelServerAt(t, ip, false, turns)
	return m
}

func startModelServer(t testing.TB, engine *client.Client, useTLS bool, turns []Turn) (*ModelServer, string) {
	return startModelServerAt(t, BridgeGateway(t, engine), useTLS, turns)
}

func startModelServerAt(t testing.TB, ip string, useTLS bool, turns []Turn) (*ModelServer, string) {
	ln, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
	if err != nil {
		t.Fatalf("listen on the docker bridge %s: %v", ip, err)
	}
	scheme, caFile := "http", ""
	if useTLS {
		cert, certPEM := selfSigned(t, ip)
		caFile = filepath.Join(t.TempDir(), "model-server-ca.pem")
		if err := os.WriteFile(caFile, certPEM, 0o644); err != nil {
			t.Fatal(err)
		}
		ln = tls.NewListener(ln, &tls.Config{Certificates: []tls.Certificate{cert}})
		scheme = "https"
	}
	m := &ModelServer{BaseURL: scheme + "://" + ln.Addr().String() + "/v1", turns: turns, Key: "sk-test-" + rand.Text()}
	m.expect = http.Header{"Authorization": {"Bearer " + m.Key}}
	srv := &http.Server{Handler: m, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return m, caFile
}

// selfSigned makes a certificate for ip that is its own authority.
func selfSigned(t testing.TB, ip string) (tls.Certificate, []byte) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: "codex-connector test model server"},
		NotBefore:    time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IPAddresses:           []net.IP{net.ParseIP(ip)},
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IsCA:                  true,
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

// BridgeGateway is the host's address on Docker's default bridge. It is
// read from the bridge's interface: on the first start of a new engine,
// `docker network inspect bridge` lists the subnet but no gateway.
func BridgeGateway(t testing.TB, engine *client.Client) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	nw, err := engine.NetworkInspect(ctx, "bridge", network.InspectOptions{})
	if err != nil {
		t.Fatalf("inspect the default bridge: %v", err)
	}
	name := nw.Options["com.docker.network.bridge.name"]
	if name == "" {
		name = "docker0"
	}
	iface, err := net.InterfaceByName(name)
	if err != nil {
		t.Fatalf("the default bridge's interface %s: %v", name, err)
	}
	addrs, err := iface.Addrs()
	if err != nil {
		t.Fatalf("addresses of %s: %v", name, err)
	}
	for _, a := range addrs {
		if ipn, ok := a.(*net.IPNet); ok && ipn.IP.To4() != nil {
			return ipn.IP.String()
		}
	}
	t.Fatalf("the default bridge's interface %s has no IPv4 address", name)
	return ""
}

// Requests returns the JSON bodies Codex posted, in order.
func (m *ModelServer) Requests() []map[string]any {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]map[string]any(nil), m.bodies...)
}

func (m *ModelServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	m.mu.Lock()
	m.headers = append(m.headers, r.Header.Clone())
	var refused string
	for name, want := range m.expect {
		if r.Header.Get(name) != want[0] {
			refused = name
		}
	}
	m.mu.Unlock()
	if r.Method != http.MethodPost || r.URL.Path != "/v1/responses" {
		http.NotFound(w, r)
		return
	}
	if refused != "" {
		// OpenAI's answer to a wrong key, as the fixtures recorded it.
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnauthorized)
		fmt.Fprintf(w, `{"error":{"message":"Incorrect API key provided (%s). You can find your API key at https://platform.openai.com/account/api-keys.","type":"invalid_request_error","code":"invalid_api_key"}}`, refused)
		return
	}
	data, _ := io.ReadAll(r.Body)
	var body map[string]any
	_ = json.Unmarshal(data, &body)
	m.mu.Lock()
	m.bodies = append(m.bodies, body)
	n := m.next
	m.next++
	var turn Turn
	if n < len(m.turns) {
		turn = m.turns[n]
	} else {
		turn = Turn{Message: "the script has no more turns"}
	}
	m.mu.Unlock()

	if turn.Status != 0 {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(turn.Status)
		fmt.Fprint(w, turn.Body)
		return
	}
	w.Header().Set("Content-Type", "text/event-stream")
	id := fmt.Sprintf("resp_%d", n+1)
	send := func(typ string, payload map[string]any) {
		payload["type"] = typ
		b, _ := json.Marshal(payload)
		fmt.Fprintf(w, "event: %s\ndata: %s\n\n", typ, b)
	}
	send("response.created", map[string]any{"response": map[string]any{"id": id}})
	var item map[string]any
	if turn.Command != "" {
		args, _ := json.Marshal(map[string]any{"cmd": turn.Command, "login": false})
		item = map[string]any{"type": "function_call", "call_id": fmt.Sprintf("call_%d", n+1), "name": "exec_command", "arguments": string(args)}
	} else {
		item = map[string]any{"type": "message", "role": "assistant", "id": fmt.Sprintf("msg_%d", n+1),
			"content": []map[string]any{{"type": "output_text", "text": turn.Message}}}
	}
	send("response.output_item.done", map[string]any{"item": item})
	send("response.completed", map[string]any{"response": map[string]any{"id": id, "usage": map[string]any{
		"input_tokens": 100, "input_tokens_details": map[string]any{"cached_tokens": 20},
		"output_tokens": 10, "output_tokens_details": map[string]any{"reasoning_tokens": 0}, "total_tokens": 110}}})
}

// HostPort is the server's address, as an egress policy names it.
func (m *ModelServer) HostPort() string {
	return strings.TrimSuffix(strings.TrimPrefix(m.BaseURL, "http://"), "/v1")
}

// CodexArgs are the `codex exec` arguments that make this server Codex's
// model provider "mock", whose key is in MockKeyEnv. The provider's
// base_url is left to the runner, which points it at the task's bridge;
// the route's upstream is BaseURL.
func (m *ModelServer) CodexArgs() []string {
	return []string{
		"-c", "model_provider=mock",
		"-c", "model_providers.mock.name=mock",
		"-c", `model_providers.mock.wire_api="responses"`,
		"-c", "model_providers.mock.supports_websockets=false",
		"-c", fmt.Sprintf("model_providers.mock.env_key=%q", MockKeyEnv),
	}
}

// CodexConfig is the codexConfig of a config.json that makes this server
// the model provider "mock" of every task, through the server's route: its
// key is in MockKeyEnv of the server's environment.
func (m *ModelServer) CodexConfig() map[string]any {
	return map[string]any{
		"model_provider":                           "mock",
		"model_providers.mock.name":                "mock",
		"model_providers.mock.base_url":            m.BaseURL,
		"model_providers.mock.wire_api":            "responses",
		"model_providers.mock.supports_websockets": false,
		"model_providers.mock.env_key":             MockKeyEnv,
	}
}
