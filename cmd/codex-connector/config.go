package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/codex-connector/codex-connector/images"
)

// config is everything the process is told from outside, in one place.
type config struct {
	Home         string
	Image        string
	CodexVersion string
	MaxRunning   int
	StopGrace    time.Duration
	LockTimeout  time.Duration
	// Env is passed into every task's container.
	Env []string
}

// envNames documents every variable codex-connector reads.
var envNames = []string{
	"CODEX_CONNECTOR_HOME        data directory (default ~/.codex-connector)",
	"CODEX_CONNECTOR_IMAGE       Codex image (default " + images.DefaultRef + ")",
	"CODEX_CONNECTOR_CODEX_VERSION  Codex version the image must carry (default " + images.DefaultCodexVersion + "; \"any\" skips the check)",
	"CODEX_CONNECTOR_MAX_RUNNING tasks run at once; more wait queued (default 4)",
	"CODEX_CONNECTOR_STOP_GRACE  time Codex gets between SIGTERM and SIGKILL (default 10s)",
	"OPENAI_API_KEY              passed to Codex in the container when set",
}

func loadConfig(getenv func(string) string) (config, error) {
	c := config{
		Home:         getenv("CODEX_CONNECTOR_HOME"),
		Image:        getenv("CODEX_CONNECTOR_IMAGE"),
		CodexVersion: getenv("CODEX_CONNECTOR_CODEX_VERSION"),
		MaxRunning:   4,
		StopGrace:    10 * time.Second,
		LockTimeout:  5 * time.Second,
	}
	if c.Home == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return c, fmt.Errorf("find the home directory: %w — set CODEX_CONNECTOR_HOME", err)
		}
		c.Home = filepath.Join(home, ".codex-connector")
	}
	if !filepath.IsAbs(c.Home) {
		return c, fmt.Errorf("CODEX_CONNECTOR_HOME must be an absolute path, got %q", c.Home)
	}
	if c.Image == "" {
		c.Image = images.DefaultRef
	}
	switch c.CodexVersion {
	case "":
		c.CodexVersion = images.DefaultCodexVersion
	case "any":
		c.CodexVersion = ""
	}
	if v := getenv("CODEX_CONNECTOR_MAX_RUNNING"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			return c, fmt.Errorf("CODEX_CONNECTOR_MAX_RUNNING must be a whole number of at least 1, got %q", v)
		}
		c.MaxRunning = n
	}
	if v := getenv("CODEX_CONNECTOR_STOP_GRACE"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			return c, fmt.Errorf("CODEX_CONNECTOR_STOP_GRACE must be a positive duration such as 10s, got %q", v)
		}
		c.StopGrace = d
	}
	if key := getenv("OPENAI_API_KEY"); key != "" {
		c.Env = append(c.Env, "OPENAI_API_KEY="+key)
	}
	return c, nil
}
