package workspace

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/user"
	"path/filepath"
	"slices"
	"strings"
	"syscall"

	"github.com/codex-connector/codex-connector/internal/hostfs"
	"github.com/go-git/go-git/v5/plumbing/format/config"
)

// Git's configuration can name files in the work tree: a hooks directory
// (core.hooksPath = .githooks, as husky sets), an included config
// (include.path = ../.gitconfig), a program (core.fsmonitor, a filter, an
// alias). The configuration is read-only to a workspace-write task, but
// those files are not: the task would write them, and git on the host would
// obey. So every file the configuration names inside the work tree is bound
// read-only too, and one it names that does not exist refuses the task (the
// task could create it).

// maxConfigBytes bounds one configuration file; git's own are tiny.
const maxConfigBytes = 1 << 20

// pathKeys name a path: a missing one inside the work tree refuses the
// task. The key is section.key, or section.*.key with a subsection.
var pathKeys = map[string]bool{
	"include.path": true, "includeif.*.path": true, "core.hookspath": true,
	"core.attributesfile": true, "core.fsmonitor": true,
}

// commandKeys hold a command line: any word of it that names an existing
// file in the work tree is bound read-only.
var commandKeys = map[string]bool{
	"core.fsmonitor": true, "core.sshcommand": true, "core.editor": true, "core.pager": true, "core.askpass": true,
	"sequence.editor": true, "diff.external": true, "gpg.program": true, "gpg.*.program": true,
	"credential.helper": true, "credential.*.helper": true, "filter.*.clean": true, "filter.*.smudge": true,
	"filter.*.process": true, "diff.*.textconv": true, "diff.*.command": true, "merge.*.driver": true, "alias.*": true,
}

// configWalk collects the work-tree files named by the configuration git
// reads for one work tree.
type configWalk struct {
	root     string // the repository root: the mount
	worktree string // the work tree whose git reads these files (root, or a submodule's)
	home     string // the repo owner's home, for ~/ in paths
	seen     map[string]bool
	protect  []string // relative to root
}

// configFiles lists the configuration files git reads for the work tree
// at dir (below root): the system's, the owner's, and the repository's.
func configFiles(root, dir, home string) []string {
	files := []string{"/etc/gitconfig"}
	if home != "" {
		files = append(files, filepath.Join(home, ".gitconfig"), filepath.Join(home, ".config", "git", "config"))
	}
	gitDir := filepath.Join(dir, ".git")
	if fi, err := os.Lstat(gitDir); err == nil && fi.Mode().IsRegular() {
		if data, err := readConfig(root, gitDir); err == nil {
			if target, ok := hostfs.GitdirOf(dir, data); ok {
				gitDir = target
			}
		}
	}
	if common, ok := commonDirOf(root, gitDir); ok {
		files = append(files, filepath.Join(common, "config"))
	}
	return append(files, filepath.Join(gitDir, "config"), filepath.Join(gitDir, "config.worktree"))
}

// commonDirOf reads the commondir file of a git directory (a linked
// worktree's, a submodule's): the directory it names, made absolute.
func commonDirOf(root, gitDir string) (string, bool) {
	data, err := readConfig(root, filepath.Join(gitDir, "commondir"))
	if err != nil {
		return "", false
	}
	common := strings.TrimSpace(string(data))
	if !filepath.IsAbs(common) {
		common = filepath.Join(gitDir, common)
	}
	return filepath.Clean(common), true
}

// ownerHome is the home directory of the user who owns the repository: the
// one whose git on the host reads ~/.gitconfig.
func ownerHome(root string) string {
	fi, err := os.Stat(root)
	if err != nil {
		return ""
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return ""
	}
	u, err := user.LookupId(fmt.Sprint(st.Uid))
	if err != nil {
		return ""
	}
	return u.HomeDir
}

// configNamedFiles returns the files inside root (relative to it) that the
// configuration of the work tree at dir names, or an error when it names
// one that does not exist or cannot be bound.
func configNamedFiles(root, dir, home string) ([]string, error) {
	w := &configWalk{root: root, worktree: dir, home: home, seen: map[string]bool{}}
	for _, f := range configFiles(root, dir, home) {
		if err := w.file(f, 0); err != nil {
			return nil, err
		}
	}
	return w.protect, nil
}

func (w *configWalk) file(path string, depth int) error {
	if w.seen[path] || depth > 8 {
		return nil
	}
	w.seen[path] = true
	data, err := readConfig(w.root, path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read the git configuration %s: %v — a workspace-write task cannot be protected from what it says; fix or remove it", path, err)
	}
	var cfg config.Config
	if err := config.NewDecoder(bytes.NewReader(data)).Decode(&cfg); err != nil {
		// The decoder's words may quote the file: not repeated here.
		return fmt.Errorf("the git configuration %s cannot be read as one — fix it (git config --list shows what git makes of it)", path)
	}
	visit := func(section, sub string, opts config.Options) error {
		for _, o := range opts {
			name := strings.ToLower(section) + "." + strings.ToLower(o.Key)
			if sub != "" {
				name = strings.ToLower(section) + ".*." + strings.ToLower(o.Key)
			}
			if strings.ToLower(section) == "alias" {
				name = "alias.*"
			}
			if err := w.option(path, name, o.Value, depth); err != nil {
				return err
			}
		}
		return nil
	}
	for _, s := range cfg.Sections {
		if err := visit(s.Name, "", s.Options); err != nil {
			return err
		}
		for _, ss := range s.Subsections {
			if err := visit(s.Name, ss.Name, ss.Options); err != nil {
				return err
			}
		}
	}
	return nil
}

func (w *configWalk) option(file, name, value string, depth int) error {
	isPath, isCommand := pathKeys[name], commandKeys[name]
	if !isPath && !isCommand {
		return nil
	}
	if name == "core.fsmonitor" {
		switch strings.ToLower(value) {
		case "", "true", "false", "yes", "no", "on", "off", "1", "0":
			return nil // the built-in monitor, or none
		}
	}
	if isPath && (name == "include.path" || name == "includeif.*.path") {
		p := w.resolve(value, filepath.Dir(file))
		if err := w.named(file, name, p, true); err != nil {
			return err
		}
		if inside(w.root, file) && !inside(w.root, p) {
			// A configuration in the work tree may have been written by a
			// task: the server opens nothing outside the root it names.
			return nil
		}
		return w.file(p, depth+1) // an include can include a file in the work tree in turn
	}
	if isPath {
		first := value
		if isCommand {
			first = firstWord(value)
		}
		if err := w.named(file, name, w.resolve(first, w.worktree), name != "core.fsmonitor" || strings.Contains(first, "/")); err != nil {
			return err
		}
	}
	if isCommand {
		for _, word := range strings.Fields(value) {
			word = strings.Trim(word, `"'!`)
			if word == "" || strings.HasPrefix(word, "-") {
				continue
			}
			p := w.resolve(word, w.worktree)
			if strings.Contains(word, "/") || present(p) {
				if err := w.named(file, name, p, false); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

func (w *configWalk) resolve(p, base string) string {
	if rest, ok := strings.CutPrefix(p, "~/"); ok && w.home != "" {
		return filepath.Join(w.home, rest)
	}
	if filepath.IsAbs(p) {
		return filepath.Clean(p)
	}
	return filepath.Join(base, p)
}

// named handles one path the configuration names: outside the work tree
// (or in the repository's .git, which is read-only anyway) it is no
// concern here; inside, it is bound read-only when it exists, and refuses
// the task when it must exist and does not.
func (w *configWalk) named(file, name, p string, mustExist bool) error {
	rel, err := filepath.Rel(w.root, p)
	if err != nil || rel == "." || rel == ".." || strings.HasPrefix(rel, "../") {
		return nil
	}
	if rel == ".git" || strings.HasPrefix(rel, ".git/") {
		return nil
	}
	_, err = below(w.root, rel)
	switch {
	case err == nil:
		if !slices.Contains(w.protect, rel) {
			w.protect = append(w.protect, rel)
		}
		return nil
	case errors.Is(err, os.ErrNotExist):
		if !mustExist {
			return nil
		}
		return fmt.Errorf("the git configuration %s names %s (%s) in the work tree, and it does not exist: a workspace-write task could create it and git on the host would obey it — create it there (it is then read-only to tasks), or remove the setting", file, rel, name)
	default:
		return fmt.Errorf("the git configuration %s names %s (%s), which cannot be bound read-only: %v — restore it as a plain file or directory", file, rel, name, err)
	}
}

func firstWord(s string) string {
	f := strings.Fields(s)
	if len(f) == 0 {
		return ""
	}
	return strings.Trim(f[0], `"'`)
}

func present(p string) bool {
	_, err := os.Lstat(p)
	return err == nil
}

// inside says whether p is the root or below it.
func inside(root, p string) bool {
	return p == root || strings.HasPrefix(p, root+"/")
}

// readConfig reads a small git file (a configuration, a .git file,
// commondir). Below the repository root, where a task may have made it,
// nothing is followed (hostfs). Elsewhere it is the user's own, and may be
// a symlink (dotfiles), but only a regular file is opened: opening a
// device can have effects of its own, and a named pipe would hang.
func readConfig(root, path string) ([]byte, error) {
	if rel, err := filepath.Rel(root, path); err == nil && inside(root, path) && rel != "." {
		data, size, err := hostfs.ReadRegular(root, path, rel, maxConfigBytes)
		if err == nil && size > maxConfigBytes {
			err = fmt.Errorf("%s is larger than %d bytes", path, maxConfigBytes)
		}
		return data, err
	}
	fi, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() || fi.Size() > maxConfigBytes {
		return nil, fmt.Errorf("%s is not a regular file of at most %d bytes", path, maxConfigBytes)
	}
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK|syscall.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file", path)
	}
	return io.ReadAll(io.LimitReader(f, maxConfigBytes))
}
