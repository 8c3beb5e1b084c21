package main

import (
	"strings"
	"testing"
)

func TestTermSafeShowsControlsAsText(t *testing.T) {
	for _, c := range []struct{ name, in, want string }{
		{"plain text and UTF-8 pass", "héllo → wörld\tok\n", "héllo → wörld\tok\n"},
		{"a title escape is shown, not sent", "\x1b]0;pwned\x07", "^[]0;pwned^G"},
		{"clearing the screen", "\x1b[2J\x1b[H", "^[[2J^[[H"},
		{"a carriage return cannot overwrite a line", "safe\rEVIL", "safe^MEVIL"},
		{"C1 controls (CSI as U+009B)", "a\u009b31mb", `a\u009b31mb`},
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
		if got := b.String(); got != `x\u009by日z` {
			t.Errorf("got %q", got)
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
