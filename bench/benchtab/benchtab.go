// Package benchtab carries the rows of `make bench` from the benchmarks
// that measure them to the report that prints them. A benchmark measures
// its own figure and its reference side by side, alternating, and records
// one row with the medians; the report (bench/report) turns the rows into
// one table and a JSON file. It holds no state: each row is appended, as
// one JSON line, to the file that BENCH_OUT names.
package benchtab

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"slices"
	"strconv"
)

// OutEnv names the file rows are appended to; unset, Record only returns
// the row's line, for the benchmark's own log.
const OutEnv = "BENCH_OUT"

// Row is one line of the table: our figure, what it is compared with, and
// the target it must meet.
type Row struct {
	// Name says what is measured, in the words of the table.
	Name string `json:"name"`
	// Unit is the unit of Ours, Reference and Max: "ms", "s", "MiB", or
	// "%" (of one core).
	Unit string `json:"unit"`
	// Ours is codex-connector's figure: the median of Reps measurements.
	Ours float64 `json:"ours"`
	// Reference is the figure Ours is compared with, measured in the same
	// run, alternating with Ours; nil when the row has none.
	Reference *float64 `json:"reference,omitempty"`
	// ReferenceName says what the reference is.
	ReferenceName string `json:"referenceName,omitempty"`
	// MaxRatio is the target as a ratio: Ours/Reference at most this.
	// Max is the target as a figure: Ours at most this, in Unit. Zero is
	// no target of that kind; a row with neither is for reference only.
	MaxRatio float64 `json:"maxRatio,omitempty"`
	Max      float64 `json:"max,omitempty"`
	// Reps is how many measurements each median is of.
	Reps int `json:"reps"`
	// Note says what a reader needs besides the figures.
	Note string `json:"note,omitempty"`
}

// Ref returns v as a row's Reference.
func Ref(v float64) *float64 { return &v }

// Ratio is Ours/Reference, when the row has a reference.
func (r Row) Ratio() (float64, bool) {
	if r.Reference == nil || *r.Reference == 0 {
		return 0, false
	}
	return r.Ours / *r.Reference, true
}

// Target says the row's target in the words of the table, "-" for none.
func (r Row) Target() string {
	switch {
	case r.MaxRatio > 0 && r.Max > 0:
		return "≤" + num(r.MaxRatio) + "× and ≤" + r.inUnit(r.Max)
	case r.MaxRatio > 0:
		return "≤" + num(r.MaxRatio) + "×"
	case r.Max > 0:
		return "≤" + r.inUnit(r.Max)
	}
	return "-"
}

// inUnit writes v followed by the row's unit ("%" without a space).
func (r Row) inUnit(v float64) string {
	if r.Unit == "%" {
		return num(v) + "%"
	}
	return num(v) + " " + r.Unit
}

// Met says whether the row meets its target; judged is false for a row
// with none.
func (r Row) Met() (met, judged bool) {
	met = true
	if r.MaxRatio > 0 {
		judged = true
		ratio, ok := r.Ratio()
		met = met && ok && ratio <= r.MaxRatio
	}
	if r.Max > 0 {
		judged = true
		met = met && r.Ours <= r.Max
	}
	return met, judged
}

func num(v float64) string { return strconv.FormatFloat(v, 'f', -1, 64) }

// Record appends the row to the file BENCH_OUT names, when it is set, and
// returns the row as one line for the benchmark's log. O_APPEND keeps the
// rows of benchmarks in several packages whole.
func Record(r Row) (string, error) {
	data, err := json.Marshal(r)
	if err != nil {
		return "", fmt.Errorf("encode the row %q: %w", r.Name, err)
	}
	path := os.Getenv(OutEnv)
	if path == "" {
		return string(data), nil
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return "", fmt.Errorf("record the row %q: %w (unset %s to keep rows out of a file)", r.Name, err, OutEnv)
	}
	_, err = f.Write(append(data, '\n'))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return "", fmt.Errorf("record the row %q in %s: %w", r.Name, path, err)
	}
	return string(data), nil
}

// Median is the middle of vs (the mean of the two middle ones for an even
// count); NaN for none.
func Median(vs []float64) float64 {
	if len(vs) == 0 {
		return math.NaN()
	}
	s := slices.Clone(vs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// Reps is how many times a benchmark repeats a measurement: BENCH_REPS,
// or def. HeavyReps is the same for the measurements that take a minute
// or more each (500 MB of log, 50 tasks, the real Codex): BENCH_HEAVY_REPS,
// or def.
func Reps(def int) int { return repsFrom("BENCH_REPS", def) }

// HeavyReps: see Reps.
func HeavyReps(def int) int { return repsFrom("BENCH_HEAVY_REPS", def) }

func repsFrom(env string, def int) int {
	if n, err := strconv.Atoi(os.Getenv(env)); err == nil && n > 0 {
		return n
	}
	return def
}
