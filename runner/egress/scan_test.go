package egress

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The proxy on a real egress directory: policies as files, sockets as Unix
// sockets. Nothing leaves the process: every dial goes to a pipe.

// egressDir makes a directory laid out as the server lays it out. It is
// short: a Unix socket's path must fit in 108 bytes.
func egressDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "eg")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	for _, sub := range []string{PoliciesDir, SocketsDir} {
		if err := os.Mkdir(filepath.Join(dir, sub), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// writePolicy writes a policy as the server does: the socket directory,
// then the policy, renamed into place.
func writePolicy(t *testing.T, dir string, p Policy) {
	t.Helper()
	if err := os.MkdirAll(filepath.Join(dir, SocketsDir, p.TaskID), 0o711); err != nil {
		t.Fatal(err)
	}
	data, _ := json.Marshal(p)
	tmp := filepath.Join(dir, PoliciesDir, p.TaskID+".json.tmp")
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, PoliciesDir, p.TaskID+".json")); err != nil {
		t.Fatal(err)
	}
}

func sockPath(dir, id string) string { return filepath.Join(dir, SocketsDir, id, SocketName) }

// ask connects to a task's socket and returns the status of a CONNECT.
func ask(t *testing.T, dir, id, target string) (int, string) {
	t.Helper()
	c, err := net.Dial("unix", sockPath(dir, id))
	if err != nil {
		t.Fatalf("connect to the socket of task %s: %v", id, err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	fmt.Fprint(c, connectHead(target))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("no answer: %v", err)
	}
	if resp.StatusCode == 200 {
		return 200, ""
	}
	return resp.StatusCode, body(resp)
}

func TestProxyServesPolicyFiles(t *testing.T) {
	dir := egressDir(t)
	p, n := newTestProxy(t, map[string][]string{"api.example.com": {"93.184.216.34"}, "other.example.com": {"93.184.216.35"}})
	p.Dir = dir
	ctx := context.Background()
	writePolicy(t, dir, Policy{TaskID: "task-a", Allow: []string{"api.example.com:443"}})
	p.scan(ctx)
	defer func() {
		for id := range p.tasks {
			p.drop(id)
		}
	}()

	t.Run("the socket appears, connectable by any user, and applies the policy", func(t *testing.T) {
		fi, err := os.Lstat(sockPath(dir, "task-a"))
		if err != nil || fi.Mode().Type() != os.ModeSocket || fi.Mode().Perm() != 0o666 {
			t.Fatalf("socket: %v %v", fi, err)
		}
		if code, _ := ask(t, dir, "task-a", "api.example.com:443"); code != 200 {
			t.Fatalf("allowed host: %d", code)
		}
		if code, reason := ask(t, dir, "task-a", "other.example.com:443"); code != 403 {
			t.Fatalf("other host: %d %s", code, reason)
		}
		if entries, _ := os.ReadDir(filepath.Join(dir, SocketsDir, "task-a")); len(entries) != 1 {
			t.Errorf("the socket directory holds %v, want the socket alone", entries)
		}
	})
	t.Run("a replaced policy is served from the next scan", func(t *testing.T) {
		writePolicy(t, dir, Policy{TaskID: "task-a", Allow: []string{"other.example.com:443"}})
		p.scan(ctx)
		if code, _ := ask(t, dir, "task-a", "other.example.com:443"); code != 200 {
			t.Fatalf("newly allowed host: %d", code)
		}
		if code, _ := ask(t, dir, "task-a", "api.example.com:443"); code != 403 {
			t.Fatalf("no longer allowed host: %d", code)
		}
	})
	t.Run("a removed socket is made again", func(t *testing.T) {
		if err := os.Remove(sockPath(dir, "task-a")); err != nil {
			t.Fatal(err)
		}
		p.scan(ctx)
		if code, _ := ask(t, dir, "task-a", "other.example.com:443"); code != 200 {
			t.Fatalf("after the socket was made again: %d", code)
		}
	})
	t.Run("a removed policy is served no more", func(t *testing.T) {
		if err := os.Remove(filepath.Join(dir, PoliciesDir, "task-a.json")); err != nil {
			t.Fatal(err)
		}
		p.scan(ctx)
		if _, err := os.Lstat(sockPath(dir, "task-a")); !os.IsNotExist(err) {
			t.Fatalf("the socket of a removed policy: %v", err)
		}
		if !strings.Contains(n.log(), "task task-a: policy removed") {
			t.Errorf("log:\n%s", n.log())
		}
	})
}

func TestProxyServesAgainAfterARestart(t *testing.T) {
	dir := egressDir(t)
	writePolicy(t, dir, Policy{TaskID: "task-a", Allow: []string{"api.example.com:443"}})
	names := map[string][]string{"api.example.com": {"93.184.216.34"}}
	first, _ := newTestProxy(t, names)
	first.Dir = dir
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- first.Run(ctx) }()
	for {
		if _, err := os.Lstat(sockPath(dir, "task-a")); err == nil {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	stop()
	<-done
	// The old socket stays, with nobody behind it, as after a crash.
	if _, err := net.Dial("unix", sockPath(dir, "task-a")); err == nil {
		t.Fatal("a stopped proxy still answers")
	}
	second, _ := newTestProxy(t, names)
	second.Dir = dir
	second.scan(context.Background())
	defer second.drop("task-a")
	if code, _ := ask(t, dir, "task-a", "api.example.com:443"); code != 200 {
		t.Fatalf("after the restart: %d", code)
	}
}

// Each policy file that is not plainly the server's is refused and never
// served, and reading it never blocks the scan.
func TestProxyRefusesPolicyFilesThatAreNotPlain(t *testing.T) {
	dir := egressDir(t)
	p, n := newTestProxy(t, nil)
	p.Dir = dir
	pols := filepath.Join(dir, PoliciesDir)
	permissive, _ := json.Marshal(Policy{TaskID: "task-link", Allow: []string{"*.com:443"}})
	elsewhere := filepath.Join(t.TempDir(), "policy.json")
	os.WriteFile(elsewhere, permissive, 0o600)
	for _, id := range []string{"task-link", "task-fifo", "task-big", "task-other", "task-junk"} {
		os.MkdirAll(filepath.Join(dir, SocketsDir, id), 0o711)
	}
	if err := os.Symlink(elsewhere, filepath.Join(pols, "task-link.json")); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(filepath.Join(pols, "task-fifo.json"), 0o600); err != nil {
		t.Fatal(err)
	}
	big, _ := json.Marshal(Policy{TaskID: "task-big", Allow: []string{"api.example.com:443"}, Deny: []string{strings.Repeat("x", maxPolicyBytes)}})
	os.WriteFile(filepath.Join(pols, "task-big.json"), big, 0o600)
	other, _ := json.Marshal(Policy{TaskID: "task-a", Allow: []string{"api.example.com:443"}})
	os.WriteFile(filepath.Join(pols, "task-other.json"), other, 0o600)
	os.WriteFile(filepath.Join(pols, "task-junk.json"), []byte(`{"taskId":"task-junk","allow":[],"unknown":1}`), 0o600)
	os.WriteFile(filepath.Join(pols, "..json"), other, 0o600)

	p.scan(context.Background())
	p.scan(context.Background()) // and again: each reason is logged once
	for id, why := range map[string]string{
		"task-link":  "too many levels of symbolic links",
		"task-fifo":  "not a regular file",
		"task-big":   "over the cap",
		"task-other": `is for task "task-a"`,
		"task-junk":  "unknown field",
	} {
		if _, err := os.Lstat(sockPath(dir, id)); !os.IsNotExist(err) {
			t.Errorf("%s is served: %v", id, err)
		}
		if got := strings.Count(n.log(), "task "+id+": policy not served"); got != 1 || !strings.Contains(n.log(), why) {
			t.Errorf("%s: logged %d times, want once with %q", id, got, why)
		}
	}
	if len(p.tasks) != 0 {
		t.Errorf("serving %v", p.tasks)
	}
	t.Log(n.log())
}

// The proxy makes no socket directory: the server makes one for a task
// before its policy, and removes the policy first when the task ends.
func TestProxyWithoutSocketDirectory(t *testing.T) {
	dir := egressDir(t)
	p, n := newTestProxy(t, nil)
	p.Dir = dir
	writePolicy(t, dir, Policy{TaskID: "task-a", Allow: []string{"api.example.com:443"}})
	os.RemoveAll(filepath.Join(dir, SocketsDir, "task-a"))
	p.scan(context.Background())
	defer p.drop("task-a")
	if _, err := os.Lstat(filepath.Join(dir, SocketsDir, "task-a")); !os.IsNotExist(err) {
		t.Fatalf("the proxy made the directory: %v", err)
	}
	if !strings.Contains(n.log(), "no socket directory") {
		t.Errorf("log:\n%s", n.log())
	}
}
