package imagestest

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
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

// StartHostServerAt is StartHostServer on ip: for an engine whose own
// networks hide Docker's bridge (a rootless engine's namespace has a
// docker0 of its own), the address of the machine's default route.
func StartHostServerAt(t testing.TB, ip, body string) *HostServer {
	t.Helper()
	ln, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
	if err != nil {
		t.Fatal(err)
	}
	s := &HostServer{Addr: ln.Addr().String()}
	srv := &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.hits.Add(1)
		fmt.Fprint(w, body)
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return s
}

// DefaultRouteAddress is this machine's IPv4 address on the interface of
// its default route: it, not the world beyond, is what the tests reach.
func DefaultRouteAddress(t testing.TB) string {
	t.Helper()
	data, err := os.ReadFile("/proc/net/route")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n")[1:] {
		f := strings.Fields(line)
		if len(f) < 2 || f[1] != "00000000" {
			continue
		}
		iface, err := net.InterfaceByName(f[0])
		if err != nil {
			t.Fatal(err)
		}
		addrs, _ := iface.Addrs()
		for _, a := range addrs {
			if ipn, ok := a.(*net.IPNet); ok && ipn.IP.To4() != nil {
				return ipn.IP.String()
			}
		}
	}
	t.Fatal("this machine has no default route with an IPv4 address")
	return ""
}
