package imagestest

import (
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// HomeProcesses lists the live processes (servers, standbys, the follower,
// runs) whose environment names home as their data directory.
func HomeProcesses(home string) []int {
	entries, _ := os.ReadDir("/proc")
	want := []byte("\x00CODEX_CONNECTOR_HOME=" + home + "\x00")
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		env, err := os.ReadFile(filepath.Join("/proc", e.Name(), "environ"))
		if err != nil || !bytes.Contains(append([]byte{0}, env...), want) {
			continue
		}
		if stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat")); err == nil {
			if f := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+1:])); len(f) > 0 && f[0] == "Z" {
				continue // exited, not yet waited for
			}
		}
		pids = append(pids, pid)
	}
	return pids
}

// KillHomeProcesses ends every process of home at once and waits for them
// to go, so that nothing writes in the home after a test.
func KillHomeProcesses(home string) {
	for i := 0; i < 100; i++ {
		pids := HomeProcesses(home)
		if len(pids) == 0 {
			return
		}
		for _, pid := range pids {
			syscall.Kill(pid, syscall.SIGKILL)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
