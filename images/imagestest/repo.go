package imagestest

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/volume"
	"github.com/docker/docker/client"
	git "github.com/go-git/go-git/v5"
)

// RepoUID and RepoGID own the repositories Repo makes: not root, so that a
// test of file ownership means something.
const RepoUID, RepoGID = 1000, 1000

// Repo makes a git repository with one file, owned by RepoUID:RepoGID when
// the test runs as root, and returns its path.
func Repo(t testing.TB) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "repo")
	if _, err := git.PlainInit(dir, false); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "README"), []byte("hello\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	Chown(t, dir)
	t.Cleanup(func() { removeCaches(dir) })
	return dir
}

// removeCaches removes the package cache volumes tasks in repo made: they
// are kept per repository, and a test's repository is gone after it.
func removeCaches(repo string) {
	cli, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
	if err != nil {
		return
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// The label runner.LabelCacheRepo; this package cannot import runner.
	resp, err := cli.VolumeList(ctx, volume.ListOptions{Filters: filters.NewArgs(filters.Arg("label", "codex-connector.cache-repo="+repo))})
	if err != nil {
		return
	}
	// A task's container may be on its way out still, holding its volumes.
	for _, v := range resp.Volumes {
		for cli.VolumeRemove(ctx, v.Name, false) != nil && ctx.Err() == nil {
			time.Sleep(200 * time.Millisecond)
		}
	}
}

// Chown hands everything under dir to RepoUID:RepoGID (as root only).
func Chown(t testing.TB, dir string) {
	t.Helper()
	if os.Geteuid() != 0 {
		return
	}
	err := filepath.Walk(dir, func(p string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, RepoUID, RepoGID)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// FakeSessionText is what FakeSession writes.
const FakeSessionText = `{"type":"session_meta","payload":{"model_provider":"fake"}}` + "\n"

// FakeSession writes, in a fake Codex task's state directory, a session
// file of thread where the real Codex keeps one (the fake keeps none), and
// returns the sessions directory.
func FakeSession(t testing.TB, stateDir, thread string) string {
	t.Helper()
	sessions := filepath.Join(stateDir, "codex-home", "sessions")
	day := filepath.Join(sessions, "2026", "12", "04")
	if err := os.MkdirAll(day, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(day, "rollout-2026-12-04T10-00-00-"+thread+".jsonl"), []byte(FakeSessionText), 0o600); err != nil {
		t.Fatal(err)
	}
	return sessions
}
