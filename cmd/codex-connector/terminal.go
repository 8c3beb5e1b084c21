package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/sys/unix"
)

// isTerminal says whether f is a terminal a person reads.
func isTerminal(f *os.File) bool {
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

// terminalWidth is the width of the terminal f, or 80 when unknown.
func terminalWidth(f *os.File) int {
	ws, err := unix.IoctlGetWinsize(int(f.Fd()), unix.TIOCGWINSZ)
	if err != nil || ws.Col == 0 {
		return 80
	}
	return int(ws.Col)
}

// statusLine is one line at the bottom of a terminal that is rewritten in
// place, with the lines of the log printed above it. On anything but a
// terminal it shows nothing, and lines are printed as they are.
type statusLine struct {
	out   io.Writer // where lines go: through termSafe on a terminal
	term  io.Writer // the terminal itself, for the status line's escapes; nil when none
	width int
	shown string // the text on screen, "" when none is
}

// println prints a line above the status line.
func (s *statusLine) println(line string) {
	s.clear()
	fmt.Fprintln(s.out, line)
}

// show replaces the status line with text, cut to the terminal's width.
func (s *statusLine) show(text string) {
	if s.term == nil {
		return
	}
	text = safeText(strings.NewReplacer("\n", " ", "\t", " ").Replace(text))
	if f, ok := s.term.(*os.File); ok {
		s.width = terminalWidth(f) // the window may have been resized
	}
	text = fitWidth(text, s.width-1)
	if text == s.shown {
		return
	}
	fmt.Fprintf(s.term, "\r\x1b[2K%s", text)
	s.shown = text
}

// clear removes the status line.
func (s *statusLine) clear() {
	if s.term != nil && s.shown != "" {
		fmt.Fprint(s.term, "\r\x1b[2K")
		s.shown = ""
	}
}

// termSafe is the writer of what a person reads. Much of what the commands
// print comes from a task (its log, its final message, the reasons it
// gave, the names of the files it wrote), and a task must neither drive
// the person's terminal nor show them something other than what is there:
// an escape sequence could retitle the terminal, rewrite what was printed
// before, or write to the clipboard, and a right-to-left override or a
// zero-width character makes one file name read as another. So control
// characters other than newline and tab are shown as text (ESC as ^[),
// every other character that is not seen itself (see invisible) as its
// code point (\u{202e}), and bytes that are not UTF-8 as \x9b, since a
// terminal not in UTF-8 mode obeys them as C1.
type termSafe struct {
	w       io.Writer
	pending []byte // the start of a character the last write cut
	prev    rune   // the character before, which a variation selector modifies
}

func (s *termSafe) Write(p []byte) (int, error) {
	data := p
	if len(s.pending) > 0 {
		data = append(s.pending, p...)
		s.pending = nil
	}
	out := make([]byte, 0, len(data)+16)
	for i := 0; i < len(data); {
		r, size := utf8.DecodeRune(data[i:])
		switch {
		case r == utf8.RuneError && size <= 1:
			if !utf8.FullRune(data[i:]) {
				// A character the next write completes.
				s.pending = append([]byte(nil), data[i:]...)
				size = len(data) - i
				break
			}
			out = fmt.Appendf(out, `\x%02x`, data[i])
		case r == '\n' || r == '\t':
			out = append(out, byte(r))
		case r < 0x20:
			out = append(out, '^', byte(r)+0x40)
		case r == 0x7f:
			out = append(out, '^', '?')
		case invisible(r) && !presentation(s.prev, r):
			out = fmt.Appendf(out, `\u{%x}`, r)
		default:
			out = append(out, data[i:i+size]...)
		}
		if size > 0 && len(s.pending) == 0 {
			s.prev = r
		}
		i += size
	}
	if _, err := s.w.Write(out); err != nil {
		return 0, err
	}
	return len(p), nil
}

// invisible says whether r is a character a person does not see as itself,
// decided by its Unicode properties, not by a list: controls (Cc), format
// characters (Cf: bidirectional embeddings, overrides, isolates and marks,
// zero-width spaces and joiners, the soft hyphen, the byte order mark, tag
// characters), line and paragraph separators (Zl, Zp), private use (Co),
// surrogates (Cs), the other default-ignorable code points (the combining
// grapheme joiner, Hangul fillers), variation selectors, and code points
// this Unicode version has not assigned, whose look nobody can know.
func invisible(r rune) bool {
	if unicode.In(r, unicode.Cc, unicode.Cf, unicode.Zl, unicode.Zp, unicode.Co, unicode.Cs,
		unicode.Other_Default_Ignorable_Code_Point, unicode.Variation_Selector) {
		return true
	}
	return !unicode.In(r, unicode.L, unicode.M, unicode.N, unicode.P, unicode.S, unicode.Zs)
}

// presentation says whether r is the text or emoji presentation selector
// right after a symbol (⚠️, ❤️): there it is seen, as the glyph it chose.
// Anywhere else, or a second one, it only hides.
func presentation(prev, r rune) bool {
	return (r == 0xfe0e || r == 0xfe0f) && prev >= 0x80 && unicode.In(prev, unicode.S, unicode.P)
}

// safeText is s as termSafe shows it, for text written beside the escapes
// of the status line, and for errors.
func safeText(s string) string {
	var b strings.Builder
	w := &termSafe{w: &b}
	w.Write([]byte(s))
	for _, c := range w.pending {
		fmt.Fprintf(&b, `\x%02x`, c) // a character the text ends in the middle of
	}
	return b.String()
}

// fitWidth cuts text to the columns given, with a mark where it cut: a
// status line that wrapped could not be rewritten in place. Wide characters
// (CJK, emoji) take two columns; counting every rune from U+1100 as wide
// errs on the short side.
func fitWidth(text string, columns int) string {
	width := func(r rune) int {
		if r >= 0x1100 {
			return 2
		}
		return 1
	}
	total := 0
	for _, r := range text {
		total += width(r)
	}
	if total <= columns {
		return text
	}
	used := 0
	for i, r := range text {
		if used+width(r) > columns-1 {
			return text[:i] + "…"
		}
		used += width(r)
	}
	return text
}
