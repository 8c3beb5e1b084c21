// Command fakecodex behaves like `codex exec --json` for tests: it accepts
// the same flags, prints the same kind of JSONL events and writes the
// --output-last-message file, but instead of asking a model it follows a
// script given as the prompt, so a test can make a task write files, sleep,
// flood its log, fail, or ignore SIGTERM, exactly and fast.
//
// The script is a list of steps separated by ";" or newlines:
//
//	write PATH TEXT     write TEXT (plus newline) to PATH, relative to the working directory
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
//	reconnect N DELAY   print N "Reconnecting... waiting for network" errors, DELAY apart (N=0: forever)
//	longcmd DURATION    report a command that runs for DURATION (started, then completed)
//	fail TEXT           report a failed turn and exit 1
//	exit CODE           exit with CODE (the final message is written first)
//
// A prompt whose first word is not a step is answered with a message.
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
	for i := 1; i < len(args); i++ {
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
	emit(map[string]any{"type": "thread.started", "thread_id": "fake-thread-1"})
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
