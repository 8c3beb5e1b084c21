package main

import (
	"fmt"
	"io"
	"os"
	"strings"
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
	text = safeText(strings.ReplaceAll(text, "\n", " "))
	if w := s.width - 1; utf8.RuneCountInString(text) > w && w > 1 {
		text = string([]rune(text)[:w-1]) + "…"
	}
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

// termSafe is the writer of what a terminal shows. Much of what the
// commands print comes from a task (its log, its final message, the
// reasons it gave), and a task must not drive the person's terminal: an
// escape sequence could retitle it, rewrite what was printed before, or
// write to the clipboard. So control characters other than newline and
// tab are shown as text (ESC as ^[, C1 controls as \u0085), never sent.
// Output that is not a terminal passes byte for byte.
type termSafe struct {
	w      io.Writer
	pendC2 bool // the last write ended in 0xC2, which may begin a C1 control
}

func (s *termSafe) Write(p []byte) (int, error) {
	out := make([]byte, 0, len(p)+16)
	for i := 0; i < len(p); i++ {
		b := p[i]
		if s.pendC2 {
			s.pendC2 = false
			if b >= 0x80 && b <= 0x9f {
				out = fmt.Appendf(out, `\u%04x`, b)
				continue
			}
			out = append(out, 0xc2)
		}
		switch {
		case b == 0xc2:
			s.pendC2 = true
		case b == '\n' || b == '\t':
			out = append(out, b)
		case b < 0x20:
			out = append(out, '^', b+0x40)
		case b == 0x7f:
			out = append(out, '^', '?')
		default:
			out = append(out, b)
		}
	}
	if _, err := s.w.Write(out); err != nil {
		return 0, err
	}
	return len(p), nil
}

// safeText is s as termSafe would show it, for text written beside the
// escapes of the status line.
func safeText(s string) string {
	var b strings.Builder
	w := &termSafe{w: &b}
	w.Write([]byte(s))
	if w.pendC2 {
		b.WriteByte(0xc2)
	}
	return b.String()
}
