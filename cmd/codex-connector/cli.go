package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/docker/docker/client"
)

// A command of the command line: what people type. The programs this
// binary runs elsewhere (the egress proxy, the bridge) are not commands of
// this table, and help does not list them.
type command struct {
	name    string
	args    string // the usage after the name
	summary string // one line, for the list
	help    string // what it does, for `help NAME`
	// needs says what the command needs besides its flags: the
	// configuration, and a Docker client (made, not yet dialled).
	needs needs
	flags func(fs *flag.FlagSet) any
	run   func(e *env, opts any, args []string) error
}

type needs int

const (
	needsNothing needs = iota
	needsConfig
	needsDocker
)

// env is what a command runs with.
type env struct {
	cmd    *command
	cfg    config
	docker *client.Client
	stdout io.Writer
	stderr io.Writer
	stdin  *os.File
	// terminal is stdout when it is a terminal: the status line writes its
	// escapes there, past the filter of stdout.
	terminal *os.File
	// exact is where --raw and --json go: stdout as it is when it is not a
	// terminal.
	exact io.Writer
}

// usageError is a command typed wrongly: the message, then its usage.
type usageError struct {
	cmd *command
	msg string
}

func (e usageError) Error() string {
	return fmt.Sprintf("%s\nusage: codex-connector %s %s (see codex-connector help %s)", e.msg, e.cmd.name, e.cmd.args, e.cmd.name)
}

func (c *command) usagef(format string, v ...any) error {
	return usageError{c, fmt.Sprintf(format, v...)}
}

// commands is the command line, in the order help lists it.
func commands() []*command {
	return []*command{
		serveCommand, runCommand, tasksCommand, statusCommand, logsCommand, cancelCommand,
		diffCommand, applyCommand, discardCommand, pruneCommand, cachesCommand, doctorCommand, followCommand, versionCommand,
	}
}

func lookup(name string) *command {
	if name == "check" {
		return doctorCommand // its name before doctor
	}
	for _, c := range commands() {
		if c.name == name {
			return c
		}
	}
	return nil
}

// runCommandLine parses a command's flags, wherever they stand among its
// arguments, and runs it.
func runCommandLine(c *command, args []string) error {
	fs := flag.NewFlagSet(c.name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	var opts any
	if c.flags != nil {
		opts = c.flags(fs)
	}
	help := fs.Bool("help", false, "show this help")
	fs.BoolVar(help, "h", false, "show this help")
	var rest []string
	for len(args) > 0 {
		before := args
		if err := fs.Parse(args); err != nil {
			return c.usagef("%v (a \"--\" ends the flags, if what follows it is not one)", err)
		}
		args = fs.Args()
		if used := len(before) - len(args); used > 0 && before[used-1] == "--" {
			// Parse stopped at a "--": everything after it is an argument.
			rest = append(rest, args...)
			break
		}
		if len(args) > 0 {
			rest, args = append(rest, args[0]), args[1:]
		}
	}
	if *help {
		printHelp(os.Stdout, c, fs)
		return nil
	}
	// What the commands print is read by a person, at a terminal or later
	// (a file, a pager), so control characters from a task are always shown
	// as text; only --raw and --json to a pipe, which programs read, stay
	// byte for byte.
	e := &env{cmd: c, stdout: &termSafe{w: os.Stdout}, stderr: &termSafe{w: os.Stderr}, stdin: os.Stdin, exact: os.Stdout}
	if isTerminal(os.Stdout) {
		e.terminal, e.exact = os.Stdout, e.stdout
	}
	if c.needs >= needsConfig {
		cfg, err := loadConfig(os.Getenv)
		if err != nil {
			return err
		}
		e.cfg = cfg
	}
	if c.needs >= needsDocker {
		docker, err := newDockerClient()
		if err != nil {
			return err
		}
		defer docker.Close()
		e.docker = docker
	}
	return c.run(e, opts, rest)
}

func printHelp(w io.Writer, c *command, fs *flag.FlagSet) {
	fmt.Fprintf(w, "usage: codex-connector %s %s\n\n%s\n", c.name, c.args, strings.TrimSpace(c.help))
	var flags strings.Builder
	fs.VisitAll(func(f *flag.Flag) {
		if f.Name == "h" || f.Name == "help" {
			return
		}
		name, use := flag.UnquoteUsage(f)
		dash := "-"
		if len(f.Name) > 1 {
			dash = "--"
		}
		fmt.Fprintf(&flags, "  %s%s %s\n    \t%s", dash, f.Name, name, use)
		if f.DefValue != "" && f.DefValue != "false" && f.DefValue != "0" && f.DefValue != "0s" && !strings.Contains(use, "(default") {
			fmt.Fprintf(&flags, " (default %s)", f.DefValue)
		}
		flags.WriteByte('\n')
	})
	if flags.Len() > 0 {
		fmt.Fprintf(w, "\nflags:\n%s", strings.ReplaceAll(flags.String(), " \n", "\n"))
	}
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: codex-connector [COMMAND] [ARGS]")
	fmt.Fprintln(w, "\nWith no command it serves MCP over stdio: add it to ~/.mcp.json. Commands:")
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-8s %s\n", c.name, c.summary)
	}
	fmt.Fprintln(w, "\n`codex-connector help COMMAND` (or COMMAND --help) says more. Environment:")
	for _, e := range envNames {
		fmt.Fprintln(w, "  "+e)
	}
}

func helpCommand(args []string) error {
	if len(args) == 0 {
		usage(os.Stdout)
		return nil
	}
	c := lookup(args[0])
	if c == nil {
		return fmt.Errorf("no command %q: `codex-connector help` lists them", args[0])
	}
	return runCommandLine(c, []string{"--help"})
}

// oneArg is the single argument a command takes, such as a task id.
func (e *env) oneArg(args []string, what string) (string, error) {
	c := e.cmd
	switch len(args) {
	case 0:
		return "", c.usagef("say which %s", what)
	case 1:
		return args[0], nil
	}
	return "", c.usagef("one %s, got %d arguments: %s", what, len(args), strings.Join(args, " "))
}

// newDockerClient makes a client of the engine DOCKER_HOST names (or the
// default socket); it dials nothing yet.
func newDockerClient() (*client.Client, error) {
	docker, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
	if err != nil {
		return nil, fmt.Errorf("set up the Docker client: %w — check DOCKER_HOST", err)
	}
	return docker, nil
}
