package docker

import (
	"context"
	"fmt"
	"slices"
	"strings"
)

// Description is which engine this is, as it says of itself.
type Description struct {
	// Name is "Docker" or "Podman" (whose Docker-compatible API answers
	// as Docker does, with its own name among the version's components).
	Name       string
	Version    string
	APIVersion string
	// SaysRootless: Docker's rootless security option. Podman 4 does not
	// set it; a probe's user namespace tells (Facts.Rootless).
	SaysRootless   bool
	CgroupVersion  string
	DefaultRuntime string
	// Runtimes are the runtimes the engine has, by name (Podman may list
	// none).
	Runtimes map[string]Runtime
	// ID and RootDir tell one engine from another on one machine;
	// CgroupDriver and SecurityOptions change with its setup.
	ID              string
	RootDir         string
	CgroupDriver    string
	SecurityOptions []string
}

// Describe asks the engine which it is.
func (b *Backend) Describe(ctx context.Context) (Description, error) {
	v, err := b.eng.ServerVersion(ctx)
	if err != nil {
		return Description{}, Error("ask the engine which it is", err)
	}
	d := Description{Name: "Docker", Version: v.Version, APIVersion: v.APIVersion}
	for _, c := range v.Components {
		if strings.HasPrefix(c.Name, "Podman") {
			d.Name, d.Version = "Podman", c.Version
		}
	}
	info, err := b.eng.Info(ctx)
	if err != nil {
		return Description{}, Error("ask the engine which it is", err)
	}
	d.SaysRootless = slices.ContainsFunc(info.SecurityOptions, func(o string) bool { return strings.Contains(o, "name=rootless") })
	d.CgroupVersion, d.DefaultRuntime = info.CgroupVersion, info.DefaultRuntime
	d.ID, d.RootDir, d.CgroupDriver, d.SecurityOptions = info.ID, info.DockerRootDir, info.CgroupDriver, info.SecurityOptions
	d.Runtimes = map[string]Runtime{}
	for name, rt := range info.Runtimes {
		d.Runtimes[name] = Runtime{Path: rt.Path, Args: rt.Args}
	}
	return d, nil
}

// runtime is the registration of the runtime a run naming name ("" the
// default) gets.
func (d Description) runtime(name string) Runtime {
	if name == "" {
		name = d.DefaultRuntime
	}
	return d.Runtimes[name]
}

// Runtime is a runtime as the engine has it registered.
type Runtime struct {
	Path string
	Args []string `json:",omitempty"`
}

// Facts are an engine as a server found it: what it says, and what a
// probe saw inside one of its runs.
type Facts struct {
	Description
	// Runtime is the runtime the probe ran under ("" the default).
	Runtime  string
	Enforced Enforced
	// Warnings are what the engine said when the probe's container was
	// made.
	Warnings []string
}

// Rootless says the engine runs as an ordinary user: it says so, or its
// runs are in a user namespace while it is not Docker with userns-remap
// (whose daemon is root).
func (e Facts) Rootless() bool {
	return e.SaysRootless || e.Name == "Podman" && e.Enforced.UserNamespace
}

// String names the engine for a reader: "Podman 4.3.1 (API 1.41),
// rootless, cgroup v1".
func (e Facts) String() string {
	mode := "rootful"
	if e.Rootless() {
		mode = "rootless"
	}
	s := fmt.Sprintf("%s %s (API %s), %s", e.Name, e.Version, e.APIVersion, mode)
	if e.CgroupVersion != "" {
		s += ", cgroup v" + e.CgroupVersion
	}
	if e.Runtime != "" {
		s += ", runtime " + e.Runtime
	}
	return s
}

// Look describes the engine and probes what it gives its runs under
// runtime ("" the default), once per backend and runtime: a look that
// fails is made again at the next call.
func (h *Helpers) Look(ctx context.Context, runtime string) (Facts, error) {
	h.b.factsMu.Lock()
	defer h.b.factsMu.Unlock()
	if f, ok := h.b.facts[runtime]; ok {
		return f, nil
	}
	d, err := h.b.Describe(ctx)
	if err != nil {
		return Facts{}, err
	}
	if err := checkRuntime(d, runtime); err != nil {
		return Facts{Description: d, Runtime: runtime}, err
	}
	key := factsKey(d, runtime)
	f, ok := h.savedFacts(key)
	if !ok {
		enforced, warnings, err := h.Probe(ctx, runtime, isGVisor(d.runtime(runtime)))
		if err != nil {
			return Facts{Description: d, Runtime: runtime}, err
		}
		f = Facts{Description: d, Runtime: runtime, Enforced: enforced, Warnings: warnings}
		h.saveFacts(key, f)
	}
	if h.b.facts == nil {
		h.b.facts = map[string]Facts{}
	}
	h.b.facts[runtime] = f
	return f, nil
}
