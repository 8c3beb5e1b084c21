package imagestest

import (
	"encoding/json"
	"os"
	"path/filepath"
	"runtime"
	"testing"
)

// Runsc is the path of the runsc the gVisor tests use: the one `make
// runsc` builds (CODEX_CONNECTOR_TEST_RUNSC, which `make test` sets, or
// the newest under .build/runsc). A test that needs it fails without it.
func Runsc(t testing.TB) string {
	t.Helper()
	if p := os.Getenv("CODEX_CONNECTOR_TEST_RUNSC"); p != "" {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("CODEX_CONNECTOR_TEST_RUNSC: %v — build it with `make runsc`", err)
		}
		return p
	}
	_, file, _, _ := runtime.Caller(0)
	root := filepath.Join(filepath.Dir(file), "..", "..")
	found, _ := filepath.Glob(filepath.Join(root, ".build", "runsc", "*", "runsc"))
	var newest string
	var when int64
	for _, p := range found {
		if fi, err := os.Stat(p); err == nil && fi.ModTime().UnixNano() > when {
			newest, when = p, fi.ModTime().UnixNano()
		}
	}
	if newest == "" {
		t.Fatal("this test runs tasks under gVisor and needs its runsc: build it with `make runsc` (the Go module proxy serves it)")
	}
	return newest
}

// StartGVisor starts a Docker engine of the test's own (StartDockerd) with
// Runsc registered as the runtime "runsc", with the flag tasks need to
// reach the egress proxy's socket; and as "runsc-nodirectfs", hardened as
// some sites run it: the sentry opens no host file itself, and the
// sandbox runs as nobody.
func StartGVisor(t testing.TB) *Dockerd {
	t.Helper()
	path := Runsc(t)
	conf := map[string]any{"runtimes": map[string]any{
		"runsc":            map[string]any{"path": path, "runtimeArgs": []string{"--host-uds=open"}},
		"runsc-nodirectfs": map[string]any{"path": path, "runtimeArgs": []string{"--host-uds=open", "--directfs=false"}},
	}}
	data, err := json.Marshal(conf)
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "daemon.json")
	if err := os.WriteFile(file, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return StartDockerd(t, false, "--config-file", file)
}
