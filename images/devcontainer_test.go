package images

import (
	"fmt"
	"strings"
	"testing"
)

func TestParseDevcontainer(t *testing.T) {
	t.Run("comments, trailing commas and comment markers inside strings", func(t *testing.T) {
		d, err := ParseDevcontainer(".devcontainer/devcontainer.json", []byte(`{
			// the image
			"image": "golang:1.23", /* block
			comment */ "name": "a // b /* c */",
			"runArgs": ["--privileged", "--network=host",],
			"mounts": ["source=/,target=/host,type=bind"],
			"capAdd": ["SYS_ADMIN"],
		}`))
		if err != nil {
			t.Fatal(err)
		}
		if d.Image != "golang:1.23" || d.Dockerfile != "" {
			t.Fatalf("got %+v", d)
		}
		if got := strings.Join(d.Ignored, ","); got != "capAdd,mounts,runArgs" {
			t.Fatalf("ignored %q", got)
		}
	})
	t.Run("a build's paths are relative to the file, and the Dockerfile to the context", func(t *testing.T) {
		d, err := ParseDevcontainer(".devcontainer/devcontainer.json", []byte(`{"build": {"dockerfile": "Dockerfile", "context": "..", "args": {"V": "1"}, "target": "dev"}}`))
		if err != nil {
			t.Fatal(err)
		}
		if d.Context != "." || d.Dockerfile != ".devcontainer/Dockerfile" || d.Args["V"] != "1" || d.Target != "dev" {
			t.Fatalf("got %+v", d)
		}
		d, err = ParseDevcontainer(".devcontainer/devcontainer.json", []byte(`{"dockerFile": "Dockerfile"}`))
		if err != nil || d.Context != ".devcontainer" || d.Dockerfile != "Dockerfile" {
			t.Fatalf("legacy dockerFile: %+v, %v", d, err)
		}
	})
	for name, data := range map[string]string{
		"a context out of the repository":    `{"build": {"dockerfile": "Dockerfile", "context": "../.."}}`,
		"a Dockerfile out of the repository": `{"build": {"dockerfile": "../../../etc/Dockerfile"}}`,
		"an absolute Dockerfile":             `{"build": {"dockerfile": "/etc/Dockerfile"}}`,
		"a Dockerfile outside its context":   `{"build": {"dockerfile": "../Dockerfile", "context": "."}}`,
		"neither an image nor a build":       `{"name": "x"}`,
		"not JSON":                           `{"image": `,
		"an image that is not a reference":   `{"image": "debian\nRUN id"}`,
		"too many build args":                `{"build": {"dockerfile": "D", "args": {` + manyArgs(40) + `}}}`,
	} {
		t.Run("refuses "+name, func(t *testing.T) {
			if d, err := ParseDevcontainer(".devcontainer/devcontainer.json", []byte(data)); err == nil {
				t.Fatalf("accepted: %+v", d)
			} else if !strings.Contains(err.Error(), ".devcontainer/devcontainer.json") {
				t.Fatalf("the error does not name the file: %v", err)
			}
		})
	}
}

func manyArgs(n int) string {
	var parts []string
	for i := range n {
		parts = append(parts, fmt.Sprintf(`"A%d": "v"`, i))
	}
	return strings.Join(parts, ", ")
}
