package runner

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/codex-connector/codex-connector/internal/hostfs/hostfstest"
	"github.com/codex-connector/codex-connector/store"
)

// Tasks change hands whenever a Claude Code window opens or closes. The
// stall clock goes with them: a task that stalls ends at its stall timeout
// even when no one follower follows it that long.
func TestTheStallClockSurvivesHandovers(t *testing.T) {
	const stall = 6 * time.Second
	mod := func(c *Config) { c.StallTimeout = stall }
	first := newHarness(t, mod)
	task, err := first.Start(context.Background(), Spec{Prompt: "cmd 0 ls; reconnect 0 300ms", WorkingDirectory: newRepo(t)})
	hostfstest.Must(t, err)
	first.waitRunning(t, task.ID)
	cur, handovers := first, 0
	for ; handovers < 8; handovers++ {
		// Less than the stall timeout with each follower.
		time.Sleep(stall * 2 / 3)
		if got, err := cur.Get(task.ID); err == nil && got.Status.Final() {
			break
		}
		cur.stop()
		if _, err := cur.HandOver(); err != nil {
			t.Fatal(err)
		}
		cur = newHarness(t, func(c *Config) { mod(c); c.Home = first.home })
	}
	final := cur.waitFinal(t, task.ID)
	if handovers == 8 {
		t.Fatalf("the task was handed over %d times without stalling: each follower started the stall clock afresh (it ended %s: %s)", handovers, final.Status, final.Error)
	}
	if final.Status != store.Failed || !strings.Contains(final.Error, "stalled") {
		t.Fatalf("status %s error %q", final.Status, final.Error)
	}
	t.Logf("stalled after %d handovers", handovers)
}
