package egress

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"syscall"
	"time"
)

// The egress bridge runs inside a restricted task's container, which has no
// network: it listens on 127.0.0.1 for Codex's proxy requests, passes each
// connection to the egress proxy through the task's Unix socket, and writes
// what was asked and what the proxy answered to stderr — into the task's own
// log, so the user can see what the task tried to reach. It also runs Codex
// as its child, with the proxy variables set. Enforcement is the proxy's: the
// bridge runs inside the sandbox and could be bypassed only towards the
// socket, which is all the container can reach.

// RunBridge serves listen → socket and runs argv; it returns argv's
// exit code (128+signal when a signal ended it).
//
// With proxyEnv, argv gets the proxy variables: a restricted task's only
// way out is the proxy. Without (danger-full-access, which keeps its own
// network), the bridge serves the model routes alone: Codex's base URLs
// point at it, and nothing else is sent its way.
//
// With a gate, argv starts only once the file gate exists: the server
// creates it after it has checked what the engine mounted into this
// container, so nothing of the task runs on a mount it did not check.
//
// With stdin, argv reads that file as its standard input: the prompt,
// which no command line may carry.
func RunBridge(listen, socket, gate, stdin string, proxyEnv bool, argv []string) int {
	logw := os.Stderr
	if gate != "" && !awaitGate(gate, gateWait, logw) {
		return 125
	}
	l, err := net.Listen("tcp", listen)
	if err != nil {
		fmt.Fprintf(logw, "codex-connector egress: listen %s: %v\n", listen, err)
		return 125
	}
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go bridgeConn(c, socket, logw)
		}
	}()
	if len(argv) == 0 {
		fmt.Fprintln(logw, "codex-connector egress: no command to run")
		return 125
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	if stdin != "" {
		f, err := openStdin(stdin)
		if err != nil {
			fmt.Fprintf(logw, "codex-connector egress: %v\n", err)
			return 125
		}
		defer f.Close()
		cmd.Stdin = f
	}
	// The model routes are on loopback: never through a proxy variable.
	// Without the proxy variables (danger-full-access, with its own
	// network) the user's own exceptions stay, with loopback added.
	noProxy := "localhost,127.0.0.1"
	for _, name := range []string{"NO_PROXY", "no_proxy"} {
		if v := os.Getenv(name); v != "" && !proxyEnv {
			noProxy = v + "," + noProxy
			break
		}
	}
	cmd.Env = append(os.Environ(), "NO_PROXY="+noProxy, "no_proxy="+noProxy)
	if proxyEnv {
		proxy := "http://" + listen
		cmd.Env = append(cmd.Env, "HTTPS_PROXY="+proxy, "https_proxy="+proxy, "HTTP_PROXY="+proxy, "http_proxy="+proxy, "ALL_PROXY="+proxy)
	}
	if err := cmd.Start(); err != nil {
		fmt.Fprintf(logw, "codex-connector egress: start %s: %v\n", argv[0], err)
		return 127
	}
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	go func() {
		for s := range sigs {
			cmd.Process.Signal(s)
		}
	}()
	err = cmd.Wait()
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		if ws, ok := exit.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return 128 + int(ws.Signal())
		}
		return exit.ExitCode()
	}
	if err != nil {
		return 127
	}
	return 0
}

func bridgeConn(c net.Conn, socket string, logw io.Writer) {
	defer c.Close()
	cr := bufio.NewReader(c)
	reqHead, err := readHead(cr, DefaultMaxHeadBytes)
	if errors.Is(err, errHeadTooLong) {
		// The proxy would refuse it too; say so here, where the task's log is.
		fmt.Fprintf(logw, "codex-connector egress: a request → denied: its line and header are over %d bytes\n", DefaultMaxHeadBytes)
		fmt.Fprint(c, "HTTP/1.1 431 Request Header Fields Too Large\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")
		return
	}
	if err != nil {
		return
	}
	what := firstLineOf(reqHead)
	up, err := dialProxy(socket)
	if err != nil {
		fmt.Fprintf(logw, "codex-connector egress: %s → proxy unreachable: %v\n", what, err)
		fmt.Fprint(c, "HTTP/1.1 502 Bad Gateway\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")
		return
	}
	defer up.Close()
	// A failed write is no reason to stop: a proxy that refuses a task's
	// connection at its cap answers before it reads, and the answer is
	// still there to read.
	_, writeErr := up.Write(reqHead)
	// The request body (or, after CONNECT, the tunnel) flows from the start:
	// the proxy reads a body before it answers.
	sent := make(chan struct{})
	go func() { io.Copy(up, cr); closeWrite(up); close(sent) }()
	ur := bufio.NewReader(up)
	respHead, err := readHead(ur, maxResponseHead)
	if err != nil {
		if writeErr != nil {
			err = writeErr
		}
		fmt.Fprintf(logw, "codex-connector egress: %s → no answer from the proxy: %v\n", what, err)
		return
	}
	status := firstLineOf(respHead)
	if bytes.Contains(respHead, []byte(deniedHeader+": denied")) {
		reason := ""
		if body, err := ur.Peek(ur.Buffered()); err == nil {
			reason = strings.TrimSpace(strings.TrimPrefix(string(body), "codex-connector egress proxy: "))
		}
		fmt.Fprintf(logw, "codex-connector egress: %s → denied (%s): %s\n", what, status, reason)
	} else {
		fmt.Fprintf(logw, "codex-connector egress: %s → allowed\n", what)
	}
	if _, err := c.Write(respHead); err != nil {
		return
	}
	io.Copy(c, ur)
	// The proxy answers one request per connection: when its side ends, so
	// does the client's, even one that would keep it alive.
	c.Close()
	<-sent
}

// dialProxy connects to the proxy's socket. While the proxy restarts (an
// upgrade replaces it; its engine restarts it) the socket is gone or has
// nobody behind it for a moment: wait for its successor rather than fail
// the request.
func dialProxy(socket string) (net.Conn, error) {
	pause := 50 * time.Millisecond
	deadline := time.Now().Add(15 * time.Second)
	for {
		c, err := net.Dial("unix", socket)
		if err == nil || !(errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ENOENT)) || time.Now().After(deadline) {
			return c, err
		}
		time.Sleep(pause)
		pause = min(2*pause, time.Second)
	}
}

var errHeadTooLong = errors.New("head too long")

// maxResponseHead caps the head of an answer the bridge reads to log it;
// upstream servers send bigger heads than requests have.
const maxResponseHead = 64 << 10

// readHead reads an HTTP head, up to and including the blank line: at most
// max bytes (for a request, as the proxy caps it).
func readHead(r *bufio.Reader, max int) ([]byte, error) {
	var head []byte
	for len(head) < max {
		line, err := r.ReadSlice('\n')
		head = append(head, line...)
		if err != nil && err != bufio.ErrBufferFull {
			return nil, err
		}
		if bytes.Equal(line, []byte("\r\n")) || bytes.Equal(line, []byte("\n")) {
			return head, nil
		}
	}
	return nil, errHeadTooLong
}

func firstLineOf(head []byte) string {
	line, _, _ := bytes.Cut(head, []byte("\n"))
	return strings.TrimSpace(string(line))
}
