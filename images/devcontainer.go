package images

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"path"
	"regexp"
	"slices"
	"strings"
)

// DevcontainerFiles are where a repository's dev container file may be,
// relative to its root, in the order the dev container spec looks.
var DevcontainerFiles = []string{".devcontainer/devcontainer.json", ".devcontainer.json"}

// Devcontainer is what codex-connector takes from a dev container file: the
// image, or how to build one. Everything else in the file (runArgs, mounts,
// capAdd, privileged, features, lifecycle commands, …) is ignored: a file in
// the repository never chooses mounts, capabilities or network.
type Devcontainer struct {
	Image string
	// Dockerfile and Context are relative to the repository root (slash
	// separated, never climbing out of it); Dockerfile is relative to
	// Context as the engine wants it. Empty Dockerfile: no build.
	Dockerfile string
	Context    string
	Args       map[string]string
	Target     string
	// Ignored lists the file's settings that were left out.
	Ignored []string
}

// Bounds of what is taken from a dev container file: it ends up in the
// task's record and the caller's view.
const (
	maxIgnored = 12
	maxArgs    = 32
	maxPathLen = 1024
)

var (
	settingName = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_.-]{0,63}$`)
	argName     = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
)

// used are the settings of a dev container file codex-connector reads, or
// that carry no behaviour.
var used = []string{"image", "build", "dockerFile", "context", "name", "$schema", "customizations"}

// ParseDevcontainer reads a dev container file (JSON with comments and
// trailing commas), found at file (relative to the repository root).
func ParseDevcontainer(file string, data []byte) (Devcontainer, error) {
	data = stripJSONC(data)
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(data, &raw); err != nil {
		return Devcontainer{}, fmt.Errorf("read %s: %w", file, err)
	}
	var f struct {
		Image      string `json:"image"`
		DockerFile string `json:"dockerFile"`
		Context    string `json:"context"`
		Build      struct {
			Dockerfile string            `json:"dockerfile"`
			Context    string            `json:"context"`
			Args       map[string]string `json:"args"`
			Target     string            `json:"target"`
		} `json:"build"`
	}
	if err := json.Unmarshal(data, &f); err != nil {
		return Devcontainer{}, fmt.Errorf("read %s: %w", file, err)
	}
	d := Devcontainer{Image: strings.TrimSpace(f.Image), Args: f.Build.Args, Target: f.Build.Target}
	for _, k := range slices.Sorted(maps.Keys(raw)) {
		if slices.Contains(used, k) {
			continue
		}
		// Named as the spec names its settings, and a few: the list is
		// shown to the caller, and a file must not write into it at will.
		if len(d.Ignored) == maxIgnored || !settingName.MatchString(k) {
			d.Ignored = append(d.Ignored, "and more")
			break
		}
		d.Ignored = append(d.Ignored, k)
	}
	if d.Image != "" {
		if err := CheckRef(d.Image); err != nil {
			return d, fmt.Errorf("%s: image: %w", file, err)
		}
	}
	if len(d.Args) > maxArgs {
		return d, fmt.Errorf("%s: build.args has %d entries; codex-connector takes at most %d", file, len(d.Args), maxArgs)
	}
	for k, v := range d.Args {
		if len(k) > maxPathLen || len(v) > maxPathLen || !argName.MatchString(k) {
			return d, fmt.Errorf("%s: build.args %.40q is not a name of letters, digits and _, or it or its value is longer than %d bytes", file, k, maxPathLen)
		}
	}
	if len(d.Target) > maxPathLen || len(f.Build.Dockerfile)+len(f.Build.Context)+len(f.DockerFile)+len(f.Context) > maxPathLen {
		return d, fmt.Errorf("%s: build paths and target must be shorter than %d bytes", file, maxPathLen)
	}
	dockerfile, context := f.Build.Dockerfile, f.Build.Context
	if dockerfile == "" {
		dockerfile, context = f.DockerFile, f.Context
	}
	if dockerfile == "" {
		if d.Image == "" {
			return d, fmt.Errorf("%s names neither an image nor a build.dockerfile", file)
		}
		return d, nil
	}
	// Paths in the file are relative to the file's directory.
	dir := path.Dir(file)
	if context == "" {
		context = "."
	}
	for _, p := range []string{context, dockerfile} {
		if path.IsAbs(p) {
			return d, fmt.Errorf("%s: %s is an absolute path; the build must stay inside the repository", file, p)
		}
	}
	ctxDir, err := inRepo(file, path.Join(dir, context))
	if err != nil {
		return d, err
	}
	df, err := inRepo(file, path.Join(dir, dockerfile))
	if err != nil {
		return d, err
	}
	rel, ok := strings.CutPrefix(df, ctxDir+"/")
	if ctxDir == "." {
		rel, ok = df, true
	}
	if !ok {
		return d, fmt.Errorf("%s: build.dockerfile %s is outside build.context %s", file, dockerfile, context)
	}
	d.Context, d.Dockerfile = ctxDir, rel
	return d, nil
}

// inRepo cleans p (relative to the repository root) and refuses one that
// climbs out of the repository.
func inRepo(file, p string) (string, error) {
	c := path.Clean(p)
	if c == ".." || strings.HasPrefix(c, "../") {
		return "", fmt.Errorf("%s: %s is outside the repository; the build must stay inside it", file, p)
	}
	return c, nil
}

// ErrNoDevcontainer is returned when a repository has no dev container file.
var ErrNoDevcontainer = errors.New("no dev container file")

// stripJSONC turns JSON with comments (// and /* */) and trailing commas,
// as dev container files are written, into JSON. Strings are kept as they
// are, comment markers inside them included.
func stripJSONC(in []byte) []byte {
	out := make([]byte, 0, len(in))
	for i := 0; i < len(in); i++ {
		c := in[i]
		switch {
		case c == '"':
			j := i + 1
			for j < len(in) && in[j] != '"' {
				if in[j] == '\\' {
					j++
				}
				j++
			}
			if j >= len(in) {
				return append(out, in[i:]...) // unterminated: json says so
			}
			out = append(out, in[i:j+1]...)
			i = j
		case c == '/' && i+1 < len(in) && in[i+1] == '/':
			for i < len(in) && in[i] != '\n' {
				i++
			}
			if i < len(in) {
				out = append(out, '\n')
			}
		case c == '/' && i+1 < len(in) && in[i+1] == '*':
			end := bytes.Index(in[i+2:], []byte("*/"))
			if end < 0 {
				return out
			}
			out = append(out, ' ')
			i += 2 + end + 1
		case c == ']' || c == '}':
			// Drop a comma that only whitespace separates from the close.
			k := len(out) - 1
			for k >= 0 && strings.IndexByte(" \t\r\n", out[k]) >= 0 {
				k--
			}
			if k >= 0 && out[k] == ',' {
				out = append(out[:k], out[k+1:]...)
			}
			out = append(out, c)
		default:
			out = append(out, c)
		}
	}
	return out
}
