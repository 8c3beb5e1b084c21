package docker

import "testing"

// The id inside a user namespace that is a host's id, as the kernel's maps
// say: rootless engines map their own user to root inside, and the rest
// of the ids to the user's subordinate range.
func TestInsideIDReadsTheNamespacesMap(t *testing.T) {
	const rootless = "         0       2002          1\n         1     165536      65536"
	for _, c := range []struct {
		idMap  string
		host   uint64
		inside uint64
		ok     bool
	}{
		{"0 0 4294967295", 1000, 1000, true},
		{rootless, 2002, 0, true},
		{rootless, 165536, 1, true},
		{rootless, 165536 + 65535, 65536, true},
		{rootless, 165536 + 65536, 0, false},
		{rootless, 1000, 0, false},
		{"", 1000, 0, false},
		{"garbage here", 0, 0, false},
	} {
		if got, ok := insideID(c.idMap, c.host); got != c.inside || ok != c.ok {
			t.Errorf("insideID(%q, %d) = %d, %v; want %d, %v", c.idMap, c.host, got, ok, c.inside, c.ok)
		}
	}
	if got := readableMap(rootless); got != "inside 0 = 2002 outside, inside 1-65536 = 165536-231071 outside" {
		t.Errorf("readableMap: %q", got)
	}
}

// A run is made as the id inside that maps to the host's user; on an
// engine with no user namespace that is the host's id itself; one the
// namespace does not map is refused; and none is given before the engine
// was looked at.
func TestARunsUserIsTheHostsMappedIn(t *testing.T) {
	b := New(nil)
	if _, err := b.mapUser("1000:1000"); err == nil {
		t.Fatal("a user was given before the engine was looked at")
	}
	b.facts = map[string]Facts{"": {Enforced: Enforced{Inside: Inside{UIDMap: "0 0 4294967295", GIDMap: "0 0 4294967295"}}}}
	if got, err := b.mapUser("1000:1000"); err != nil || got != "1000:1000" {
		t.Fatalf("rootful: %q %v", got, err)
	}
	b.facts[""] = Facts{Enforced: Enforced{UserNamespace: true, Inside: Inside{UIDMap: "0 2002 1\n1 165536 65536", GIDMap: "0 2002 1\n1 165536 65536"}}}
	if got, err := b.mapUser("2002:2002"); err != nil || got != "0:0" {
		t.Fatalf("the engine's user: %q %v", got, err)
	}
	if _, err := b.mapUser("1000:1000"); err == nil {
		t.Fatal("a user the namespace does not map was given")
	}
	if got, err := b.mapUser(""); err != nil || got != "" {
		t.Fatalf("the image's own user: %q %v", got, err)
	}
}

// What a probe's container saw is compared with what it asked for.
func TestEnforcedComparesWhatTheProbeAskedWithWhatItGot(t *testing.T) {
	given := Inside{UIDMap: "0 0 4294967295", CgroupLimits: CgroupLimits{MemoryBytes: probeMemory, Pids: probePids, CPUQuota: 70000, CPUPeriod: 100000}}
	if e := enforcedFrom(given, nil); len(e.Missing()) != 0 || e.UserNamespace {
		t.Errorf("all given: missing %v, user namespace %v", e.Missing(), e.UserNamespace)
	}
	dropped := Inside{UIDMap: "0 2002 1\n1 165536 65536", CgroupLimits: CgroupLimits{MemoryBytes: -1, Pids: -1, CPUQuota: -1, CPUPeriod: 100000}}
	if e := enforcedFrom(dropped, nil); len(e.Missing()) != 3 || !e.UserNamespace {
		t.Errorf("none given: missing %v, user namespace %v", e.Missing(), e.UserNamespace)
	}
	// A limit of the host's, not the probe's (a parent cgroup's), is not
	// the probe's limit holding.
	other := given
	other.MemoryBytes, other.Pids, other.CPUQuota = 8<<30, 4096, 200000
	if e := enforcedFrom(other, nil); len(e.Missing()) != 3 {
		t.Errorf("other limits: missing %v", e.Missing())
	}
	// Under a sandboxed kernel the host's cgroup of the run is what holds:
	// a sandbox that shows no limit inside, with the probe's outside, has
	// them; one whose host cgroup lacks them has none.
	sandboxed := Inside{UIDMap: "0 0 4294967295", Kernel: "Linux version 4.4.0", CgroupLimits: CgroupLimits{MemoryBytes: -1, Pids: -1, CPUQuota: -1}}
	if e := enforcedFrom(sandboxed, &given.CgroupLimits); len(e.Missing()) != 0 || !e.Sandboxed {
		t.Errorf("sandboxed, limited on the host: missing %v, sandboxed %v", e.Missing(), e.Sandboxed)
	}
	if e := enforcedFrom(given, &dropped.CgroupLimits); len(e.Missing()) != 3 {
		t.Errorf("sandboxed, limited inside only: missing %v", e.Missing())
	}
	for in, want := range map[string]int64{"max": -1, "": -1, "-1": -1, "9223372036854771712": -1, "75497472": 75497472} {
		if got := limitOf(in); got != want {
			t.Errorf("limitOf(%q) = %d, want %d", in, got, want)
		}
	}
}
