package runner

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path"
	"regexp"
	"strings"

	"github.com/codex-connector/codex-connector/backend"
	"github.com/codex-connector/codex-connector/store"
)

// What ran is read from Codex's own session file (CODEX_HOME/sessions/
// YYYY/MM/DD/rollout-…-<thread>.jsonl), which Codex writes as it goes, so
// that a task killed half-way still says what it ran with: the model and
// effort that applied, asked for or default, and the provider. The file
// was written inside the task's container, so it is read as any such
// file: never through a symlink, with every line and the whole bounded;
// and what it says is shown as what the session file reports.

// Bounds of reading a session file.
const (
	maxSessionBytes = 64 << 20
	maxSessionLine  = 4 << 20
)

// readRan returns what the session file of thread says ran; zero when
// there is none to read.
func (r *Runner) readRan(ctx context.Context, id, thread string, from int64) store.Ran {
	var ran store.Ran
	files, err := r.files(id)
	if err != nil {
		return ran
	}
	file, err := findSession(ctx, files, "codex-home/sessions", thread)
	if err != nil {
		return ran
	}
	f, st, err := files.Open(ctx, file, 0)
	if err != nil {
		return ran
	}
	// Codex writes the session's metadata (its provider) as the first line.
	head := bufio.NewScanner(io.LimitReader(f, maxSessionLine))
	head.Buffer(make([]byte, 64<<10), maxSessionLine)
	if head.Scan() {
		scanRan(head.Bytes(), &ran)
	}
	f.Close()
	// The last turns are this run's, so the end of a long file is read;
	// and of a reply's, only what follows the copy of the earlier task's.
	start := max(from, st.Size-maxSessionBytes)
	f, _, err = files.Open(ctx, file, start)
	if err != nil {
		return ran
	}
	defer f.Close()
	sc := bufio.NewScanner(io.LimitReader(f, maxSessionBytes))
	sc.Buffer(make([]byte, 64<<10), maxSessionLine)
	for sc.Scan() {
		scanRan(sc.Bytes(), &ran)
	}
	// A line too long to be one Codex writes ends the scan: what was read
	// before it stands, nothing after it is guessed.
	return ran
}

// scanRan takes from one line of a session file what it says ran.
func scanRan(line []byte, ran *store.Ran) {
	// Only the two kinds of line that say what ran are decoded; the rest
	// (the conversation) can be long.
	head := string(line[:min(len(line), 120)])
	if !strings.Contains(head, `"type":"session_meta"`) && !strings.Contains(head, `"type":"turn_context"`) {
		return
	}
	var rec struct {
		Type    string `json:"type"`
		Payload struct {
			ModelProvider string `json:"model_provider"`
			Model         string `json:"model"`
			Effort        string `json:"effort"`
		} `json:"payload"`
	}
	if json.Unmarshal(line, &rec) != nil {
		return
	}
	switch rec.Type {
	case "session_meta":
		ran.Provider = clipN(rec.Payload.ModelProvider, maxText)
	case "turn_context":
		// The last turn is this run's.
		ran.Model, ran.Effort = clipN(rec.Payload.Model, maxText), clipN(rec.Payload.Effort, maxText)
	}
}

// findSession finds the session file of thread in the task's state.
func (r *Runner) findSession(ctx context.Context, id, thread string) (string, error) {
	files, err := r.files(id)
	if err != nil {
		return "", err
	}
	return findSession(ctx, files, "codex-home/sessions", thread)
}

// findSession finds the session file of thread below dir of files
// (sessions/YYYY/MM/DD/rollout-…-<thread>.jsonl), looking at a bounded
// number of entries: the directory is the task's to fill.
func findSession(ctx context.Context, files backend.Files, dir, thread string) (string, error) {
	if !sessionID.MatchString(thread) {
		return "", fmt.Errorf("%q is not a Codex session id", thread)
	}
	seen := 0
	var find func(dir string, depth int) (string, error)
	find = func(dir string, depth int) (string, error) {
		entries, err := files.ReadDir(ctx, dir, func() error {
			if seen += 1000; seen > maxSessionEntries {
				return fmt.Errorf("more than %d entries below %s", maxSessionEntries, dir)
			}
			return nil
		})
		if err != nil {
			return "", err
		}
		for _, e := range entries {
			name := e.Name()
			switch {
			case name == "." || name == "..":
			case e.IsDir() && depth < 3:
				if f, err := find(path.Join(dir, name), depth+1); f != "" || err != nil {
					return f, err
				}
			case depth == 3 && e.Mode().IsRegular() && strings.HasPrefix(name, "rollout-") && strings.HasSuffix(name, "-"+thread+".jsonl"):
				return path.Join(dir, name), nil
			}
		}
		return "", nil
	}
	f, err := find(dir, 0)
	if err == nil && f == "" {
		err = fmt.Errorf("no session file of %s: %w", thread, os.ErrNotExist)
	}
	return f, err
}

// maxSessionEntries bounds what is looked at to find a session file.
const maxSessionEntries = 20000

// sessionID is the form of a Codex session id (a UUID): nothing else is
// used to name a file or a session to resume.
var sessionID = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)
