package imagestest

import (
	"context"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/client"
)

// What the tests' own engines (Dockerd, RootlessEngine) share: a client of
// the engine at a host, and the removal of what a test left in it.

// dial is a client of the engine at host.
func dial(t testing.TB, host string) *client.Client {
	t.Helper()
	cli, err := client.NewClientWithOpts(client.WithHost(host), client.WithAPIVersionNegotiation())
	if err != nil {
		t.Fatal(err)
	}
	return cli
}

// testClient is a client of the engine at host, its API version
// negotiated once before concurrent use, closed when the test ends.
func testClient(t testing.TB, host string) *client.Client {
	t.Helper()
	cli := dial(t, host)
	t.Cleanup(func() { cli.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cli.NegotiateAPIVersion(ctx)
	return cli
}

// removeContainers removes every container of the engine at host, as a
// test's engine is stopped: what a failed test left running goes too.
func removeContainers(host string) {
	cli, err := client.NewClientWithOpts(client.WithHost(host), client.WithAPIVersionNegotiation())
	if err != nil {
		return
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	list, _ := cli.ContainerList(ctx, container.ListOptions{All: true})
	for _, c := range list {
		_ = cli.ContainerRemove(ctx, c.ID, container.RemoveOptions{Force: true})
	}
}

// fakeCodexIn builds the fake Codex image in the engine at host (where,
// for a failure's message) and returns its reference.
func fakeCodexIn(t testing.TB, host, where string) string {
	t.Helper()
	ref, err := buildFake(testClient(t, host))
	if err != nil {
		t.Fatalf("build the fake Codex image in %s: %v", where, err)
	}
	return ref
}
