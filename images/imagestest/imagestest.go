// Package imagestest gives tests a real Docker engine and the images they
// run: the fake Codex image, built from images/fakecodex.
package imagestest

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/codex-connector/codex-connector/images"
	"github.com/docker/docker/client"
)

// Engine connects to the Docker engine. Tests that need it fail when it does
// not answer — in CI and on a developer's machine alike — because a skipped
// engine test would count as a pass that proved nothing. Set
// CODEX_CONNECTOR_SKIP_DOCKER=1 to skip them knowingly, outside CI.
func Engine(t testing.TB) *client.Client {
	t.Helper()
	cli, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
	if err == nil {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, err = cli.Ping(ctx)
		// Once, before concurrent use: lazy negotiation races (see cmd).
		cli.NegotiateAPIVersion(ctx)
	}
	if err != nil {
		if os.Getenv("CODEX_CONNECTOR_SKIP_DOCKER") == "1" && os.Getenv("CI") == "" {
			t.Skipf("no Docker engine (%v) and CODEX_CONNECTOR_SKIP_DOCKER=1", err)
		}
		t.Fatalf("this test needs a Docker engine and none answers: %v — start one (see .ci/run) or, outside CI, set CODEX_CONNECTOR_SKIP_DOCKER=1 to skip", err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

var (
	fakeOnce sync.Once
	fakeRef  string
	fakeErr  error
)

// FakeCodex builds (once per test binary, and only when its content changed)
// an image FROM scratch holding images/fakecodex as /usr/local/bin/codex, and
// returns its reference. It carries the Codex version label of
// images.DefaultCodexVersion so that the runner's version check passes.
func FakeCodex(t testing.TB) string {
	t.Helper()
	engine := Engine(t)
	fakeOnce.Do(func() { fakeRef, fakeErr = buildFake(engine) })
	if fakeErr != nil {
		t.Fatalf("build fake Codex image: %v", fakeErr)
	}
	return fakeRef
}

func buildFake(engine *client.Client) (string, error) {
	dir, err := os.MkdirTemp("", "fakecodex")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(dir)
	bin := filepath.Join(dir, "codex")
	if err := goBuildStatic("github.com/codex-connector/codex-connector/images/fakecodex", bin); err != nil {
		return "", err
	}
	data, err := os.ReadFile(bin)
	if err != nil {
		return "", err
	}
	// Laid out as Dockerfile.codex lays out the real one, so that the
	// runner can put it onto a toolchain image: the native Codex in
	// images.CodexDir, and a CA bundle.
	dockerfile := "FROM scratch\nENV PATH=/usr/local/bin:/usr/bin:/bin\nCOPY codex /usr/local/bin/codex\nCOPY codex " + images.CodexDir + "/bin/codex\n" +
		"COPY ca.crt /etc/ssl/certs/ca-certificates.crt\nLABEL " + images.CodexVersionLabel + "=" + images.DefaultCodexVersion + "\n"
	ca := []byte("# no CA certificates: the fake Codex talks to no TLS server\n")
	sum := sha256.Sum256(append(data, dockerfile...))
	ref := "codex-connector/fake-codex:" + hex.EncodeToString(sum[:6])
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if _, err := engine.ImageInspect(ctx, ref); err == nil {
		return ref, nil
	}
	// Test binaries of several packages (and their helper processes) start
	// at once on a new engine: two builds of the tag make two images, and a
	// process that inspected the first then makes task images of another
	// Codex than one that inspected the second.
	unlock, err := images.LockBuild(ctx, ref)
	if err != nil {
		return "", err
	}
	defer unlock()
	if _, err := engine.ImageInspect(ctx, ref); err == nil {
		return ref, nil
	}
	err = images.BuildFiles(ctx, engine, ref,
		map[string][]byte{"Dockerfile": []byte(dockerfile), "codex": data, "ca.crt": ca},
		map[string]int64{"codex": 0o755})
	return ref, err
}

// goBuildStatic builds pkg as a static binary at out, as `make build` does:
// it must run FROM scratch and in any Codex image.
func goBuildStatic(pkg, out string) error {
	cmd := exec.Command("go", "build", "-trimpath", "-o", out, pkg)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if output, err := cmd.CombinedOutput(); err != nil {
		return &buildError{string(output), err}
	}
	return nil
}

type buildError struct {
	out string
	err error
}

func (e *buildError) Error() string { return "go build: " + e.err.Error() + "\n" + e.out }

// Codex returns the real Codex image (images.DefaultRef, or
// CODEX_CONNECTOR_IMAGE), failing the test with the commands that build it
// when it is missing: .ci/run builds it before the tests.
func Codex(t testing.TB) string {
	t.Helper()
	engine := Engine(t)
	ref := os.Getenv("CODEX_CONNECTOR_IMAGE")
	if ref == "" {
		ref = images.DefaultRef
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := (images.Codex{Ref: ref, Version: images.DefaultCodexVersion}).Check(ctx, engine); err != nil {
		t.Fatalf("this test runs the real Codex CLI: %v (without a registry: make base && make image BASE=codex-connector/debian:bookworm)", err)
	}
	return ref
}

var (
	staticOnce sync.Once
	staticPath string
	staticErr  error
)

// StaticBinary builds codex-connector as `make build` does (static), once
// per test binary, and returns its path: restricted sandboxes run it as the
// egress proxy and the in-container bridge.
func StaticBinary(t testing.TB) string {
	t.Helper()
	staticOnce.Do(func() {
		removeStale("codex-connector-static*")
		dir, err := os.MkdirTemp("", "codex-connector-static")
		if err != nil {
			staticErr = err
			return
		}
		staticPath = filepath.Join(dir, "codex-connector")
		staticErr = goBuildStatic("github.com/codex-connector/codex-connector/cmd/codex-connector", staticPath)
	})
	if staticErr != nil {
		t.Fatalf("build codex-connector: %v", staticErr)
	}
	return staticPath
}

// removeStale removes what earlier test runs left in the temporary
// directory under pattern: a binary shared by a package's tests cannot be
// removed by any one of them, and a test process has no end of its own
// here. Only what is an hour old goes, which no run still uses.
func removeStale(pattern string) {
	old, _ := filepath.Glob(filepath.Join(os.TempDir(), pattern))
	for _, dir := range old {
		if fi, err := os.Stat(dir); err == nil && time.Since(fi.ModTime()) > time.Hour {
			os.RemoveAll(dir)
		}
	}
}
