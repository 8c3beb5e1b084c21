// Command report prints the table of `make bench` from the rows the
// benchmarks recorded (bench/benchtab), and writes it as JSON with the
// machine it ran on.
//
//	go run ./bench/report ROWS.jsonl [OUT.json]
//
// OUT.json defaults to $BENCH_JSON, then bench/results.json. A row recorded
// twice (a benchmark that ran again with a larger b.N) counts once, as its
// last recording. Rows with a target come first. Targets not met are shown, never an error: benchmarks
// fail only when what they measure does not work.
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"runtime"
	"sort"
	"strings"
	"time"

	"github.com/codex-connector/codex-connector/bench/benchtab"
)

func main() {
	if err := run(os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "bench report:", err)
		os.Exit(1)
	}
}

// Machine is where the rows were measured.
type Machine struct {
	Date   string `json:"date"`
	CPUs   int    `json:"cpus"`
	CPU    string `json:"cpu,omitempty"`
	Memory string `json:"memory,omitempty"`
	Docker string `json:"docker,omitempty"`
	Kernel string `json:"kernel,omitempty"`
	Go     string `json:"go"`
}

// judged is a row as the JSON file holds it: the recorded row and what
// the table says of it.
type judged struct {
	benchtab.Row
	Ratio  *float64 `json:"ratio,omitempty"`
	Target string   `json:"target"`
	// Met is "met", "not met", or "-" for a row with no target.
	Met string `json:"met"`
}

func run(args []string, w io.Writer) error {
	if len(args) < 1 || len(args) > 2 {
		return fmt.Errorf("usage: report ROWS.jsonl [OUT.json]")
	}
	out := os.Getenv("BENCH_JSON")
	if len(args) == 2 {
		out = args[1]
	}
	if out == "" {
		out = "bench/results.json"
	}
	rows, err := readRows(args[0])
	if err != nil {
		return err
	}
	if len(rows) == 0 {
		return fmt.Errorf("%s holds no rows: did the benchmarks run (go test -bench . with BENCH_OUT=%s)?", args[0], args[0])
	}
	var table []judged
	for _, r := range rows {
		j := judged{Row: r, Target: r.Target(), Met: "-"}
		if ratio, ok := r.Ratio(); ok {
			j.Ratio = &ratio
		}
		if met, ok := r.Met(); ok {
			j.Met = map[bool]string{true: "met", false: "not met"}[met]
		}
		table = append(table, j)
	}
	// The rows with a target first, each group in the order recorded.
	sort.SliceStable(table, func(i, j int) bool { return table[i].Met != "-" && table[j].Met == "-" })
	m := machine()
	printTable(w, table, m)
	data, err := json.MarshalIndent(struct {
		Machine Machine  `json:"machine"`
		Rows    []judged `json:"rows"`
	}{m, table}, "", "  ")
	if err != nil {
		return fmt.Errorf("encode the results: %w", err)
	}
	if err := os.WriteFile(out, append(data, '\n'), 0o644); err != nil {
		return fmt.Errorf("write the results: %w", err)
	}
	fmt.Fprintf(w, "\nwritten to %s\n", out)
	return nil
}

// readRows reads the rows in the order they were first recorded, each as
// it was last recorded.
func readRows(path string) ([]benchtab.Row, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read the rows: %w", err)
	}
	defer f.Close()
	var rows []benchtab.Row
	at := map[string]int{}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for n := 1; sc.Scan(); n++ {
		if len(bytes.TrimSpace(sc.Bytes())) == 0 {
			continue
		}
		var r benchtab.Row
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			return nil, fmt.Errorf("%s:%d: not a row: %w", path, n, err)
		}
		if i, ok := at[r.Name]; ok {
			rows[i] = r
			continue
		}
		at[r.Name] = len(rows)
		rows = append(rows, r)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read the rows: %w", err)
	}
	return rows, nil
}

// printTable writes the table as Markdown, which reads as well in a terminal
// as in bench/README.md, then what each reference is.
func printTable(w io.Writer, table []judged, m Machine) {
	fmt.Fprintln(w, "| # | measurement | ours | reference | ratio | target | met |")
	fmt.Fprintln(w, "|---|---|---:|---:|---:|---|---|")
	for i, j := range table {
		ref, ratio := "-", "-"
		if j.Reference != nil {
			ref = value(*j.Reference, j.Unit)
		}
		if j.Ratio != nil {
			ratio = fmt.Sprintf("%.2f×", *j.Ratio)
			if *j.Ratio < 0.01 {
				ratio = fmt.Sprintf("%.2g×", *j.Ratio)
			}
		}
		fmt.Fprintf(w, "| %d | %s | %s | %s | %s | %s | %s |\n", i+1, j.Name, value(j.Ours, j.Unit), ref, ratio, j.Target, j.Met)
	}
	fmt.Fprintln(w)
	for i, j := range table {
		var parts []string
		if j.ReferenceName != "" {
			parts = append(parts, "reference: "+j.ReferenceName)
		}
		if j.Reps == 1 {
			parts = append(parts, "one measurement")
		} else {
			parts = append(parts, fmt.Sprintf("median of %d", j.Reps))
		}
		if j.Note != "" {
			parts = append(parts, j.Note)
		}
		fmt.Fprintf(w, "%d. %s\n", i+1, strings.Join(parts, "; "))
	}
	fmt.Fprintf(w, "\nMachine: %d CPUs (%s), %s memory, Docker %s, kernel %s, %s, %s\n", m.CPUs, m.CPU, m.Memory, m.Docker, m.Kernel, m.Go, m.Date)
}

// value writes v in its unit with three significant figures or so.
func value(v float64, unit string) string {
	if math.IsNaN(v) {
		return "?"
	}
	var s string
	switch a := math.Abs(v); {
	case a >= 100:
		s = fmt.Sprintf("%.0f", v)
	case a >= 10:
		s = fmt.Sprintf("%.1f", v)
	case a >= 1:
		s = fmt.Sprintf("%.2f", v)
	default:
		s = fmt.Sprintf("%.3f", v)
	}
	if unit == "%" {
		return s + "%"
	}
	return s + " " + unit
}

func machine() Machine {
	m := Machine{Date: time.Now().UTC().Format(time.RFC3339), CPUs: runtime.NumCPU(), Go: runtime.Version()}
	if data, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(data), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPU = strings.TrimSpace(v)
				break
			}
		}
	}
	if data, err := os.ReadFile("/proc/meminfo"); err == nil {
		for _, line := range strings.Split(string(data), "\n") {
			var kb int64
			if _, err := fmt.Sscanf(line, "MemTotal: %d kB", &kb); err == nil {
				m.Memory = fmt.Sprintf("%.1f GiB", float64(kb)/(1<<20))
				break
			}
		}
	}
	if data, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(data))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if out, err := exec.CommandContext(ctx, "docker", "version", "--format", "{{.Server.Version}} (API {{.Server.APIVersion}})").Output(); err == nil {
		m.Docker = strings.TrimSpace(string(out))
	}
	return m
}
