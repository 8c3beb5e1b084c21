package benchtab

import (
	"bufio"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"testing"
)

func TestMedianIsTheMiddleOfAnyOrder(t *testing.T) {
	for _, tc := range []struct {
		in   []float64
		want float64
	}{
		{[]float64{3, 1, 2}, 2},
		{[]float64{4, 1, 3, 2}, 2.5},
		{[]float64{7}, 7},
	} {
		if got := Median(tc.in); got != tc.want {
			t.Errorf("Median(%v) = %v, want %v", tc.in, got, tc.want)
		}
	}
	if !math.IsNaN(Median(nil)) {
		t.Error("the median of nothing is a number")
	}
	in := []float64{3, 1, 2}
	Median(in)
	if in[0] != 3 {
		t.Error("Median reordered its argument")
	}
}

func TestARowIsJudgedByItsTargets(t *testing.T) {
	for _, tc := range []struct {
		name        string
		row         Row
		met, judged bool
		target      string
		ratioOK     bool
	}{
		{"a ratio within its target", Row{Ours: 2, Reference: Ref(1), MaxRatio: 3}, true, true, "≤3×", true},
		{"a ratio above its target", Row{Ours: 4, Reference: Ref(1), MaxRatio: 3}, false, true, "≤3×", true},
		{"a figure within its target", Row{Ours: 25, Unit: "MiB", Max: 30}, true, true, "≤30 MiB", false},
		{"a figure above its target", Row{Ours: 31, Unit: "MiB", Max: 30}, false, true, "≤30 MiB", false},
		{"a ratio target with no reference fails", Row{Ours: 1, MaxRatio: 3}, false, true, "≤3×", false},
		{"no target is not judged", Row{Ours: 1, Reference: Ref(2)}, true, false, "-", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			met, judged := tc.row.Met()
			if met != tc.met || judged != tc.judged {
				t.Errorf("Met() = %v, %v; want %v, %v", met, judged, tc.met, tc.judged)
			}
			if got := tc.row.Target(); got != tc.target {
				t.Errorf("Target() = %q, want %q", got, tc.target)
			}
			if _, ok := tc.row.Ratio(); ok != tc.ratioOK {
				t.Errorf("Ratio() ok = %v", ok)
			}
		})
	}
}

func TestRecordAppendsOneLinePerRow(t *testing.T) {
	path := filepath.Join(t.TempDir(), "rows.jsonl")
	t.Setenv(OutEnv, path)
	for _, name := range []string{"first", "second"} {
		if _, err := Record(Row{Name: name, Unit: "ms", Ours: 1, Reps: 5}); err != nil {
			t.Fatal(err)
		}
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var names []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var r Row
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("line %q: %v", sc.Text(), err)
		}
		names = append(names, r.Name)
	}
	if len(names) != 2 || names[0] != "first" || names[1] != "second" {
		t.Fatalf("rows %v", names)
	}
}

func TestRepsComeFromTheEnvironment(t *testing.T) {
	t.Setenv("BENCH_REPS", "7")
	t.Setenv("BENCH_HEAVY_REPS", "nonsense")
	if Reps(5) != 7 || HeavyReps(3) != 3 {
		t.Errorf("Reps %d, HeavyReps %d", Reps(5), HeavyReps(3))
	}
}
