package workspace

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"syscall"
	"time"

	"github.com/codex-connector/codex-connector/internal/hostfs"
	"golang.org/x/sys/unix"
)

// Host-run files: a task that may write the work tree can change files that
// tools on the host run or obey without asking — make reads the Makefile,
// direnv the .envrc, npm the scripts of package.json, an editor its
// workspace settings, CI its workflows, git its attributes and any git
// directory it finds. The sandbox cannot tell such a change from honest
// work, so the result lists them apart, for the caller to review before
// running anything. Which files they are: hostrun_rules.go.

// Bounds of the scan: it runs twice per task, before and after, and must
// not make a task on a huge tree late.
const (
	maxHostRunEntries = 500_000
	hostRunScanTime   = 10 * time.Second
)

// hostRunState fingerprints the host-run files of a work tree. The
// fingerprint comes from lstat alone (inode, mode, size, modification and
// change times): nothing a task made is opened, and a change time cannot be
// set back from inside the container.
type hostRunState struct {
	files map[string]string
	// cut says the scan stopped at its bounds or could not read a
	// directory (unreadable names the first): what it did not reach is not
	// compared.
	cut        bool
	unreadable string
	// gitDirs are the directories git would treat as a repository (by
	// what is in them, whatever their name), repository-relative: fingerprinted,
	// not entered, and read-only to a workspace-write task.
	gitDirs map[string]bool
}

// scanHostRun walks the work tree at root without following symlinks and
// without entering the repository's own .git, and fingerprints every
// host-run file. A git directory found below the root — a .git, or any
// directory git would take for a bare repository — is a nested
// repository: it is fingerprinted, not entered (scan.go).
func scanHostRun(root string) hostRunState {
	return *scanTree(context.Background(), root, scanWant{hostRun: true}).host
}

// openDirFlags open a directory of the work tree: never through a symlink
// swapped in since it was listed, never blocking.
const openDirFlags = os.O_RDONLY | syscall.O_DIRECTORY | syscall.O_NOFOLLOW | syscall.O_NONBLOCK | syscall.O_CLOEXEC

// isGitDirAt reports whether the open directory dirfd is one git takes
// for a git directory: a HEAD, and objects and refs (or a commondir that
// has them). Git also checks what HEAD holds and what the others are;
// here any entry of those names counts, so a directory that fails git's
// check only by a detail is flagged all the same.
func isGitDirAt(dirfd int) bool {
	has := func(name string) bool {
		var st unix.Stat_t
		return unix.Fstatat(dirfd, name, &st, unix.AT_SYMLINK_NOFOLLOW) == nil
	}
	return gitDirRule(has)
}

// gitDirRule is what git takes for a git directory, given what the
// directory has: a HEAD, and objects and refs or a commondir.
func gitDirRule(has func(name string) bool) bool {
	return has("HEAD") && (has("commondir") || has("objects") && has("refs"))
}

func dirFingerprint(p string) string {
	fi, err := os.Lstat(p)
	if err != nil {
		return "gone"
	}
	if s, ok := fi.Sys().(*syscall.Stat_t); ok {
		return fmt.Sprintf("dir %d", s.Ino)
	}
	return "dir"
}

func lstatFingerprint(p string) string {
	var st unix.Stat_t
	if err := unix.Lstat(p, &st); err != nil {
		return "gone"
	}
	return fingerprintOf(st)
}

// fingerprintOf is the fingerprint of a file whose lstat is s: its inode,
// mode, size and times.
func fingerprintOf(s unix.Stat_t) string {
	return fmt.Sprintf("%d %v %d %d.%d %d.%d", s.Ino, hostfs.ModeOf(s), s.Size, s.Mtim.Sec, s.Mtim.Nsec, s.Ctim.Sec, s.Ctim.Nsec)
}

// hostRunFiles lists the host-run files a run changed, created or removed:
// those the scans tell apart, and those among the files changed that the
// scans did not reach. Sorted, never nil.
func hostRunFiles(before, after *hostRunState, changed []string) []string {
	set := map[string]bool{}
	if before != nil && after != nil {
		for p, fp := range after.files {
			if was, ok := before.files[p]; ok && was != fp || !ok && fp != "gone" {
				set[p] = true
			}
		}
		for p, fp := range before.files {
			if _, ok := after.files[p]; !ok && fp != "gone" && !after.cut {
				set[p] = true
			}
		}
	}
	for _, p := range changed {
		if isHostRun(p) {
			set[filepath.ToSlash(p)] = true
		}
	}
	out := make([]string, 0, len(set))
	for p := range set {
		out = append(out, p)
	}
	sort.Strings(out)
	return out
}
