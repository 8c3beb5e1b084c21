package workspace

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/codex-connector/codex-connector/internal/hostfs"
	"github.com/codex-connector/codex-connector/internal/hostfs/hostfstest"
	git "github.com/go-git/go-git/v5"
	"golang.org/x/sys/unix"
)

// ourStatus is statusOf of the work tree at dir, as the scans take it.
func ourStatus(t *testing.T, dir string) treeStatus {
	t.Helper()
	refused := &hostfs.Refusal{}
	dirs, err := hostfs.GitDirsOf(dir)
	hostfstest.Must(t, err)
	repo, err := hostfs.OpenRepoAt(context.Background(), dir, dirs, refused)
	hostfstest.Must(t, err)
	_, st, err := statusOf(context.Background(), dir, repo, dirs, nil)
	if err != nil {
		t.Fatalf("status of %s: %v (refused: %v)", dir, err, refused.First())
	}
	return st
}

// gitsPaths are the paths `git status` lists, each untracked file apart.
func gitsPaths(t *testing.T, dir string) []string {
	t.Helper()
	out := runGit(t, dir, "-c", "core.untrackedCache=false", "status", "--porcelain", "-uall", "--ignore-submodules=all")
	var paths []string
	for _, line := range strings.Split(out, "\n") {
		if len(line) > 3 { // runGit trims the first line's leading space
			paths = append(paths, strings.TrimSpace(line[2:]))
		}
	}
	sort.Strings(paths)
	return paths
}

func pathsOf(st treeStatus) []string {
	var paths []string
	for p, s := range st {
		if s.changed() {
			paths = append(paths, p)
		}
	}
	sort.Strings(paths)
	return paths
}

// The status the scans take lists what git status lists, on a tree with
// each kind of change git tells apart: edits, staged and unstaged, the
// executable bit, links, deletions, untracked files under each kind of
// ignore rule, tracked files in an ignored directory, a nested
// repository, and edits that keep a file's size and time.
func TestStatusAgreesWithGit(t *testing.T) {
	dir := t.TempDir()
	runGit(t, dir, "init", "-q", "-b", "main")
	writeFiles(t, dir, map[string]string{
		"a.txt": "a\n", "b.txt": "b\n", "c.txt": "c\n", "d.txt": "d\n", "e.txt": "e\n", "same.txt": "1234\n",
		"script.sh": "echo\n", "gone.txt": "gone\n", "staged-gone.txt": "x\n", "sub/deep/f.txt": "f\n",
		".gitignore": "*.log\nbuild/\n!keep.log\n", "sub/.gitignore": "local-*\n", "build/tracked.txt": "t\n",
	})
	hostfstest.Must(t, os.Symlink("a.txt", filepath.Join(dir, "link")))
	runGit(t, dir, "add", "-A")
	runGit(t, dir, "add", "-f", "build/tracked.txt")
	runGit(t, dir, "commit", "-qm", "one")
	// Let the index's second pass, so that the files below are not racy.
	time.Sleep(1100 * time.Millisecond)
	runGit(t, dir, "status", "--porcelain")

	writeFiles(t, dir, map[string]string{
		"a.txt": "a changed\n", "b.txt": "b staged\n", "new.txt": "new\n", "new-staged.txt": "n\n",
		"x.log": "ignored\n", "keep.log": "not ignored\n", "build/out.o": "ignored dir\n", "build/tracked.txt": "tracked, changed\n",
		"sub/local-x": "ignored below\n", "sub/other": "untracked below\n", "excluded.tmp": "info/exclude\n",
		"nested/file": "in a repository of its own\n",
	})
	runGit(t, dir, "init", "-q", "nested")
	runGit(t, dir, "add", "b.txt", "new-staged.txt")
	hostfstest.Must(t, os.WriteFile(filepath.Join(dir, ".git", "info", "exclude"), []byte("*.tmp\n"), 0o644))
	hostfstest.Must(t, os.Chmod(filepath.Join(dir, "script.sh"), 0o755))
	// git reads the owner's execute bit alone: a group's is no change.
	hostfstest.Must(t, os.Chmod(filepath.Join(dir, "e.txt"), 0o654))
	hostfstest.Must(t, os.Remove(filepath.Join(dir, "gone.txt")))
	runGit(t, dir, "rm", "-q", "staged-gone.txt")
	hostfstest.Must(t, os.Remove(filepath.Join(dir, "link")))
	hostfstest.Must(t, os.Symlink("b.txt", filepath.Join(dir, "link")))
	// The same size and time, other content: only the change time tells.
	p := filepath.Join(dir, "same.txt")
	fi, err := os.Stat(p)
	hostfstest.Must(t, err)
	hostfstest.Must(t, os.WriteFile(p, []byte("4321\n"), 0o644))
	hostfstest.Must(t, os.Chtimes(p, fi.ModTime(), fi.ModTime()))
	// Touched, not changed: no change.
	now := time.Now()
	hostfstest.Must(t, os.Chtimes(filepath.Join(dir, "c.txt"), now, now))

	ours, want := pathsOf(ourStatus(t, dir)), gitsPaths(t, dir)
	if !slices.Equal(ours, want) {
		t.Errorf("ours:\n%s\ngit's:\n%s", strings.Join(ours, "\n"), strings.Join(want, "\n"))
	}
	for _, p := range []string{"same.txt", "a.txt", "link", "script.sh", "build/tracked.txt", "nested/", "keep.log"} {
		if !slices.Contains(ours, p) {
			t.Errorf("%s is not in our status", p)
		}
	}
}

// The index is read as go-git's decoder reads it, in each version git
// writes (4 compresses paths; 3 carries skip-worktree), and a cut or
// garbled index is an error, never a crash.
func TestReadIndexAgreesWithGoGit(t *testing.T) {
	for _, version := range []string{"2", "3", "4"} {
		t.Run("version "+version, func(t *testing.T) {
			dir := t.TempDir()
			runGit(t, dir, "init", "-q", "-b", "main")
			writeFiles(t, dir, map[string]string{"a.txt": "a\n", "dir/b.txt": "b\n", "dir/bb.txt": "bb\n", "dir/sub/c.txt": "c\n", "z": "z\n"})
			runGit(t, dir, "add", "-A")
			runGit(t, dir, "commit", "-qm", "one")
			runGit(t, dir, "update-index", "--index-version", version)
			if version == "3" {
				runGit(t, dir, "update-index", "--skip-worktree", "dir/bb.txt")
			}
			ours, err := readIndex(filepath.Join(dir, ".git"))
			hostfstest.Must(t, err)
			repo, err := git.PlainOpen(dir)
			hostfstest.Must(t, err)
			theirs, err := repo.Storer.Index()
			hostfstest.Must(t, err)
			if len(ours.entries) != len(theirs.Entries) {
				t.Fatalf("%d entries, go-git %d", len(ours.entries), len(theirs.Entries))
			}
			for i, e := range theirs.Entries {
				o := ours.entries[i]
				if o.name != e.Name || o.hash != e.Hash || o.mode != e.Mode || o.size != e.Size || o.ino != e.Inode ||
					o.skipWorktree != e.SkipWorktree || o.mtime.Nano() != e.ModifiedAt.UnixNano() {
					t.Errorf("entry %d: ours %+v, go-git %+v", i, o, e)
				}
			}
			head, err := repo.Head()
			hostfstest.Must(t, err)
			commit, err := repo.CommitObject(head.Hash())
			hostfstest.Must(t, err)
			runGit(t, dir, "write-tree") // writes the cached tree back whole
			ours, err = readIndex(filepath.Join(dir, ".git"))
			hostfstest.Must(t, err)
			if ours.tree != commit.TreeHash {
				t.Errorf("cached tree %s, HEAD's tree %s", ours.tree, commit.TreeHash)
			}
			data, err := os.ReadFile(filepath.Join(dir, ".git", "index"))
			hostfstest.Must(t, err)
			for n := 0; n < len(data)-20; n++ {
				if _, err := parseIndex(append(data[:n:n], make([]byte, 20)...)); err == nil && n < 12 {
					t.Fatalf("a %d-byte index parsed", n)
				}
			}
		})
	}
}

// The one walk of the scans measures the disk use as TreeUsage does,
// everything included (the git directory, ignored and nested
// repositories), and fingerprints from the stat it took as lstat would.
func TestTheOneWalkMeasuresAndFingerprintsAsEachScanDid(t *testing.T) {
	dir := t.TempDir()
	runGit(t, dir, "init", "-q", "-b", "main")
	writeFiles(t, dir, map[string]string{"a.txt": strings.Repeat("a", 10000), ".gitignore": "build/\n", "build/out.o": strings.Repeat("o", 50000),
		"Makefile": "all:\n", "nested/x": "x\n"})
	runGit(t, dir, "add", "-A")
	runGit(t, dir, "commit", "-qm", "one")
	runGit(t, dir, "init", "-q", "nested")
	hostfstest.Mkfifo(t, filepath.Join(dir, "pipe"))
	hostfstest.Must(t, os.Symlink("a.txt", filepath.Join(dir, "link")))
	want, err := hostfs.TreeUsage(dir, 0)
	hostfstest.Must(t, err)
	scan := scanTree(context.Background(), dir, scanWant{hostRun: true, usage: true})
	if scan.usageErr != nil || scan.usage != want {
		t.Errorf("the walk measured %d (%v), TreeUsage %d", scan.usage, scan.usageErr, want)
	}
	if fp := scan.host.files["Makefile"]; fp == "" || fp != lstatFingerprint(filepath.Join(dir, "Makefile")) {
		t.Errorf("Makefile's fingerprint %q, lstat's %q", fp, lstatFingerprint(filepath.Join(dir, "Makefile")))
	}
	if !scan.host.gitDirs["nested/.git"] || !scan.host.gitDirs[".git"] {
		t.Errorf("git directories found: %v", scan.host.gitDirs)
	}
	for _, name := range []string{"a.txt", "pipe", "link", "build"} {
		var st unix.Stat_t
		hostfstest.Must(t, unix.Lstat(filepath.Join(dir, name), &st))
		if got, want := fingerprintOf(st), lstatFingerprint(filepath.Join(dir, name)); got != want {
			t.Errorf("%s: fingerprint %q, lstat's %q", name, got, want)
		}
	}
}

// .gitignore files past maxIgnorePatterns together make the status an
// error that says so, read no further: a task that wrote 1 MiB of
// patterns at every level of a deep chain made a scan take gigabytes.
func TestStatusRefusesMorePatternsThanItReads(t *testing.T) {
	dir := t.TempDir()
	runGit(t, dir, "init", "-q", "-b", "main")
	writeFiles(t, dir, map[string]string{"a.txt": "a\n"})
	runGit(t, dir, "add", "-A")
	runGit(t, dir, "commit", "-qm", "one")
	half := strings.Repeat("x\n", maxIgnorePatterns/2)
	writeFiles(t, dir, map[string]string{"d/.gitignore": half, "d/e/.gitignore": half, "d/e/f/.gitignore": half})
	refused := &hostfs.Refusal{}
	dirs, err := hostfs.GitDirsOf(dir)
	hostfstest.Must(t, err)
	repo, err := hostfs.OpenRepoAt(context.Background(), dir, dirs, refused)
	hostfstest.Must(t, err)
	if _, st, err := statusOf(context.Background(), dir, repo, dirs, nil); err == nil || !strings.Contains(err.Error(), "more than 10000 patterns") {
		t.Fatalf("status %v, %v; want the patterns refused", st, err)
	}
	hostfstest.Must(t, os.Remove(filepath.Join(dir, "d/e/f/.gitignore")))
	if _, _, err := statusOf(context.Background(), dir, repo, dirs, nil); err != nil {
		t.Fatalf("under the bound: %v", err)
	}
}

// An index of version 4 whose paths only grow (each the one before and
// more) is refused rather than read into the square of its size.
func TestReadIndexRefusesPathsThatOnlyGrow(t *testing.T) {
	var b bytes.Buffer
	b.WriteString("DIRC")
	b.Write([]byte{0, 0, 0, 4, 0, 0, 0x0f, 0xa0}) // version 4, 4000 entries
	suffix := strings.Repeat("a", 200)
	for range 4000 {
		b.Write(make([]byte, 24))         // ctime, mtime, dev, ino
		b.Write([]byte{0, 0, 0x81, 0xa4}) // mode 100644
		b.Write(make([]byte, 12+20))      // uid, gid, size, hash
		b.Write([]byte{0x0f, 0xff})       // flags: name length past 0xfff
		b.WriteByte(0)                    // strip nothing of the path before
		b.WriteString(suffix)
		b.WriteByte(0)
	}
	b.Write(make([]byte, 20))
	if _, err := parseIndex(b.Bytes()); err == nil || !strings.Contains(err.Error(), "longer than any git writes") {
		t.Fatalf("a growing index of %d bytes: %v", b.Len(), err)
	}
}
