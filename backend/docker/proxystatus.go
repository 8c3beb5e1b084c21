package docker

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/pkg/stdcopy"
)

// ProxyStatus says how the egress proxy container name stands, changing
// nothing: whether binary, which would run it, can (a dynamically linked
// one cannot run FROM scratch), and whether the proxy runs or keeps
// failing. A proxy not running is no fault: the first restricted task
// starts it.
//
// versionLabel is the label that names the version of codex-connector that
// started it, and version this one's.
func ProxyStatus(ctx context.Context, eng interface {
	ContainerInspect(ctx context.Context, id string) (container.InspectResponse, error)
}, name, binary, versionLabel, version string) (string, error) {
	if err := CheckStatic(binary); err != nil {
		return "", err
	}
	info, err := eng.ContainerInspect(ctx, name)
	if cerrdefs.IsNotFound(err) {
		return name + " is not running; the first read-only or workspace-write task starts it", nil
	}
	if err != nil {
		return "", Error("inspect the egress proxy", err)
	}
	st := info.State
	if st == nil {
		return "", fmt.Errorf("the egress proxy %s has no state — `docker rm -f %s` lets the next task start it afresh", name, name)
	}
	// Stopped or being removed (a follower that exits removes it) is no
	// fault; restarting, dead or out of memory is.
	failing := st.Restarting || st.Dead || st.OOMKilled || st.Status == "exited" && info.RestartCount > 0
	if !st.Running && !failing {
		return fmt.Sprintf("%s is %s; the first read-only or workspace-write task starts it", name, st.Status), nil
	}
	if failing {
		status := fmt.Sprintf("%s (exit code %d", st.Status, st.ExitCode)
		if st.OOMKilled {
			status += ", out of memory"
		}
		status += ")"
		return "", fmt.Errorf("the egress proxy %s is %s after %d restarts — see `docker logs %s`; `docker rm -f %s` lets the next task start it afresh", name, status, info.RestartCount, name, name)
	}
	since := st.StartedAt
	if t, err := time.Parse(time.RFC3339Nano, since); err == nil {
		since = t.Local().Format("2006-01-02 15:04")
	}
	out := fmt.Sprintf("%s runs (since %s", name, since)
	if info.RestartCount > 0 {
		out += fmt.Sprintf(", after %d restarts", info.RestartCount)
	}
	out += ")"
	if info.Config != nil && info.Config.Labels[versionLabel] != version {
		out += fmt.Sprintf("; codex-connector %s started it, and the next task replaces it with this one's", info.Config.Labels[versionLabel])
	}
	return out, nil
}

// ProxyTail says how the proxy stands and what it last printed, for a
// task it did not serve: its own words say why ("permission denied" on a
// directory its user cannot open), where the wait alone says only that
// time passed.
func (h *Helpers) ProxyTail(ctx context.Context) string {
	name := h.cfg.ProxyName
	info, err := h.b.eng.ContainerInspect(ctx, name)
	if err != nil {
		return fmt.Sprintf("the proxy container %s is not there (%v)", name, Classify(err))
	}
	state := "its container is " + string(info.State.Status)
	if info.State.Status == container.StateExited || info.State.Restarting {
		state += fmt.Sprintf(" (exit code %d, restarted %d times)", info.State.ExitCode, info.RestartCount)
	}
	rc, err := h.b.eng.ContainerLogs(ctx, name, container.LogsOptions{ShowStdout: true, ShowStderr: true, Tail: "10"})
	if err != nil {
		return state + "; its log cannot be read: " + err.Error()
	}
	defer rc.Close()
	var out bytes.Buffer
	_, _ = stdcopy.StdCopy(&limitedBuffer{&out, 4 << 10}, &limitedBuffer{&out, 4 << 10}, rc)
	if text := strings.TrimSpace(out.String()); text != "" {
		return state + "; it last said: " + strings.Join(strings.Fields(text), " ")
	}
	return state + "; it said nothing"
}
