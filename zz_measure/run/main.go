// Throwaway: measures a server binary on a home: codex_tasks (limit 20)
// latency, then idle CPU and RSS over 32 s.
package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"time"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"
)

func cpuTicks(pid int) int64 {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
	u, _ := strconv.ParseInt(f[11], 10, 64)
	s, _ := strconv.ParseInt(f[12], 10, 64)
	return u + s
}

func status(pid int, key string) string {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, key+":") {
			return strings.TrimSpace(strings.TrimPrefix(l, key+":"))
		}
	}
	return ""
}

func main() {
	bin, home := os.Args[1], os.Args[2]
	cmd := exec.Command(bin)
	cmd.Env = append(os.Environ(), "CODEX_CONNECTOR_HOME="+home, "CODEX_CONNECTOR_FOLLOW_AFTER_EXIT=false")
	client := sdk.NewClient(&sdk.Implementation{Name: "m", Version: "1"}, nil)
	ctx := context.Background()
	t0 := time.Now()
	session, err := client.Connect(ctx, &sdk.CommandTransport{Command: cmd}, nil)
	if err != nil {
		panic(err)
	}
	fmt.Printf("initialize: %s\n", time.Since(t0))
	pid := cmd.Process.Pid
	var ds []time.Duration
	for range 5 {
		t := time.Now()
		res, err := session.CallTool(ctx, &sdk.CallToolParams{Name: "codex_tasks", Arguments: map[string]any{"limit": 20}})
		if err != nil || res.IsError {
			panic(fmt.Sprint(err, res))
		}
		ds = append(ds, time.Since(t))
	}
	sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
	fmt.Printf("codex_tasks limit 20: median %s (of %v)\n", ds[2], ds)
	fmt.Printf("after the calls: VmRSS %s, VmHWM %s\n", status(pid, "VmRSS"), status(pid, "VmHWM"))
	c0 := cpuTicks(pid)
	time.Sleep(32 * time.Second)
	c1 := cpuTicks(pid)
	fmt.Printf("idle 32 s: CPU %.2f s (%.2f%% of a core), VmRSS %s, VmHWM %s\n", float64(c1-c0)/100, float64(c1-c0)/100/32*100, status(pid, "VmRSS"), status(pid, "VmHWM"))
	session.Close()
	cmd.Wait()
}
