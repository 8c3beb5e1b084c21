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
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := safeText(c.in); got != c.want {
				t.Errorf("safeText(%q) = %q, want %q", c.in, got, c.want)
			}
		})
	}
	t.Run("a C1 control split across two writes is caught", func(t *testing.T) {
		var b strings.Builder
		w := &termSafe{w: &b}
		w.Write([]byte("x\xc2"))
		w.Write([]byte("\x9by"))
		if got := b.String(); got != `x\u009by` {
			t.Errorf("got %q", got)
		}
	})
}
