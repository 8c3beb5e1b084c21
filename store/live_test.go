package store

import (
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

func liveIDs(t *testing.T, s *Store) []string {
	t.Helper()
	var ids []string
	err := s.view(func(tx *bolt.Tx) error {
		return tx.Bucket(liveBucket).ForEach(func(k, _ []byte) error {
			ids = append(ids, string(k))
			return nil
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	return ids
}

// TestTheLiveIndexFollowsTheRecords: the index holds exactly the tasks
// that have not ended, through create, update, delete and a rebuild.
func TestTheLiveIndexFollowsTheRecords(t *testing.T) {
	s := openTemp(t)
	now := time.Date(2026, 12, 4, 10, 0, 0, 0, time.UTC)
	var want []string
	for i := range 40 {
		st := []Status{Completed, Failed, Queued, Running}[i%4]
		tk := task(NewID(now.Add(time.Duration(i)*time.Second)), now.Add(time.Duration(i)*time.Second), st)
		if err := s.Create(tk); err != nil {
			t.Fatal(err)
		}
		if !st.Final() {
			want = append(want, tk.ID)
		}
	}
	ended := want[0]
	if _, err := s.Update(ended, func(t *Task) error { t.Status = Completed; return nil }); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteFinished(ended); err != nil {
		t.Fatal(err)
	}
	want = want[1:]
	if got := liveIDs(t, s); !slices.Equal(got, want) {
		t.Fatalf("index %v, want %v", got, want)
	}
	live, _, err := s.List(Filter{Statuses: []Status{Queued, Running}})
	if err != nil || len(live) != len(want) {
		t.Fatalf("listed %d live tasks, want %d (%v)", len(live), len(want), err)
	}
	if err := s.RebuildLive(); err != nil {
		t.Fatal(err)
	}
	if got := liveIDs(t, s); !slices.Equal(got, want) {
		t.Fatalf("index after a rebuild %v, want %v", got, want)
	}
}

// TestListingNewestFirstStopsEarlyAndSortsAsBefore: with many tasks in
// the same seconds (ids of one second sort at random), a limited listing
// gives exactly what sorting everything gives.
func TestListingNewestFirstStopsEarlyAndSortsAsBefore(t *testing.T) {
	s := openTemp(t)
	start := time.Date(2026, 12, 4, 10, 0, 0, 0, time.UTC)
	sts := []Status{Completed, Failed, Cancelled, TimedOut, Running, Queued}
	for i := range 300 {
		created := start.Add(time.Duration(i/7)*time.Second + time.Duration(rand.IntN(999))*time.Millisecond)
		if err := s.Create(task(NewID(created), created, sts[rand.IntN(len(sts))])); err != nil {
			t.Fatal(err)
		}
	}
	all, _, err := s.List(Filter{})
	if err != nil || len(all) != 300 {
		t.Fatalf("%d, %v", len(all), err)
	}
	for _, f := range []Filter{{Limit: 1}, {Limit: 20}, {Limit: 299}, {Statuses: []Status{Failed, Cancelled, TimedOut}, Limit: 20}, {Statuses: []Status{Running}, Limit: 5}, {Statuses: []Status{Queued, Running}}} {
		got, _, err := s.List(f)
		if err != nil {
			t.Fatal(err)
		}
		var want []*Task
		for _, tk := range all {
			if matches(tk, f.Statuses) && (f.Limit == 0 || len(want) < f.Limit) {
				want = append(want, tk)
			}
		}
		if ids(got) != ids(want) {
			t.Errorf("%+v:\n got %s\nwant %s", f, ids(got), ids(want))
		}
	}
}

func ids(ts []*Task) string {
	var out []string
	for _, t := range ts {
		out = append(out, t.ID)
	}
	return strings.Join(out, ",")
}

// TestASchema1DatabaseIsMigratedInPlace: a database as the first schema
// left it (records, no index) gets its index at the first open, in the
// same transaction as the new schema number; a newer schema is refused.
func TestASchema1DatabaseIsMigratedInPlace(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tasks.db")
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 12, 4, 10, 0, 0, 0, time.UTC)
	var live []string
	err = db.Update(func(tx *bolt.Tx) error {
		meta, _ := tx.CreateBucket(metaBucket)
		tasks, _ := tx.CreateBucket(tasksBucket)
		if err := meta.Put(schemaKey, []byte("1")); err != nil {
			return err
		}
		for i, st := range []Status{Completed, Running, Failed, Queued} {
			tk := task(NewID(now.Add(time.Duration(i)*time.Second)), now, st)
			tk.Version = 1
			if err := tasks.Put([]byte(tk.ID), []byte(fmt.Sprintf(`{"v":1,"id":%q,"task":"p","status":%q,"createdAt":"2026-12-04T10:00:00Z"}`, tk.ID, st))); err != nil {
				return err
			}
			if !st.Final() {
				live = append(live, tk.ID)
			}
		}
		return nil
	})
	db.Close()
	if err != nil {
		t.Fatal(err)
	}
	s, err := Open(path, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if got := liveIDs(t, s); !slices.Equal(got, live) {
		t.Fatalf("index %v, want %v", got, live)
	}
	var schema string
	_ = s.view(func(tx *bolt.Tx) error { schema = string(tx.Bucket(metaBucket).Get(schemaKey)); return nil })
	if schema != strconv.Itoa(SchemaVersion) {
		t.Fatalf("schema %s", schema)
	}
	t.Run("a newer schema is refused, saying what to do", func(t *testing.T) {
		_ = s.update(func(tx *bolt.Tx) error { return tx.Bucket(metaBucket).Put(schemaKey, []byte("3")) })
		_, err := Open(path, time.Second)
		if err == nil || !strings.Contains(err.Error(), "schema version 3 is newer than this codex-connector understands (2): upgrade codex-connector") {
			t.Fatalf("error %v", err)
		}
	})
}

// TestEndedBeforeKeepsOnlyIds: retention's sweep finds the tasks that
// ended before the cutoff, whenever they were made, and no live one.
func TestEndedBeforeKeepsOnlyIds(t *testing.T) {
	s := openTemp(t)
	now := time.Date(2026, 12, 4, 10, 0, 0, 0, time.UTC)
	old, recent, live := task(NewID(now), now, Completed), task(NewID(now.Add(time.Second)), now, Failed), task(NewID(now.Add(2*time.Second)), now, Running)
	old.FinishedAt, recent.FinishedAt = now.Add(-48*time.Hour), now
	for _, tk := range []*Task{old, recent, live} {
		if err := s.Create(tk); err != nil {
			t.Fatal(err)
		}
	}
	got, err := s.EndedBefore(now.Add(-24 * time.Hour))
	if err != nil || !slices.Equal(got, []string{old.ID}) {
		t.Fatalf("%v, %v", got, err)
	}
}
