package runner

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"syscall"

	"github.com/codex-connector/codex-connector/store"
)

// A ChatGPT login cannot be routed through the proxy with Codex 0.169 (see
// the README's Credentials), so a task gets a copy of it in its own Codex
// home. The copy holds the access token, which Codex needs and the task
// can therefore read, but never the refresh token: that one outlives any
// task, and a task that used it would fork the login's refresh-token chain
// and log the user out. In its place is a placeholder; Codex in a task
// cannot refresh, so the user's Codex on the host stays the one refresher.

// maxLoginBytes caps what is read of the user's login file.
const maxLoginBytes = 1 << 20

// loginFields and tokenFields are what a task's copy keeps of the login:
// what Codex needs to use a ChatGPT access token. Everything else a login
// file may hold (an API key, a personal access token, an agent identity's
// private key, cloud keys) outlives a task and stays out.
var (
	loginFields = []string{"auth_mode", "tokens", "last_refresh"}
	tokenFields = []string{"id_token", "access_token", "account_id"}
)

// taskLogin is the user's login file at path as a task gets it: the fields
// above, and a placeholder for the refresh token.
func taskLogin(path string) ([]byte, error) {
	login, err := readLogin(path)
	if err != nil {
		return nil, err
	}
	copied := map[string]json.RawMessage{"OPENAI_API_KEY": json.RawMessage("null")}
	for _, f := range loginFields {
		if v, ok := login[f]; ok {
			copied[f] = v
		}
	}
	if raw, ok := login["tokens"]; ok && string(raw) != "null" {
		var tokens map[string]json.RawMessage
		if err := json.Unmarshal(raw, &tokens); err != nil {
			return nil, fmt.Errorf("read your Codex login %s: tokens: %w — run `codex login` on the host", path, err)
		}
		kept := map[string]json.RawMessage{}
		for _, f := range tokenFields {
			if v, ok := tokens[f]; ok {
				kept[f] = v
			}
		}
		if _, ok := tokens["refresh_token"]; ok {
			kept["refresh_token"], _ = json.Marshal(newPlaceholder())
		}
		copied["tokens"], _ = json.Marshal(kept)
	}
	return json.Marshal(copied)
}

// readLogin reads the user's login file: a regular file (a named pipe
// cannot block the server), at most maxLoginBytes, a JSON object.
func readLogin(path string) (map[string]json.RawMessage, error) {
	fail := func(err error) (map[string]json.RawMessage, error) {
		return nil, fmt.Errorf("read your Codex login %s: %w — run `codex login` on the host, or set OPENAI_API_KEY", path, err)
	}
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK|syscall.O_CLOEXEC, 0)
	if err != nil {
		return fail(err)
	}
	defer f.Close()
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
		return fail(fmt.Errorf("not a regular file"))
	}
	data, err := io.ReadAll(io.LimitReader(f, maxLoginBytes+1))
	if err == nil && len(data) > maxLoginBytes {
		err = fmt.Errorf("over %d bytes", maxLoginBytes)
	}
	var login map[string]json.RawMessage
	if err == nil {
		err = json.Unmarshal(data, &login)
	}
	if err != nil {
		return fail(err)
	}
	return login, nil
}

// LoginAPIKey is the API key a Codex login file holds
// (`codex login --with-api-key`); "" for a ChatGPT login.
func LoginAPIKey(path string) (string, error) {
	login, err := readLogin(path)
	if err != nil {
		return "", err
	}
	var key *string
	if raw, ok := login["OPENAI_API_KEY"]; ok {
		if err := json.Unmarshal(raw, &key); err != nil {
			return "", fmt.Errorf("read your Codex login %s: OPENAI_API_KEY: %w", path, err)
		}
	}
	if key == nil {
		return "", nil
	}
	return *key, nil
}

// placeLogin puts the task's copy of the user's login in its Codex home.
func (r *Runner) placeLogin(ctx context.Context, t *store.Task) error {
	data, err := taskLogin(r.cfg.AuthFile)
	if err != nil {
		return err
	}
	files, err := r.files(t.ID)
	if err == nil {
		err = files.WriteFile(ctx, "codex-home/auth.json", data, ownerOf(t.User))
	}
	if err != nil {
		return fmt.Errorf("give task %s its copy of your Codex login: %w", t.ID, err)
	}
	return nil
}
