package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/codex-connector/codex-connector/images/imagestest"
	"github.com/codex-connector/codex-connector/runner"
	cerrdefs "github.com/containerd/errdefs"
)

// TestMain has every server these tests start remove the egress proxy as
// soon as nothing is live (CODEX_CONNECTOR_PROXY_IDLE=0), as the tests of
// what a home leaves behind expect; TestTheProxyWaitsForTheNextOneShotClient
// sets its own.
func TestMain(m *testing.M) {
	if os.Getenv("CODEX_CONNECTOR_PROXY_IDLE") == "" {
		os.Setenv("CODEX_CONNECTOR_PROXY_IDLE", "0")
	}
	os.Exit(m.Run())
}

// proxyState is the egress proxy's container id and start time, "" when
// there is none.
func proxyState(t *testing.T, home string) string {
	t.Helper()
	c, err := imagestest.Engine(t).ContainerInspect(context.Background(), runner.ProxyName(home))
	if cerrdefs.IsNotFound(err) {
		return ""
	}
	if err != nil {
		t.Fatal(err)
	}
	return c.ID + " " + c.State.StartedAt
}

// waitServerLog waits until the home's server.log holds want.
func waitServerLog(t *testing.T, home, want string) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		data, _ := os.ReadFile(filepath.Join(home, "server.log"))
		if strings.Contains(string(data), want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("server.log never said %q:\n%s", want, data)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestTheProxyWaitsForTheNextOneShotClient: after a one-shot client's
// restricted task, the follower keeps the egress proxy for proxyIdle; the
// next one-shot client's task is served by the same proxy, not a new one.
// Once the idle time passes with nothing live, the follower removes it and
// exits.
func TestTheProxyWaitsForTheNextOneShotClient(t *testing.T) {
	t.Run("the next client within the idle time finds it serving", func(t *testing.T) {
		home, repo := cliHome(t), imagestest.Repo(t)
		env := cliEnv(t, home, "CODEX_CONNECTOR_PROXY_IDLE=10m")
		if res := cli(t, env, repo, "run", "--sandbox", "workspace-write", "say first"); res.code != 0 {
			t.Fatalf("first run: %s", res)
		}
		waitServerLog(t, home, "keeping the egress proxy for 10m0s")
		first := proxyState(t, home)
		if first == "" {
			t.Fatal("no egress proxy after the first run")
		}
		if res := cli(t, env, repo, "run", "--sandbox", "workspace-write", "say second"); res.code != 0 {
			t.Fatalf("second run: %s", res)
		}
		if got := proxyState(t, home); got != first {
			t.Fatalf("the second run's proxy is %q, the first's was %q: it was made anew", got, first)
		}
	})
	t.Run("after the idle time it is removed and the follower exits", func(t *testing.T) {
		home, repo := cliHome(t), imagestest.Repo(t)
		env := cliEnv(t, home, "CODEX_CONNECTOR_PROXY_IDLE=2s")
		if res := cli(t, env, repo, "run", "--sandbox", "workspace-write", "say only"); res.code != 0 {
			t.Fatalf("run: %s", res)
		}
		waitServerLog(t, home, "keeping the egress proxy for 2s")
		waitHomeIdle(t, home)
		if got := proxyState(t, home); got != "" {
			t.Fatalf("the egress proxy is left after the idle time: %s", got)
		}
	})
}
