package imagestest

import (
	"fmt"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/docker/docker/client"
)

// HostServer is an HTTP server on the host side of Docker's default bridge:
// containers reach it, and no test traffic leaves the machine.
type HostServer struct {
	// Addr is its host:port.
	Addr string
	hits atomic.Int64
	mu   sync.Mutex
	seen []http.Header
}

// StartHostServer serves body to every request until the test ends.
func StartHostServer(t testing.TB, engine *client.Client, body string) *HostServer {
	t.Helper()
	ln, err := net.Listen("tcp", net.JoinHostPort(BridgeGateway(t, engine), "0"))
	if err != nil {
		t.Fatal(err)
	}
	s := &HostServer{Addr: ln.Addr().String()}
	srv := &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.hits.Add(1)
		s.mu.Lock()
		s.seen = append(s.seen, r.Header.Clone())
		s.mu.Unlock()
		fmt.Fprint(w, body)
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return s
}

// Hits is how many requests reached the server.
func (s *HostServer) Hits() int64 { return s.hits.Load() }

// Headers are the headers of the requests that reached the server.
func (s *HostServer) Headers() []http.Header {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]http.Header(nil), s.seen...)
}
