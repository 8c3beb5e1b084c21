package runner

import (
	"bufio"
	"encoding/json"
	"io"
	"path"
	"strings"

	"github.com/codex-connector/codex-connector/store"
)

// What ran is read from Codex's own session file (CODEX_HOME/sessions/
// YYYY/MM/DD/rollout-…-<thread>.jsonl), which Codex writes as it goes, so
// that a task killed half-way still says what it ran with: the model and
// effort that applied, asked for or default, and the provider. The file
// was written inside the task's container, so it is read as any such
// file: never through a symlink, with every line and the whole bounded.

// Bounds of reading a session file.
const (
	maxSessionBytes = 64 << 20
	maxSessionLine  = 4 << 20
)

// readRan returns what the session file of thread says ran; zero when
// there is none to read.
func (r *Runner) readRan(id, thread string) store.Ran {
	var ran store.Ran
	if thread == "" || strings.ContainsAny(thread, "/\x00") {
		return ran
	}
	base := r.stateDir(id)
	file := findSession(base, "codex-home/sessions", thread, 0)
	if file == "" {
		return ran
	}
	f, _, err := openRegular(base, base, file)
	if err != nil {
		return ran
	}
	defer f.Close()
	sc := bufio.NewScanner(io.LimitReader(f, maxSessionBytes))
	sc.Buffer(make([]byte, 64<<10), maxSessionLine)
	for sc.Scan() {
		line := sc.Bytes()
		// Only the two kinds of line that say what ran are decoded; the
		// rest (the conversation) can be long.
		head := string(line[:min(len(line), 120)])
		if !strings.Contains(head, `"type":"session_meta"`) && !strings.Contains(head, `"type":"turn_context"`) {
			continue
		}
		var rec struct {
			Type    string `json:"type"`
			Payload struct {
				CLIVersion    string `json:"cli_version"`
				ModelProvider string `json:"model_provider"`
				Model         string `json:"model"`
				Effort        string `json:"effort"`
			} `json:"payload"`
		}
		if json.Unmarshal(line, &rec) != nil {
			continue
		}
		switch rec.Type {
		case "session_meta":
			ran.Provider = clipN(rec.Payload.ModelProvider, maxText)
		case "turn_context":
			// The last turn is this run's: a reply's file begins with the
			// turns of the task it continues.
			ran.Model, ran.Effort = clipN(rec.Payload.Model, maxText), clipN(rec.Payload.Effort, maxText)
		}
	}
	return ran
}

// findSession finds the session file of thread below dir, a few levels
// down at most.
func findSession(base, dir, thread string, depth int) string {
	if depth > 4 {
		return ""
	}
	entries, err := readDirBelow(base, base, dir, func() error { return nil })
	if err != nil {
		return ""
	}
	for _, e := range entries {
		name := e.Name()
		switch {
		case name == "." || name == "..":
		case e.IsDir():
			if f := findSession(base, path.Join(dir, name), thread, depth+1); f != "" {
				return f
			}
		case e.Mode().IsRegular() && strings.HasPrefix(name, "rollout-") && strings.HasSuffix(name, thread+".jsonl"):
			return path.Join(dir, name)
		}
	}
	return ""
}
