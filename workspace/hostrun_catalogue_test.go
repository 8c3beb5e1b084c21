package workspace

import (
	"bufio"
	"os"
	"strings"
	"testing"
)

// TestHostRunCatalogue walks a catalogue of files that host tools run or
// obey, from many ecosystems, and of files they do not, through the rules:
// a gap here is closed by a family in hostrun_rules.go, not by a name.
func TestHostRunCatalogue(t *testing.T) {
	f, err := os.Open("testdata/hostrun-catalogue.txt")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var runs, inert int
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line, what, _ := strings.Cut(sc.Text(), "#")
		fields := strings.Fields(line)
		if len(fields) == 0 {
			continue
		}
		if len(fields) != 2 || fields[0] != "run" && fields[0] != "inert" {
			t.Fatalf("catalogue line %d: %q is not `run|inert <path>`", n, sc.Text())
		}
		want := fields[0] == "run"
		if want {
			runs++
		} else {
			inert++
		}
		if got := isHostRun(fields[1]); got != want {
			t.Errorf("line %d: isHostRun(%q) = %v, want %v (%s)", n, fields[1], got, want, strings.TrimSpace(what))
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	// A catalogue that failed to load would pass every check above.
	if runs < 150 || inert < 10 {
		t.Fatalf("the catalogue holds %d host-run and %d inert paths; it should hold at least 150 and 10", runs, inert)
	}
}
