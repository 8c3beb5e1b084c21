package docker

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/pkg/stdcopy"
)

// What an engine enforces is seen from inside one of its containers, not
// taken from what it says: a rootless engine on cgroup v1 drops every
// limit while its create answer carries no warning, and Podman's /info
// says limits are supported all the same. A probe runs the helper image
// with known limits and reads what the container was given.

// Inside is what a container sees of its own limits and user namespace.
type Inside struct {
	// UIDMap is /proc/self/uid_map: one line "0 0 4294967295" outside
	// any user namespace.
	UIDMap string `json:"uidMap"`
	GIDMap string `json:"gidMap"`
	CgroupLimits
	// Kernel is /proc/version as the container sees it (gVisor's own
	// under runsc).
	Kernel string `json:"kernel"`
}

// CgroupLimits are the limits one cgroup holds; -1 is none.
type CgroupLimits struct {
	// Cgroup is "v1" or "v2".
	Cgroup string `json:"cgroup"`
	// CPUQuota is in CPUPeriod (microseconds).
	MemoryBytes int64 `json:"memoryBytes"`
	Pids        int64 `json:"pids"`
	CPUQuota    int64 `json:"cpuQuota"`
	CPUPeriod   int64 `json:"cpuPeriod"`
}

// LookInside reads Inside from the files a container sees; what cannot be
// read counts as no limit.
func LookInside() Inside {
	in := Inside{UIDMap: readTrim("/proc/self/uid_map"), GIDMap: readTrim("/proc/self/gid_map"), Kernel: readTrim("/proc/version")}
	if cgroupV2("/sys/fs/cgroup") {
		in.CgroupLimits = readCgroupLimits("v2", "/sys/fs/cgroup", "/sys/fs/cgroup", "/sys/fs/cgroup")
	} else {
		in.CgroupLimits = readCgroupLimits("v1", "/sys/fs/cgroup/memory", "/sys/fs/cgroup/pids", "/sys/fs/cgroup/cpu")
	}
	return in
}

// cgroupV2 says whether the cgroup hierarchy mounted at root is the
// unified one.
func cgroupV2(root string) bool {
	_, err := os.Stat(root + "/cgroup.controllers")
	return err == nil
}

// readCgroupLimits reads the limits of the cgroups whose directories are
// given, one per controller (all one on cgroup v2).
func readCgroupLimits(version, memory, pids, cpu string) CgroupLimits {
	l := CgroupLimits{Cgroup: version, MemoryBytes: -1, Pids: -1, CPUQuota: -1, CPUPeriod: -1}
	if version == "v2" {
		l.MemoryBytes = limitOf(readTrim(memory + "/memory.max"))
		l.Pids = limitOf(readTrim(pids + "/pids.max"))
		if quota, period, ok := strings.Cut(readTrim(cpu+"/cpu.max"), " "); ok {
			l.CPUQuota, l.CPUPeriod = limitOf(quota), limitOf(period)
		}
		return l
	}
	l.MemoryBytes = limitOf(readTrim(memory + "/memory.limit_in_bytes"))
	l.Pids = limitOf(readTrim(pids + "/pids.max"))
	l.CPUQuota = limitOf(readTrim(cpu + "/cpu.cfs_quota_us"))
	l.CPUPeriod = limitOf(readTrim(cpu + "/cpu.cfs_period_us"))
	return l
}

// ReportInside prints LookInside as JSON: the probe's command. With
// --hold it prints nothing and waits to be removed (at most two minutes),
// while the host's view of it is read.
func ReportInside(args []string) error {
	if len(args) > 0 && args[0] == "--hold" {
		time.Sleep(2 * time.Minute)
		return nil
	}
	return json.NewEncoder(os.Stdout).Encode(LookInside())
}

func readTrim(path string) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(data))
}

// limitOf reads a cgroup limit: "max", a negative number, a number no
// machine has (cgroup v1's "none" is about 2^63), or nothing is -1.
func limitOf(s string) int64 {
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 || n >= 1<<62 {
		return -1
	}
	return n
}

// The limits a probe asks for: small, and each one a value no default
// gives.
const (
	probeMemory   = 72 << 20
	probeNanoCPUs = 700_000_000 // 0.7 CPU
	probePids     = 47
)

// Enforced is what an engine's runs get, as a probe saw it.
type Enforced struct {
	Memory, CPU, Pids bool
	// UserNamespace: the runs' uids map to other uids on the host.
	UserNamespace bool
	// Kernel is what the runs see as their kernel.
	Kernel string
	// Sandboxed: that kernel is not the host's (gVisor's own, under runsc),
	// so the limits were read where the host keeps them, in Host.
	Sandboxed bool
	// Inside is what the probe read inside; Host, for a sandboxed kernel,
	// what the host's cgroup of the run held.
	Inside Inside
	Host   *CgroupLimits `json:",omitempty"`
}

// Missing names the limits the runs do not get.
func (e Enforced) Missing() []string {
	var out []string
	if !e.Memory {
		out = append(out, "memory")
	}
	if !e.CPU {
		out = append(out, "cpu")
	}
	if !e.Pids {
		out = append(out, "pids")
	}
	return out
}

// enforcedFrom compares what a probe saw with what it asked for: the
// limits inside, or those host held for a run under a sandboxed kernel.
func enforcedFrom(in Inside, host *CgroupLimits) Enforced {
	e := Enforced{Inside: in, Kernel: in.Kernel, Host: host}
	limits := in.CgroupLimits
	if host != nil {
		e.Sandboxed, limits = true, *host
	}
	e.Memory = limits.MemoryBytes > 0 && limits.MemoryBytes <= probeMemory
	// The quota over the period is the share of a CPU; the kernel may
	// round the quota by a microsecond or so.
	if limits.CPUQuota > 0 && limits.CPUPeriod > 0 {
		share := float64(limits.CPUQuota) / float64(limits.CPUPeriod)
		e.CPU = share > 0.69 && share < 0.71
	}
	e.Pids = limits.Pids > 0 && limits.Pids <= probePids
	e.UserNamespace = !identityMap(in.UIDMap)
	return e
}

// identityMap says whether a uid_map maps every uid to itself.
func identityMap(uidMap string) bool {
	f := strings.Fields(uidMap)
	return len(f) == 3 && f[0] == "0" && f[1] == "0" && f[2] == "4294967295"
}

// Probe runs the helper image under runtime ("" the engine's default)
// with known limits, and says what its container was given. Warnings the
// engine gave on create are returned with it.
//
// Under gVisor the run sees its limits only in part (the sentry shows
// no pids limit): they bound the sandbox, from the host. So when the
// runtime is gVisor and the kernel inside is not the host's, a second run
// is held while the host's cgroup of its sandbox is read. Another kernel
// of its own (a VM's) is judged by what it shows inside.
func (h *Helpers) Probe(ctx context.Context, runtime string, gvisor bool) (Enforced, []string, error) {
	ref, err := h.Image(ctx)
	if err != nil {
		return Enforced{}, nil, err
	}
	cfg, host := h.probeContainer(ref, runtime, "probe")
	out, warnings, err := h.runOnce(ctx, "probe what the engine enforces", cfg, host)
	if err != nil {
		return Enforced{}, warnings, err
	}
	var in Inside
	if err := json.Unmarshal(bytes.TrimSpace(out), &in); err != nil {
		return Enforced{}, warnings, fmt.Errorf("probe what the engine enforces: the probe printed %.200q: %w", out, err)
	}
	if hostKernel := readTrim("/proc/version"); !gvisor || in.Kernel == hostKernel || in.Kernel == "" || hostKernel == "" {
		e := enforcedFrom(in, nil)
		e.Sandboxed = in.Kernel != hostKernel
		return e, warnings, nil
	}
	limits, err := h.hostLimits(ctx, ref, runtime)
	if err != nil {
		return Enforced{}, warnings, err
	}
	return enforcedFrom(in, &limits), warnings, nil
}

// probeContainer is a probe's container: the helper image with the
// probe's limits, running the helper's command args.
func (h *Helpers) probeContainer(ref, runtime string, args ...string) (*container.Config, *container.HostConfig) {
	pids := int64(probePids)
	labels := map[string]string{}
	for _, m := range []map[string]string{h.cfg.ImageLabels, h.cfg.ProbeLabels} {
		for k, v := range m {
			labels[k] = v
		}
	}
	cfg := &container.Config{Image: ref, User: "65534:65534", Entrypoint: append([]string{"/codex-connector"}, args...), Labels: labels}
	host := &container.HostConfig{NetworkMode: "none", ReadonlyRootfs: true, Runtime: runtime,
		CapDrop: []string{"ALL"}, SecurityOpt: []string{"no-new-privileges"},
		Resources: container.Resources{Memory: probeMemory, MemorySwap: probeMemory, NanoCPUs: probeNanoCPUs, PidsLimit: &pids}}
	return cfg, host
}

// hostLimits holds a probe's container running and reads the limits of
// the host's cgroup of the process the engine reports for it.
func (h *Helpers) hostLimits(ctx context.Context, ref, runtime string) (CgroupLimits, error) {
	const what = "probe what the engine enforces on a sandboxed kernel"
	cfg, host := h.probeContainer(ref, runtime, "probe", "--hold")
	created, err := h.b.eng.ContainerCreate(ctx, cfg, host, nil, nil, "")
	if err != nil {
		return CgroupLimits{}, Error(what+": create its container", err)
	}
	defer func() { _ = h.b.remove(context.WithoutCancel(ctx), created.ID) }()
	if err := h.b.eng.ContainerStart(ctx, created.ID, container.StartOptions{}); err != nil {
		return CgroupLimits{}, Error(what+": start its container", err)
	}
	info, err := h.b.eng.ContainerInspect(ctx, created.ID)
	if err != nil {
		return CgroupLimits{}, Error(what+": inspect its container", err)
	}
	if info.State == nil || !info.State.Running || info.State.Pid == 0 {
		return CgroupLimits{}, fmt.Errorf("%s: its container did not stay running — see the engine's log", what)
	}
	if _, err := sandboxParent(info.State.Pid); err != nil {
		return CgroupLimits{}, fmt.Errorf("%s: %w", what, err)
	}
	return hostCgroupLimits(info.State.Pid)
}

// hostCgroupLimits reads the limits of the cgroups that process pid is in,
// as the host mounts them under /sys/fs/cgroup.
func hostCgroupLimits(pid int) (CgroupLimits, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil {
		return CgroupLimits{}, fmt.Errorf("read the host's cgroup of the probe's process: %w", err)
	}
	dirs := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 {
			continue
		}
		if parts[1] == "" {
			dirs[""] = parts[2]
		}
		for _, c := range strings.Split(parts[1], ",") {
			dirs[c] = parts[2]
		}
	}
	const root = "/sys/fs/cgroup"
	if cgroupV2(root) {
		p, ok := dirs[""]
		if !ok || !strings.HasPrefix(p, "/") || slices.Contains(strings.Split(p, "/"), "..") {
			return CgroupLimits{}, fmt.Errorf("the probe's process is in no cgroup v2 group: %.200q", data)
		}
		dir := filepath.Join(root, p)
		return readCgroupLimits("v2", dir, dir, dir), nil
	}
	for _, c := range []string{"memory", "pids", "cpu"} {
		p, ok := dirs[c]
		if !ok || !strings.HasPrefix(p, "/") || slices.Contains(strings.Split(p, "/"), "..") {
			return CgroupLimits{}, fmt.Errorf("the probe's process is in no usable %s cgroup: %.200q", c, data)
		}
	}
	return readCgroupLimits("v1", filepath.Join(root, "memory", dirs["memory"]), filepath.Join(root, "pids", dirs["pids"]), filepath.Join(root, "cpu", dirs["cpu"])), nil
}

// runOnce runs one helper container to its end and returns what it
// printed on stdout; one that exits non-zero is an error with its stderr.
// The container is removed, whatever happens.
func (h *Helpers) runOnce(ctx context.Context, what string, cfg *container.Config, host *container.HostConfig) ([]byte, []string, error) {
	created, err := h.b.eng.ContainerCreate(ctx, cfg, host, nil, nil, "")
	if err != nil {
		return nil, nil, Error(what+": create its container", err)
	}
	defer func() { _ = h.b.remove(context.WithoutCancel(ctx), created.ID) }()
	waitC, errC := h.b.eng.ContainerWait(ctx, created.ID, container.WaitConditionNextExit)
	if err := h.b.eng.ContainerStart(ctx, created.ID, container.StartOptions{}); err != nil {
		return nil, created.Warnings, Error(what+": start its container", err)
	}
	var code int64
	select {
	case w := <-waitC:
		code = w.StatusCode
	case err := <-errC:
		return nil, created.Warnings, Error(what+": wait for its container", err)
	case <-ctx.Done():
		return nil, created.Warnings, ctx.Err()
	}
	rc, err := h.b.eng.ContainerLogs(ctx, created.ID, container.LogsOptions{ShowStdout: true, ShowStderr: true})
	if err != nil {
		return nil, created.Warnings, Error(what+": read its output", err)
	}
	defer rc.Close()
	var stdout, stderr bytes.Buffer
	if _, err := stdcopy.StdCopy(&limitedBuffer{&stdout, 1 << 20}, &limitedBuffer{&stderr, 64 << 10}, rc); err != nil {
		return nil, created.Warnings, fmt.Errorf("%s: read its output: %w", what, err)
	}
	if code != 0 {
		return nil, created.Warnings, &helperExit{what: what, code: code, stderr: strings.TrimSpace(stderr.String())}
	}
	return stdout.Bytes(), created.Warnings, nil
}

// helperExit is a helper container that exited non-zero.
type helperExit struct {
	what   string
	code   int64
	stderr string
}

func (e *helperExit) Error() string {
	return fmt.Sprintf("%s: the helper exited with %d: %.500s", e.what, e.code, e.stderr)
}

// limitedBuffer keeps the first n bytes written to it and drops the rest.
type limitedBuffer struct {
	b *bytes.Buffer
	n int
}

func (l *limitedBuffer) Write(p []byte) (int, error) {
	if room := l.n - l.b.Len(); room > 0 {
		l.b.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}
