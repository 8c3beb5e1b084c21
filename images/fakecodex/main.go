// Command fakecodex behaves like `codex exec --json` for tests: it accepts
// the same flags, prints the same kind of JSONL events and writes the
// --output-last-message file, but instead of asking a model it follows a
// script given as the prompt, so a test can make a task write files, sleep,
// flood its log, fail, or ignore SIGTERM, exactly and fast.
//
// The script is a list of steps separated by ";" or newlines:
//
//	write PATH TEXT     write TEXT (plus newline) to PATH, relative to the working directory
//	append PATH TEXT    append TEXT (plus newline) to PATH, never truncating: one line per run
//	cmd CODE TEXT       report a command TEXT that exited with CODE
//	say TEXT            an agent message; the last one is the final message
//	sleep DURATION      e.g. sleep 2s
//	lines N [DELAY]     print N numbered lines "line 000001", with DELAY between them
//	flood BYTES         print BYTES bytes of text lines to stdout
//	stderr TEXT         print TEXT to stderr
//	env NAME            print NAME=value of an environment variable to stderr
//	read PATH           print the content of PATH to stderr, or the error
//	ignore-term         ignore SIGTERM from now on
//	alloc MB            allocate and touch MB megabytes, then keep them
//	spawn N             start N copies of itself that sleep, to exhaust a pids limit
//	dial HOST:PORT      open a TCP connection and report whether it worked
//	get URL             HTTP GET through the proxy of the environment, report status and body
//	tunnel HOST:PORT    CONNECT through the proxy in HTTPS_PROXY, report the status line
//	resolve NAME        look a name up in DNS and report the result
//	await PATH          wait until PATH exists: a test's signal to go on
//	reconnect N DELAY   print N "Reconnecting... waiting for network" errors, DELAY apart (N=0: forever)
//	longcmd DURATION    report a command that runs for DURATION (started, then completed)
//	fail TEXT           report a failed turn and exit 1
//	exit CODE           exit with CODE (the final message is written first)
//
// Steps a hostile task takes, for the sandbox's attack tests:
//
//	symlink TARGET LINK make LINK point at TARGET
//	mkfifo PATH         make a named pipe
//	mkdir PATH MODE     make a directory with an octal MODE (e.g. 000)
//	chmod PATH MODE     set the octal MODE of PATH (e.g. 000 to lock a full directory)
//	rename OLD NEW      rename OLD to NEW
//	remove PATH         remove PATH and everything under it
//	sparse PATH SIZE    make a sparse file of SIZE bytes
//	fill PATH BYTES     write BYTES real bytes to PATH
//	rawout TEXT         write TEXT and a newline to /proc/1/fd/1, the container's stdout
//	kill                end at once by SIGKILL, as a task that kills Codex: no final message
//	conns HOST:PORT N DURATION  open N CONNECT tunnels through HTTPS_PROXY and hold them for DURATION
//	nuls N              print N numbered lines "000001" and 16 NUL bytes, each followed by an empty line
//
// A prompt whose first word is not a step is answered with a message. A
// prompt of "-" is read from stdin, as Codex reads it.
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

var out = bufio.NewWriterSize(os.Stdout, 64<<10)

func emit(v map[string]any) {
	b, _ := json.Marshal(v)
	out.Write(b)
	out.WriteByte('\n')
	out.Flush()
}

type state struct {
	items   int
	lastMsg string
	outFile string
}

func (s *state) item(typ string, fields map[string]any) map[string]any {
	s.items++
	it := map[string]any{"id": fmt.Sprintf("item_%d", s.items), "type": typ}
	for k, v := range fields {
		it[k] = v
	}
	return it
}

func (s *state) command(text string, code int, output string) {
	started := s.item("command_execution", map[string]any{"command": text, "aggregated_output": "", "exit_code": nil, "status": "in_progress"})
	emit(map[string]any{"type": "item.started", "item": started})
	status := "completed"
	if code != 0 {
		status = "failed"
	}
	done := map[string]any{}
	for k, v := range started {
		done[k] = v
	}
	done["aggregated_output"], done["exit_code"], done["status"] = output, code, status
	emit(map[string]any{"type": "item.completed", "item": done})
}

func (s *state) finish(code int) {
	if s.outFile != "" {
		if err := os.WriteFile(s.outFile, []byte(s.lastMsg), 0o644); err != nil {
			fmt.Fprintf(os.Stderr, "fakecodex: write last message: %v\n", err)
		}
	}
	if code == 0 {
		emit(map[string]any{"type": "turn.completed", "usage": map[string]any{"input_tokens": 100, "cached_input_tokens": 10, "output_tokens": 20, "reasoning_output_tokens": 5}})
	}
	out.Flush()
	os.Exit(code)
}

func main() {
	if len(os.Args) > 2 && os.Args[1] == "sleep-child" {
		d, _ := time.ParseDuration(os.Args[2])
		time.Sleep(d)
		return
	}
	args := os.Args[1:]
	if len(args) == 0 || args[0] != "exec" {
		fmt.Fprintln(os.Stderr, "fakecodex: only `exec` is supported")
		os.Exit(2)
	}
	s := &state{}
	var prompt []string
	// `exec resume … -- THREAD PROMPT` continues a session: the thread is
	// the first word after "--".
	resume := len(args) > 1 && args[1] == "resume"
	first := 1
	if resume {
		first = 2
	}
	for i := first; i < len(args); i++ {
		switch a := args[i]; a {
		case "-o", "--output-last-message":
			i++
			s.outFile = args[i]
		case "-m", "--model", "-c", "--config", "-C", "--cd", "-s", "--sandbox":
			i++
		case "--":
			prompt = append(prompt, args[i+1:]...)
			i = len(args)
		default:
			if !strings.HasPrefix(a, "-") {
				prompt = append(prompt, a)
			}
		}
	}
	fmt.Fprintf(os.Stderr, "fakecodex args: %q\n", args)
	thread := "00000000-0000-4000-8000-000000000001" // as Codex's: a UUID
	if resume && len(prompt) > 0 {
		thread, prompt = prompt[0], prompt[1:]
	}
	if len(prompt) == 1 && prompt[0] == "-" {
		// As Codex does: "-" reads the prompt from stdin.
		data, err := io.ReadAll(os.Stdin)
		if err != nil {
			fmt.Fprintf(os.Stderr, "fakecodex: read the prompt from stdin: %v\n", err)
			os.Exit(2)
		}
		prompt = []string{string(data)}
	}
	emit(map[string]any{"type": "thread.started", "thread_id": thread})
	emit(map[string]any{"type": "turn.started"})
	script := strings.Join(prompt, " ")
	steps := strings.FieldsFunc(script, func(r rune) bool { return r == ';' || r == '\n' })
	for _, step := range steps {
		verb, rest, _ := strings.Cut(strings.TrimSpace(step), " ")
		rest = strings.TrimSpace(rest)
		if !s.step(verb, rest) {
			s.lastMsg = "fake codex: " + script
			emit(map[string]any{"type": "item.completed", "item": s.item("agent_message", map[string]any{"text": s.lastMsg})})
			break
		}
	}
	s.finish(0)
}

var kept [][]byte

// report records a step as a command that exited 0, or 1 with the error.
func (s *state) report(what string, err error) {
	if err != nil {
		s.command(what, 1, err.Error())
		return
	}
	s.command(what, 0, "")
}

// holdTunnels opens n CONNECT tunnels to target through the proxy of the
// environment at once, holds those that opened for hold, and says how many
// the proxy answered with 200 and how many it refused or dropped.
func holdTunnels(target string, n int, hold time.Duration) string {
	proxy, err := url.Parse(os.Getenv("HTTPS_PROXY"))
	if err != nil || proxy.Host == "" {
		return "no HTTPS_PROXY"
	}
	type result struct {
		c  net.Conn
		ok bool
	}
	results := make(chan result, n)
	for i := 0; i < n; i++ {
		go func() {
			c, err := net.DialTimeout("tcp", proxy.Host, 5*time.Second)
			if err != nil {
				results <- result{}
				return
			}
			c.SetDeadline(time.Now().Add(10 * time.Second))
			fmt.Fprintf(c, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", target, target)
			line, _ := bufio.NewReader(c).ReadString('\n')
			c.SetDeadline(time.Time{})
			results <- result{c, strings.Contains(line, " 200 ")}
		}()
	}
	var open []net.Conn
	refused := 0
	for i := 0; i < n; i++ {
		r := <-results
		if r.ok {
			open = append(open, r.c)
		} else {
			refused++
			if r.c != nil {
				r.c.Close()
			}
		}
	}
	time.Sleep(hold)
	for _, c := range open {
		c.Close()
	}
	return fmt.Sprintf("opened %d, refused %d", len(open), refused)
}

func (s *state) step(verb, rest string) bool {
	switch verb {
	case "write":
		path, text, _ := strings.Cut(rest, " ")
		err := os.WriteFile(path, []byte(text+"\n"), 0o644)
		if err != nil {
			s.command("write "+path, 1, err.Error())
		} else {
			s.command("write "+path, 0, "")
			emit(map[string]any{"type": "item.completed", "item": s.item("file_change", map[string]any{"changes": []map[string]string{{"path": filepath.Clean(path), "kind": "add"}}, "status": "completed"})})
		}
	case "append":
		// Adds a line, never truncating: a file a task appends to once
		// holds one line per run of the task.
		path, text, _ := strings.Cut(rest, " ")
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
		if err == nil {
			_, err = f.WriteString(text + "\n")
			if closeErr := f.Close(); err == nil {
				err = closeErr
			}
		}
		if err != nil {
			s.command("append "+path, 1, err.Error())
		} else {
			s.command("append "+path, 0, "")
		}
	case "cmd":
		codeText, text, _ := strings.Cut(rest, " ")
		code, _ := strconv.Atoi(codeText)
		s.command(text, code, "")
	case "say":
		s.lastMsg = rest
		emit(map[string]any{"type": "item.completed", "item": s.item("agent_message", map[string]any{"text": rest})})
	case "sleep":
		d, _ := time.ParseDuration(rest)
		time.Sleep(d)
	case "lines":
		nText, delayText, _ := strings.Cut(rest, " ")
		n, _ := strconv.Atoi(nText)
		delay, _ := time.ParseDuration(delayText)
		for i := 1; i <= n; i++ {
			fmt.Fprintf(out, "line %06d\n", i)
			if delay > 0 {
				out.Flush()
				time.Sleep(delay)
			}
		}
		out.Flush()
	case "flood":
		n, _ := strconv.ParseInt(rest, 10, 64)
		line := []byte(strings.Repeat("x", 99) + "\n")
		for ; n >= int64(len(line)); n -= int64(len(line)) {
			out.Write(line)
		}
		out.Write(line[len(line)-int(n):])
		out.Flush()
	case "stderr":
		fmt.Fprintln(os.Stderr, rest)
	case "env":
		fmt.Fprintf(os.Stderr, "%s=%s\n", rest, os.Getenv(rest))
	case "read":
		data, err := os.ReadFile(rest)
		if err != nil {
			fmt.Fprintf(os.Stderr, "read %s: %v\n", rest, err)
		} else {
			fmt.Fprintf(os.Stderr, "read %s: %s\n", rest, data)
		}
	case "ignore-term":
		signal.Ignore(syscall.SIGTERM)
	case "alloc":
		mb, _ := strconv.Atoi(rest)
		for i := 0; i < mb; i++ {
			b := make([]byte, 1<<20)
			for j := range b {
				b[j] = byte(j)
			}
			kept = append(kept, b)
		}
		s.command(fmt.Sprintf("alloc %d MB", mb), 0, "")
	case "spawn":
		n, _ := strconv.Atoi(rest)
		started := 0
		var lastErr error
		for i := 0; i < n; i++ {
			c := exec.Command("/proc/self/exe", "sleep-child", "60s")
			if lastErr = c.Start(); lastErr != nil {
				break
			}
			started++
		}
		s.command(fmt.Sprintf("spawn %d", n), 0, fmt.Sprintf("started %d, last error: %v", started, lastErr))
	case "dial":
		c, err := net.DialTimeout("tcp", rest, 3*time.Second)
		if err != nil {
			s.command("dial "+rest, 1, err.Error())
		} else {
			c.Close()
			s.command("dial "+rest, 0, "connected")
		}
	case "reconnect":
		nText, delayText, _ := strings.Cut(rest, " ")
		n, _ := strconv.Atoi(nText)
		delay, _ := time.ParseDuration(delayText)
		for i := 0; n == 0 || i < n; i++ {
			emit(map[string]any{"type": "error", "message": "Reconnecting... waiting for network (Connection failed: error sending request)"})
			time.Sleep(delay)
		}
	case "longcmd":
		d, _ := time.ParseDuration(rest)
		it := s.item("command_execution", map[string]any{"command": "sleep " + rest, "aggregated_output": "", "exit_code": nil, "status": "in_progress"})
		emit(map[string]any{"type": "item.started", "item": it})
		time.Sleep(d)
		it["exit_code"], it["status"] = 0, "completed"
		emit(map[string]any{"type": "item.completed", "item": it})
	case "get":
		client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{Proxy: http.ProxyFromEnvironment}}
		resp, err := client.Get(rest)
		if err != nil {
			s.command("get "+rest, 1, err.Error())
			break
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		code := 0
		if resp.StatusCode != 200 {
			code = 1
		}
		s.command("get "+rest, code, fmt.Sprintf("%d %s", resp.StatusCode, body))
	case "tunnel":
		proxy, err := url.Parse(os.Getenv("HTTPS_PROXY"))
		if err != nil || proxy.Host == "" {
			s.command("tunnel "+rest, 1, "no HTTPS_PROXY")
			break
		}
		c, err := net.DialTimeout("tcp", proxy.Host, 3*time.Second)
		if err != nil {
			s.command("tunnel "+rest, 1, err.Error())
			break
		}
		fmt.Fprintf(c, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", rest, rest)
		line, _ := bufio.NewReader(c).ReadString('\n')
		c.Close()
		code := 1
		if strings.Contains(line, " 200 ") {
			code = 0
		}
		s.command("tunnel "+rest, code, strings.TrimSpace(line))
	case "resolve":
		addrs, err := net.LookupHost(rest)
		if err != nil {
			s.command("resolve "+rest, 1, err.Error())
		} else {
			s.command("resolve "+rest, 0, strings.Join(addrs, " "))
		}
	case "await":
		for {
			if _, err := os.Lstat(rest); err == nil {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		s.command("await "+rest, 0, "")
	case "symlink":
		target, link, _ := strings.Cut(rest, " ")
		s.report("symlink "+link, os.Symlink(target, link))
	case "mkfifo":
		s.report("mkfifo "+rest, syscall.Mkfifo(rest, 0o644))
	case "mkdir":
		path, modeText, _ := strings.Cut(rest, " ")
		mode, _ := strconv.ParseUint(modeText, 8, 32)
		err := os.Mkdir(path, 0o755)
		if err == nil {
			err = os.Chmod(path, os.FileMode(mode))
		}
		s.report("mkdir "+path, err)
	case "chmod":
		path, modeText, _ := strings.Cut(rest, " ")
		mode, _ := strconv.ParseUint(modeText, 8, 32)
		s.report("chmod "+path, os.Chmod(path, os.FileMode(mode)))
	case "kill":
		out.Flush()
		syscall.Kill(os.Getpid(), syscall.SIGKILL)
	case "rename":
		from, to, _ := strings.Cut(rest, " ")
		s.report("rename "+from, os.Rename(from, to))
	case "remove":
		s.report("remove "+rest, os.RemoveAll(rest))
	case "sparse":
		path, sizeText, _ := strings.Cut(rest, " ")
		size, _ := strconv.ParseInt(sizeText, 10, 64)
		f, err := os.Create(path)
		if err == nil {
			err = f.Truncate(size)
			f.Close()
		}
		s.report("sparse "+path, err)
	case "fill":
		path, sizeText, _ := strings.Cut(rest, " ")
		size, _ := strconv.ParseInt(sizeText, 10, 64)
		f, err := os.Create(path)
		if err == nil {
			buf := make([]byte, 1<<20)
			for i := range buf {
				buf[i] = 'f'
			}
			for size > 0 && err == nil {
				n := min(size, int64(len(buf)))
				_, err = f.Write(buf[:n])
				size -= n
			}
			if closeErr := f.Close(); err == nil {
				err = closeErr
			}
		}
		s.report("fill "+path, err)
	case "rawout":
		f, err := os.OpenFile("/proc/1/fd/1", os.O_WRONLY, 0)
		if err == nil {
			out.Flush()
			_, err = fmt.Fprintln(f, rest)
			f.Close()
		}
		s.report("rawout", err)
	case "conns":
		fields := strings.Fields(rest)
		if len(fields) != 3 {
			s.command("conns", 1, "usage: conns HOST:PORT N DURATION")
			break
		}
		n, _ := strconv.Atoi(fields[1])
		hold, _ := time.ParseDuration(fields[2])
		s.command("conns "+fields[0], 0, holdTunnels(fields[0], n, hold))
	case "nuls":
		// What the engine's JSON log inflates most: a NUL takes 6 bytes
		// there, an empty line some 70.
		n, _ := strconv.Atoi(rest)
		nuls := strings.Repeat("\x00", 16)
		for i := 1; i <= n; i++ {
			fmt.Fprintf(out, "%06d%s\n\n", i, nuls)
		}
		out.Flush()
		s.command("nuls", 0, "")
	case "fail":
		emit(map[string]any{"type": "error", "message": rest})
		emit(map[string]any{"type": "turn.failed", "error": map[string]any{"message": rest}})
		s.finish(1)
	case "exit":
		code, _ := strconv.Atoi(rest)
		s.finish(code)
	default:
		return false
	}
	return true
}
