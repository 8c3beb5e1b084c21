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
	w     io.Writer
	live  bool
	width int
	shown string // the text on screen, "" when none is
}

// println prints a line above the status line.
func (s *statusLine) println(line string) {
	s.clear()
	fmt.Fprintln(s.w, line)
}

// show replaces the status line with text, cut to the terminal's width.
func (s *statusLine) show(text string) {
	if !s.live {
		return
	}
	text = strings.ReplaceAll(text, "\n", " ")
	if w := s.width - 1; utf8.RuneCountInString(text) > w && w > 1 {
		text = string([]rune(text)[:w-1]) + "…"
	}
	if text == s.shown {
		return
	}
	fmt.Fprintf(s.w, "\r\x1b[2K%s", text)
	s.shown = text
}

// clear removes the status line.
func (s *statusLine) clear() {
	if s.live && s.shown != "" {
		fmt.Fprint(s.w, "\r\x1b[2K")
		s.shown = ""
	}
}
