package workspace

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/codex-connector/codex-connector/bench/benchtab"
)

// benchRepo is a generated repository of files files of about size bytes
// each, committed, kept between runs on one machine (generating the large
// one takes a minute): under the temporary directory, by its shape.
func benchRepo(b *testing.B, files, size int) string {
	b.Helper()
	dir := filepath.Join(os.TempDir(), fmt.Sprintf("codex-connector-bench-repo-%d-%d-v1", files, size))
	if _, err := os.Stat(filepath.Join(dir, ".git", "codex-connector-bench-done")); err == nil {
		return dir
	}
	_ = os.RemoveAll(dir)
	rng := rand.New(rand.NewPCG(1, uint64(files)))
	line := strings.Repeat("0123456789abcdef", 4) + "\n"
	for i := range files {
		// 20 files a directory, directories 3 deep: a source tree's shape.
		rel := filepath.Join(fmt.Sprintf("pkg%02d", i/2000), fmt.Sprintf("mod%03d", i/20%100), fmt.Sprintf("file%05d.go", i))
		p := filepath.Join(dir, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			b.Fatal(err)
		}
		var sb strings.Builder
		fmt.Fprintf(&sb, "// file %d, %d\n", i, rng.Uint64())
		for sb.Len() < size {
			sb.WriteString(line)
		}
		if err := os.WriteFile(p, []byte(sb.String()), 0o644); err != nil {
			b.Fatal(err)
		}
	}
	for _, args := range [][]string{{"init", "-q", "-b", "main"}, {"add", "-A"}, {"commit", "-qm", "generated"}, {"gc", "-q"}} {
		benchGit(b, dir, args...)
	}
	if err := os.WriteFile(filepath.Join(dir, ".git", "codex-connector-bench-done"), nil, 0o644); err != nil {
		b.Fatal(err)
	}
	return dir
}

func benchGit(b *testing.B, dir string, args ...string) {
	b.Helper()
	cmd := exec.Command("git", append([]string{"-c", "safe.directory=*", "-c", "user.name=b", "-c", "user.email=b@example.invalid", "-c", "gc.auto=0"}, args...)...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GIT_CONFIG_NOSYSTEM=1")
	if out, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("git %v: %v\n%s", args, err, out)
	}
}

func since(t time.Time) float64 { return float64(time.Since(t).Microseconds()) / 1000 }

// editTen changes ten files of a work tree, spread over it.
func editTen(b *testing.B, root string, files, rep int) {
	for k := range 10 {
		i := (k*files/10 + rep) % files
		rel := filepath.Join(fmt.Sprintf("pkg%02d", i/2000), fmt.Sprintf("mod%03d", i/20%100), fmt.Sprintf("file%05d.go", i))
		if err := os.WriteFile(filepath.Join(root, rel), []byte(fmt.Sprintf("changed %d %d\n", rep, k)), 0o644); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkBranchWorkspace measures a branch task's host-side work on
// generated repositories of 3,000 and 30,000 files (12 and 120 MB), side by
// side with what git does for the same: the workspace made (the checkout,
// and the scan for uncommitted changes) against `git worktree add` of the
// same commit; ten changed files collected into a branch against `git add
// -A && git commit` in that worktree.
func BenchmarkBranchWorkspace(b *testing.B) {
	owner := Owner{UID: os.Getuid(), GID: os.Getgid()}
	shapes := []struct{ files, size int }{{3000, 4096}, {30000, 4096}}
	if tenTimes() {
		shapes = append(shapes, struct{ files, size int }{300000, 4096})
	}
	for _, shape := range shapes {
		repo := benchRepo(b, shape.files, shape.size)
		reps := benchtab.Reps(3)
		var ready, worktree, collect, commit []float64
		for rep := range reps {
			tmp := b.TempDir()
			dir := filepath.Join(tmp, "ws")
			began := time.Now()
			p, err := PrepareBranch(context.Background(), BranchSpec{Repo: repo, Dir: dir, Carry: true, Branch: fmt.Sprintf("codex/bench%d", rep), Task: "bench",
				Owner: owner, ObjectsMount: filepath.Join(repo, ".git", "objects")})
			if err != nil {
				b.Fatal(err)
			}
			ready = append(ready, since(began))
			wt := filepath.Join(tmp, "wt")
			began = time.Now()
			benchGit(b, repo, "worktree", "add", "-q", "--detach", wt, "HEAD")
			worktree = append(worktree, since(began))

			editTen(b, TreeDir(dir), shape.files, rep)
			began = time.Now()
			c, err := CollectBranch(context.Background(), CollectSpec{Repo: repo, Dir: dir, Branch: fmt.Sprintf("codex/bench%d", rep), Start: p.Start, Task: "bench", Owner: owner, When: time.Now()})
			if err != nil {
				b.Fatal(err)
			}
			collect = append(collect, since(began))
			if len(c.Files) != 10 {
				b.Fatalf("collected %d files, want the 10 changed", len(c.Files))
			}
			editTen(b, wt, shape.files, rep)
			began = time.Now()
			benchGit(b, wt, "add", "-A")
			benchGit(b, wt, "commit", "-qm", "ten")
			commit = append(commit, since(began))

			benchGit(b, repo, "worktree", "remove", "--force", wt)
			benchGit(b, repo, "branch", "-D", fmt.Sprintf("codex/bench%d", rep))
			// Each rep's checkouts go with it: at 300,000 files they are
			// 1.2 GB each.
			if err := os.RemoveAll(tmp); err != nil {
				b.Fatal(err)
			}
		}
		m := benchtab.Median
		size := fmt.Sprintf("%d files, %d MB", shape.files, shape.files*shape.size>>20)
		for _, row := range []benchtab.Row{
			{Name: "branch workspace ready, " + size, Unit: "ms", Ours: m(ready), Reference: benchtab.Ref(m(worktree)),
				ReferenceName: "git worktree add of the same commit", MaxRatio: 1.3, Reps: reps,
				Note: "checkout, index, and the scan for the user's uncommitted changes (none here)"},
			{Name: "branch collected, 10 files changed, " + size, Unit: "ms", Ours: m(collect), Reference: benchtab.Ref(m(commit)),
				ReferenceName: "git add -A && git commit in that worktree", MaxRatio: 1.5, Reps: reps,
				Note: "the tree stat'ed, the ten hashed, objects and the branch written"},
		} {
			line, err := benchtab.Record(row)
			if err != nil {
				b.Fatal(err)
			}
			b.Log(line)
		}
	}
}

// BenchmarkSharedScans measures what a workspace-write task in the shared
// work tree costs the server on the host: the scans before the run (git
// status, host-run files, disk use) and after it (status and host-run
// files again), on the generated 30,000-file repository with ten files
// changed, against one `git status` of the same tree.
func BenchmarkSharedScans(b *testing.B) {
	sizes := []int{30000}
	if tenTimes() {
		sizes = append(sizes, 300000)
	}
	for _, files := range sizes {
		sharedScans(b, files)
	}
}

// tenTimes says whether the benchmarks also run at ten times the size the
// issue names (300,000 files, 1.2 GB): CODEX_CONNECTOR_BENCH_10X=1. Making
// that repository takes minutes and the disk it needs, so it is asked for.
func tenTimes() bool { return os.Getenv("CODEX_CONNECTOR_BENCH_10X") == "1" }

func sharedScans(b *testing.B, files int) {
	repo := benchRepo(b, files, 4096)
	wt := filepath.Join(b.TempDir(), "wt")
	benchGit(b, repo, "worktree", "add", "-q", "--detach", wt, "HEAD")
	b.Cleanup(func() { benchGit(b, repo, "worktree", "remove", "--force", wt) })
	editTen(b, wt, files, 0)
	benchGit(b, wt, "status", "--porcelain") // the index refreshed, as a user's is
	reps := benchtab.Reps(3)
	var ours, status []float64
	for range reps {
		began := time.Now()
		s, err := Begin(wt)
		if err != nil {
			b.Fatal(err)
		}
		changed, err := s.Changed()
		if err != nil {
			b.Fatal(err)
		}
		s.HostRunChanged(changed)
		ours = append(ours, since(began))
		began = time.Now()
		benchGit(b, wt, "status", "--porcelain")
		status = append(status, since(began))
	}
	line, err := benchtab.Record(benchtab.Row{Name: fmt.Sprintf("shared work tree: the host-side scans of a workspace-write task, %d files", files), Unit: "ms",
		Ours: benchtab.Median(ours), Reference: benchtab.Ref(benchtab.Median(status)), ReferenceName: "one git status of the same tree",
		MaxRatio: 2, Reps: reps, Note: "before the run (status, host-run files, disk use) and after it (status, host-run files); wall time"})
	if err != nil {
		b.Fatal(err)
	}
	b.Log(line)
}
