package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/codex-connector/codex-connector/images/imagestest"
)

func TestTermSafeShowsControlsAsText(t *testing.T) {
	for _, c := range []struct{ name, in, want string }{
		{"plain text and UTF-8 pass", "héllo → wörld\tok\n", "héllo → wörld\tok\n"},
		{"a title escape is shown, not sent", "\x1b]0;pwned\x07", "^[]0;pwned^G"},
		{"clearing the screen", "\x1b[2J\x1b[H", "^[[2J^[[H"},
		{"a carriage return cannot overwrite a line", "safe\rEVIL", "safe^MEVIL"},
		{"C1 controls (CSI as U+009B)", "a\u009b31mb", `a\u{9b}31mb`},
		{"DEL", "a\x7fb", "a^?b"},
		{"0xC2 before a printable character stays", "\u00e9\u00a0x", "\u00e9\u00a0x"},
		{"a lone C1 byte (not UTF-8) is shown, not sent", "a\x9b2Jb\x9d0;T\x9c", `a\x9b2Jb\x9d0;T\x9c`},
		{"a character cut at the end is shown as bytes", "ab\xe6\x97", `ab\xe6\x97`},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := safeText(c.in); got != c.want {
				t.Errorf("safeText(%q) = %q, want %q", c.in, got, c.want)
			}
		})
	}
	t.Run("characters split across two writes are whole", func(t *testing.T) {
		var b strings.Builder
		w := &termSafe{w: &b}
		w.Write([]byte("x\xc2"))
		w.Write([]byte("\x9by\xe6\x97"))
		w.Write([]byte("\xa5z"))
		if got := b.String(); got != `x\u{9b}y日z` {
			t.Errorf("got %q", got)
		}
	})
}

// Every family of characters that changes what a person sees without being
// seen itself is shown as its code point, so that a name reads as what it
// is: "invoice\u{202e}fdp.exe", not "invoiceexe.pdf".
func TestTermSafeShowsInvisibleCharacters(t *testing.T) {
	for _, c := range []struct{ name, in, want string }{
		{"a right-to-left override", "invoice\u202efdp.exe", `invoice\u{202e}fdp.exe`},
		{"bidirectional embeddings and overrides", "\u202a\u202b\u202c\u202d", `\u{202a}\u{202b}\u{202c}\u{202d}`},
		{"bidirectional isolates", "a\u2066b\u2067c\u2068d\u2069", `a\u{2066}b\u{2067}c\u{2068}d\u{2069}`},
		{"bidirectional marks", "\u200e\u200f\u061c", `\u{200e}\u{200f}\u{61c}`},
		{"zero-width space, non-joiner and joiner", "pay\u200bpal\u200c\u200d", `pay\u{200b}pal\u{200c}\u{200d}`},
		{"word joiner and invisible operators", "\u2060\u2061\u2062\u2063\u2064", `\u{2060}\u{2061}\u{2062}\u{2063}\u{2064}`},
		{"the byte order mark", "\ufeffmain.go", `\u{feff}main.go`},
		{"the Mongolian vowel separator", "a\u180eb", `a\u{180e}b`},
		{"the soft hyphen", "pass\u00adwd", `pass\u{ad}wd`},
		{"the combining grapheme joiner", "a\u034fb", `a\u{34f}b`},
		{"a Hangul filler, blank where it stands", "x\u3164y", `x\u{3164}y`},
		{"tag characters, which carry hidden ASCII", "ok\U000e0001\U000e0068\U000e007f", `ok\u{e0001}\u{e0068}\u{e007f}`},
		{"variation selectors on letters", "a\ufe0fb\U000e0100", `a\u{fe0f}b\u{e0100}`},
		{"line and paragraph separators", "one\u2028two\u2029three", `one\u{2028}two\u{2029}three`},
		{"private use", "\ue000\U000f0000", `\u{e000}\u{f0000}`},
		{"unassigned and noncharacters", "\u0378\ufdd0\U0010ffff", `\u{378}\u{fdd0}\u{10ffff}`},
		{"interlinear annotation", "\ufff9a\ufffab\ufffb", `\u{fff9}a\u{fffa}b\u{fffb}`},
		{"an emoji's presentation selector is seen, and stays", "\u26a0\ufe0f careful \u2764\ufe0e", "\u26a0\ufe0f careful \u2764\ufe0e"},
		{"a second selector after a symbol only hides", "\u26a0\ufe0f\ufe0f", "\u26a0\ufe0f\\u{fe0f}"},
		{"what people write stays: scripts, accents, marks, wide text, spaces", "e\u0301 \u05e9\u05dc\u05d5\u05dd \u0645\u0631\u062d\u0628\u0627 \u65e5\u672c \u00a0\u2003 \U0001f600",
			"e\u0301 \u05e9\u05dc\u05d5\u05dd \u0645\u0631\u062d\u0628\u0627 \u65e5\u672c \u00a0\u2003 \U0001f600"},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := safeText(c.in); got != c.want {
				t.Errorf("safeText(%+q) = %q, want %q", c.in, got, c.want)
			}
		})
	}
	t.Run("a selector after a symbol split across writes stays", func(t *testing.T) {
		var b strings.Builder
		w := &termSafe{w: &b}
		w.Write([]byte("\u26a0"))
		w.Write([]byte("\ufe0f"[:1]))
		w.Write([]byte("\ufe0f"[1:]))
		if got := b.String(); got != "\u26a0\ufe0f" {
			t.Errorf("got %+q", got)
		}
	})
}

func TestFitWidthKeepsTheStatusLineOnOneRow(t *testing.T) {
	for _, c := range []struct {
		text    string
		columns int
		want    string
	}{
		{"short", 10, "short"},
		{"exactly10c", 10, "exactly10c"},
		{"one too long", 11, "one too lo…"},
		{"日本語のテキスト", 8, "日本語…"},
	} {
		if got := fitWidth(c.text, c.columns); got != c.want {
			t.Errorf("fitWidth(%q, %d) = %q, want %q", c.text, c.columns, got, c.want)
		}
	}
}

// A task names files so that they read as others: "invoice<RLO>fdp.exe"
// shows as "invoiceexe.pdf", "pay<ZWSP>pal.txt" as "paypal.txt". Whatever
// the command line prints of them, at a terminal, piped or as JSON, shows
// that something is there, and the JSON still decodes to the name itself.
func TestAFileNameShowsWhatItIs(t *testing.T) {
	home, repo := cliHome(t), imagestest.Repo(t)
	env := cliEnv(t, home)
	rlo, zwsp := "invoice\u202efdp.exe", "pay\u200bpal.txt"
	res := cli(t, env, repo, "run", "write "+rlo+" x; write "+zwsp+" x; say wrote "+rlo)
	if res.code != 0 {
		t.Fatalf("run: %s", res)
	}
	// The hostile names are real: the task made them in the repository.
	for _, name := range []string{rlo, zwsp} {
		if _, err := os.Stat(filepath.Join(repo, name)); err != nil {
			t.Fatalf("the task did not make %+q: %v", name, err)
		}
	}
	shown := []string{`invoice\u{202e}fdp.exe`, `pay\u{200b}pal.txt`}
	noneRaw := func(what, out string) {
		t.Helper()
		if strings.ContainsAny(out, "\u202e\u200b") {
			t.Errorf("%s printed an invisible character as it is:\n%+q", what, out)
		}
	}
	for _, want := range append(shown, "Files changed: ", "Result:\nwrote "+shown[0]) {
		if !strings.Contains(res.stdout, want) {
			t.Errorf("run's output lacks %q:\n%s", want, res.stdout)
		}
	}
	noneRaw("run", res.stdout)
	id := taskIDIn(t, res.stdout)

	status := cli(t, env, "/", "status", id)
	for _, want := range shown {
		if !strings.Contains(status.stdout, want) {
			t.Errorf("status lacks %q:\n%s", want, status.stdout)
		}
	}
	noneRaw("status", status.stdout)

	term := inTerminal(t, env, "/", "status", id)
	term.wait()
	if !strings.Contains(term.output(), shown[0]) {
		t.Errorf("status on a terminal lacks %q:\n%q", shown[0], term.output())
	}
	noneRaw("status on a terminal", term.output())

	js := cli(t, env, "/", "status", "--json", id)
	noneRaw("status --json", js.stdout)
	var v struct {
		FilesChanged []string `json:"filesChanged"`
	}
	if err := json.Unmarshal([]byte(js.stdout), &v); err != nil || !slices.Contains(v.FilesChanged, rlo) || !slices.Contains(v.FilesChanged, zwsp) {
		t.Errorf("status --json: %v, files %+q\n%s", err, v.FilesChanged, js.stdout)
	}
}
