package docker

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/codex-connector/codex-connector/backend"
	"github.com/codex-connector/codex-connector/images/imagestest"
)

// Under gVisor a run sees none of its cgroup limits and a kernel of its
// own; the probe sees that kernel and reads the limits on the host's
// cgroup of the sandbox, where they hold.
func TestTheProbeReadsGVisorsLimitsOnTheHost(t *testing.T) {
	d := imagestest.StartGVisor(t)
	b := New(d.Client(t))
	h := b.Helpers(HelperConfig{Binary: imagestest.StaticBinary(t), ImageLabels: helperTestLabels})
	facts, err := h.Look(context.Background(), "runsc")
	if err != nil {
		t.Fatal(err)
	}
	got := facts.Enforced
	t.Logf("%s; inside: %+v; on the host: %+v", facts, got.Inside, got.Host)
	if !got.Sandboxed || got.Host == nil || !strings.Contains(got.Kernel, "gvisor") {
		t.Fatalf("the run's kernel is not taken for gVisor's: %+v", got)
	}
	// The control: what the sentry shows inside is not all of it (this
	// gVisor shows no pids limit), so the host's reading is what counts.
	if inside := enforcedFrom(got.Inside, nil).Missing(); len(inside) == 0 {
		t.Fatalf("every limit is seen inside the sandbox, so the host's reading proves nothing: %+v", got.Inside)
	}
	if missing := got.Missing(); len(missing) != 0 {
		t.Fatalf("limits not seen on the host: %v: %+v", missing, got.Host)
	}
	if !strings.Contains(facts.String(), "runtime runsc") {
		t.Errorf("the facts do not name the runtime: %s", facts)
	}
	// A runtime the engine lacks is refused with what to do.
	if _, err := h.Look(context.Background(), "kata"); err == nil || !strings.Contains(err.Error(), `no runtime "kata"`) || !strings.Contains(err.Error(), "runsc") {
		t.Fatalf("an unknown runtime: %v", err)
	}
}

// Under gVisor the process the engine reports is the sandbox, whose mount
// table holds none of the run's binds: the gate reads them in the gofer's.
// It opens for the directory it was told of, and refuses when what is
// bound is not that directory (a swapped bind source).
func TestTheGateReadsTheBindsUnderGVisor(t *testing.T) {
	d := imagestest.StartGVisor(t)
	for _, runtime := range []string{"runsc", "runsc-nodirectfs"} {
		t.Run(runtime, func(t *testing.T) { gateUnderGVisor(t, d, runtime) })
	}
}

func gateUnderGVisor(t *testing.T, d *imagestest.Dockerd, runtime string) {
	b := New(d.Client(t))
	// As the scheduler does before a launch: the look says which runtime
	// is gVisor's.
	if _, err := b.Helpers(HelperConfig{Binary: imagestest.StaticBinary(t), ImageLabels: helperTestLabels}).Look(context.Background(), runtime); err != nil {
		t.Fatal(err)
	}
	bound, other := t.TempDir(), t.TempDir()
	identity := func(p string) backend.Bound {
		var st syscall.Stat_t
		if err := syscall.Stat(p, &st); err != nil {
			t.Fatal(err)
		}
		return backend.Bound{Path: "/work", Dev: uint64(st.Dev), Ino: st.Ino}
	}
	for _, c := range []struct {
		what    string
		checked string
		opens   bool
	}{{"what was checked is bound", bound, true}, {"another directory is bound than was checked", other, false}} {
		t.Run(c.what, func(t *testing.T) {
			spec := testSpec(t, b, "sleep 60s; say late")
			spec.Image, spec.Runtime = d.FakeCodex(t), runtime
			spec.Mounts = []backend.Mount{{Kind: backend.Bind, Source: bound, Target: "/work"}}
			gate := filepath.Join(t.TempDir(), "gate")
			spec.Gate = &backend.Gate{File: gate, Bound: []backend.Bound{identity(c.checked)}}
			h, err := b.Launch(context.Background(), spec, recordNothing)
			if err != nil {
				t.Fatal(err)
			}
			defer h.Remove(context.Background())
			// The run is gVisor's: the engine's process is a runsc sandbox.
			info, err := d.Client(t).ContainerInspect(context.Background(), h.Ref().ID)
			if err != nil {
				t.Fatal(err)
			}
			if args := cmdline(info.State.Pid); len(args) == 0 || args[0] != "runsc-sandbox" {
				t.Fatalf("the run's process is %q, not a runsc sandbox", args)
			}
			err = h.OpenGate(context.Background())
			_, statErr := os.Stat(gate)
			if c.opens {
				if err != nil || statErr != nil {
					t.Fatalf("the gate did not open: %v (%v)", err, statErr)
				}
				return
			}
			if !errors.Is(err, backend.ErrMountChanged) || !strings.Contains(err.Error(), "is not what was checked") || statErr == nil {
				t.Fatalf("a bind of another directory than was checked: %v; gate file: %v", err, statErr)
			}
		})
	}
}

// What tells runsc's flags apart: the socket flag tasks need.
func TestHostUDSOpenReadsRunscFlags(t *testing.T) {
	for args, want := range map[string]bool{
		"--host-uds=open": true, "--host-uds=all": true, "--host-uds open": true, "-host-uds=open": true,
		"--fsgofer-host-uds": true, "--fsgofer-host-uds=true": true, "--fsgofer-host-uds=false": false,
		"--host-uds=none": false, "--network=host": false, "": false,
		"--host-uds=open --host-uds=none": false, "--host-uds=none --host-uds=open": true, "--fsgofer-host-uds=1": true,
	} {
		if got := hostUDSOpen(strings.Fields(args)); got != want {
			t.Errorf("%q: %v, want %v", args, got, want)
		}
	}
	if err := checkRuntime(Description{Runtimes: map[string]Runtime{"runsc": {Path: "/usr/bin/runsc", Args: []string{"--network=host"}}}}, "runsc"); err == nil || !strings.Contains(err.Error(), "--host-uds=open") {
		t.Errorf("runsc without the socket flag: %v", err)
	}
}
