package images

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// aptMirror runs debian-base.sh's apt_mirror on the sources files given,
// as name → content, in that order.
func aptMirror(t *testing.T, files [][2]string) (string, error) {
	t.Helper()
	dir := t.TempDir()
	var paths []string
	for _, f := range files {
		p := filepath.Join(dir, f[0])
		if err := os.WriteFile(p, []byte(f[1]), 0o644); err != nil {
			t.Fatal(err)
		}
		paths = append(paths, p)
	}
	// Only awk on the PATH: sourcing the script must not build anything,
	// and would fail here at once if it tried (no debootstrap, no docker).
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Fatal(err)
	}
	awk, err := exec.LookPath("awk")
	if err != nil {
		t.Fatal(err)
	}
	bin := t.TempDir()
	if err := os.Symlink(awk, filepath.Join(bin, "awk")); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bash, append([]string{"-c", `source "$0" || exit 3; apt_mirror "$@"`, "debian-base.sh"}, paths...)...)
	cmd.Env = []string{"PATH=" + bin}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if stderr.Len() > 0 {
		t.Fatalf("the script said: %s", stderr.String())
	}
	return strings.TrimSpace(string(out)), err
}

// The local Debian base is built from the mirror the machine's apt uses,
// read from its sources in either format; with none, the script fails
// rather than guess one. (The hosts below are reserved names, no mirror's.)
func TestTheDebianBaseComesFromTheMachinesAptMirror(t *testing.T) {
	for _, c := range []struct {
		name  string
		files [][2]string
		want  string
	}{
		{"a deb822 .sources file, past the security archive", [][2]string{{"debian.sources", `Types: deb
URIs: http://security.apt.test/debian-security
Suites: bookworm-security
Components: main

Types: deb
# a comment inside the stanza
URIs: http://apt.test/debian
Suites: bookworm bookworm-updates
Components: main
`}}, "http://apt.test/debian"},
		{"a stanza of sources only, or disabled, is skipped", [][2]string{{"debian.sources", `Types: deb-src
URIs: http://src.apt.test/debian
Suites: bookworm

Enabled: no
Types: deb
URIs: http://off.apt.test/debian
Suites: bookworm

types: deb
uris: https://on.apt.test/debian http://second.apt.test/debian
suites: bookworm
`}}, "https://on.apt.test/debian"},
		{"a one-line sources.list, with options and comments", [][2]string{{"sources.list", `# deb http://commented.apt.test/debian bookworm main
deb-src http://src.apt.test/debian bookworm main
deb http://security.apt.test/debian-security bookworm-security main
deb [arch=amd64 signed-by=/usr/share/keyrings/k.gpg] http://apt.test/debian bookworm main
`}}, "http://apt.test/debian"},
		{"the first file that lists one", [][2]string{{"sources.list", "# nothing here\n"}, {"other.list", "deb http://first.apt.test/debian bookworm main\n"}, {"z.sources", "Types: deb\nURIs: http://later.apt.test/debian\nSuites: bookworm\n"}}, "http://first.apt.test/debian"},
		{"files of other names are not read", [][2]string{{"nodesource.sources.disabled", "Types: deb\nURIs: http://disabled.apt.test/debian\nSuites: bookworm\n"}}, ""},
		{"only security and updates: none", [][2]string{{"debian.sources", "Types: deb\nURIs: http://security.apt.test/debian-security\nSuites: bookworm-security\n"}}, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := aptMirror(t, c.files)
			if c.want == "" {
				if err == nil {
					t.Fatalf("found %q where there is no mirror", got)
				}
				return
			}
			if err != nil || got != c.want {
				t.Fatalf("got %q (%v), want %q", got, err, c.want)
			}
		})
	}
	t.Run("with no mirror the build fails, saying what to do", func(t *testing.T) {
		data, err := os.ReadFile("debian-base.sh")
		if err != nil {
			t.Fatal(err)
		}
		if s := string(data); !strings.Contains(s, "set DEBIAN_MIRROR") || strings.Contains(s, "mirror=${mirror:-") {
			t.Fatal("debian-base.sh has a fallback mirror, or no word of what to do without one")
		}
	})
}
