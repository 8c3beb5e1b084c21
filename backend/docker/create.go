package docker

import (
	"fmt"
	"strconv"

	"github.com/codex-connector/codex-connector/backend"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/mount"
)

// containerConfig is the container of a run: what the spec asks, and what
// every run gets whatever it asks — an init, a read-only root filesystem,
// no capabilities, no privilege to gain, /tmp as a capped tmpfs, and the
// engine's own copy of the output capped in one file.
func containerConfig(s backend.Spec) (*container.Config, *container.HostConfig) {
	cfg := &container.Config{
		Image:      s.Image,
		Cmd:        s.Command,
		Env:        s.Env,
		User:       s.User,
		WorkingDir: s.WorkDir,
		// Set, not inherited: the image's own labels are merged in, and a
		// toolchain image must not pass for a helper container.
		Labels: s.Labels,
		// No stdin from the engine: Codex reads stdin when it is not a
		// terminal, and an open pipe would make it wait forever. Its prompt
		// comes from a file the wrapper opens as its stdin.
		OpenStdin: false,
	}
	init := true
	pids := s.Limits.Pids
	host := &container.HostConfig{
		Mounts:         mounts(s.Mounts),
		Init:           &init,
		ReadonlyRootfs: true,
		CapDrop:        []string{"ALL"},
		SecurityOpt:    []string{"no-new-privileges"},
		Tmpfs:          map[string]string{"/tmp": fmt.Sprintf("rw,exec,nosuid,nodev,size=%d,mode=1777", s.Limits.TmpBytes)},
		// json-file in one file: the engine's copy of a flood must not grow
		// without bound. When it fills, the engine starts it afresh (the
		// runner's log copy stops the task first, or when it sees that
		// happen). Said explicitly, because the engine fills unset options
		// from daemon.json.
		LogConfig: container.LogConfig{Type: "json-file", Config: map[string]string{
			"max-size": strconv.FormatInt(s.Limits.LogBytes, 10), "max-file": "1", "compress": "false"}},
		Resources: container.Resources{
			Memory:     s.Limits.MemoryBytes,
			MemorySwap: s.Limits.MemoryBytes, // no swap beyond the memory limit
			NanoCPUs:   s.Limits.NanoCPUs,
			PidsLimit:  &pids,
		},
		NetworkMode: container.NetworkMode(s.Network),
		Runtime:     s.Runtime,
	}
	return cfg, host
}

// mounts are the engine's mounts of a spec's.
func mounts(ms []backend.Mount) []mount.Mount {
	out := make([]mount.Mount, 0, len(ms))
	for _, m := range ms {
		switch m.Kind {
		case backend.Volume:
			// NoCopy: the image's content at the target is not copied in.
			out = append(out, mount.Mount{Type: mount.TypeVolume, Source: m.Source, Target: m.Target, ReadOnly: m.ReadOnly,
				VolumeOptions: &mount.VolumeOptions{NoCopy: true}})
		default:
			b := mount.Mount{Type: mount.TypeBind, Source: m.Source, Target: m.Target, ReadOnly: m.ReadOnly}
			if m.NonRecursive {
				b.BindOptions = &mount.BindOptions{NonRecursive: true}
			}
			out = append(out, b)
		}
	}
	return out
}
