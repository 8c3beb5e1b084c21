package runner

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// tailWhole is how tailLog worked before it read from the end back: the
// whole window at once. The reference for the chunked one.
func tailWhole(data []byte, n int) ([]string, bool) {
	start := max(len(data)-tailWindow, 0)
	raw := strings.Split(strings.TrimRight(string(data[start:]), "\n"), "\n")
	if start > 0 && len(raw) > 0 {
		raw = raw[1:]
	}
	var out []string
	more := start > 0
	for i := len(raw) - 1; i >= 0; i-- {
		r := RenderLine(raw[i])
		if r == "" {
			continue
		}
		if len(out) == n {
			more = true
			break
		}
		out = append(out, r)
	}
	slices.Reverse(out)
	return out, more
}

func TestTailReadsFromTheEndAsTheWholeWindowWould(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	line := func(i int) string {
		switch rng.IntN(6) {
		case 0:
			return `{"type":"turn.started"}` // renders to nothing
		case 1:
			return fmt.Sprintf(`{"type":"item.completed","item":{"type":"agent_message","text":"message %d"}}`, i)
		case 2:
			return strings.Repeat("x", tailChunk+rng.IntN(tailChunk)) // longer than a chunk
		case 3:
			return ""
		}
		return fmt.Sprintf("plain line %d", i)
	}
	dir := t.TempDir()
	for _, c := range []struct {
		name  string
		lines int
	}{{"empty", 0}, {"one line", 1}, {"a few", 7}, {"a chunk or so", 40}, {"beyond the window", 400}} {
		for _, end := range []string{"", "\n", "\n\n"} {
			var b strings.Builder
			for i := range c.lines {
				if i > 0 {
					b.WriteByte('\n')
				}
				b.WriteString(line(i))
			}
			b.WriteString(end)
			data := []byte(b.String())
			path := filepath.Join(dir, "log")
			if err := os.WriteFile(path, data, 0o600); err != nil {
				t.Fatal(err)
			}
			for _, n := range []int{1, 3, 50, 500} {
				got, gotMore, err := tailLog(path, n)
				want, wantMore := tailWhole(data, n)
				if err != nil || !slices.Equal(got, want) || gotMore != wantMore {
					t.Errorf("%s (end %q), %d lines: got %d lines (more %v), want %d (more %v), err %v", c.name, end, n, len(got), gotMore, len(want), wantMore, err)
				}
			}
		}
	}
	for _, data := range []string{
		"short\n" + strings.Repeat("y", tailWindow+tailWindow/2),   // a last line longer than the window
		"short\n" + strings.Repeat("y", 3*tailChunk+7) + "\nend\n", // one of several chunks before the end
		strings.Repeat("z", tailWindow-5) + "\nlast",               // a line cut by the window's edge
	} {
		path := filepath.Join(dir, "long")
		if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
		got, gotMore, err := tailLog(path, 5)
		want, wantMore := tailWhole([]byte(data), 5)
		if err != nil || !slices.Equal(got, want) || gotMore != wantMore {
			t.Errorf("a log of %d bytes with long lines: got %d lines (more %v), want %d (more %v), err %v", len(data), len(got), gotMore, len(want), wantMore, err)
		}
	}
	if lines, more, err := tailLog(filepath.Join(dir, "none"), 5); lines != nil || more || err != nil {
		t.Errorf("a log not there yet: %v %v %v", lines, more, err)
	}
}
