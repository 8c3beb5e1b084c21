package store

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

func openTemp(t *testing.T) *Store {
	t.Helper()
	s, err := Open(filepath.Join(t.TempDir(), "tasks.db"), 500*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func task(id string, created time.Time, st Status) *Task {
	return &Task{ID: id, Prompt: "p " + id, Status: st, CreatedAt: created, Sandbox: "read-only"}
}

func TestCreateGetUpdate(t *testing.T) {
	s := openTemp(t)
	now := time.Now().UTC().Truncate(time.Millisecond)
	in := task(NewID(now), now, Queued)
	in.Deadline = now.Add(time.Hour)
	if err := s.Create(in); err != nil {
		t.Fatal(err)
	}
	t.Run("a created task reads back equal", func(t *testing.T) {
		got, err := s.Get(in.ID)
		if err != nil {
			t.Fatal(err)
		}
		if got.Prompt != in.Prompt || !got.Deadline.Equal(in.Deadline) || got.Version != RecordVersion || got.Status != Queued {
			t.Fatalf("got %+v, want %+v", got, in)
		}
	})
	t.Run("an id cannot be created twice", func(t *testing.T) {
		if err := s.Create(in); err == nil {
			t.Fatal("second create succeeded")
		}
	})
	t.Run("update changes the stored record", func(t *testing.T) {
		code := 3
		_, err := s.Update(in.ID, func(t *Task) error { t.Status = Failed; t.ExitCode = &code; return nil })
		if err != nil {
			t.Fatal(err)
		}
		got, _ := s.Get(in.ID)
		if got.Status != Failed || got.ExitCode == nil || *got.ExitCode != 3 {
			t.Fatalf("got %+v", got)
		}
	})
	t.Run("an update whose function fails writes nothing", func(t *testing.T) {
		_, err := s.Update(in.ID, func(t *Task) error { t.Status = Completed; return errors.New("no") })
		if err == nil {
			t.Fatal("want error")
		}
		got, _ := s.Get(in.ID)
		if got.Status != Failed {
			t.Fatalf("status %s, want failed", got.Status)
		}
	})
	t.Run("an unknown id is ErrNotFound", func(t *testing.T) {
		if _, err := s.Get("20000101-000000-000000"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("got %v", err)
		}
		if _, err := s.Update("20000101-000000-000000", func(*Task) error { return nil }); !errors.Is(err, ErrNotFound) {
			t.Fatalf("got %v", err)
		}
	})
}

func TestListNewestFirstFilteredAndLimited(t *testing.T) {
	s := openTemp(t)
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	statuses := []Status{Completed, Failed, Running, Completed, Cancelled, TimedOut}
	for i, st := range statuses {
		if err := s.Create(task(fmt.Sprintf("t%d", i), base.Add(time.Duration(i)*time.Minute), st)); err != nil {
			t.Fatal(err)
		}
	}
	ids := func(ts []*Task) string {
		var out []string
		for _, t := range ts {
			out = append(out, t.ID)
		}
		return strings.Join(out, ",")
	}
	for _, tc := range []struct {
		name string
		f    Filter
		want string
	}{
		{"all, newest first", Filter{}, "t5,t4,t3,t2,t1,t0"},
		{"a limit keeps the newest", Filter{Limit: 2}, "t5,t4"},
		{"a status filter", Filter{Statuses: []Status{Completed}}, "t3,t0"},
		{"several statuses", Filter{Statuses: []Status{Failed, TimedOut, Cancelled}}, "t5,t4,t1"},
		{"filter and limit", Filter{Statuses: []Status{Completed}, Limit: 1}, "t3"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, corrupt, err := s.List(tc.f)
			if err != nil || len(corrupt) != 0 {
				t.Fatal(err, corrupt)
			}
			if ids(got) != tc.want {
				t.Fatalf("got %s, want %s", ids(got), tc.want)
			}
		})
	}
}

func TestCorruptRecordIsReportedAndKept(t *testing.T) {
	s := openTemp(t)
	if err := s.Create(task("good", time.Now(), Completed)); err != nil {
		t.Fatal(err)
	}
	db, err := bolt.Open(s.Path(), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(func(tx *bolt.Tx) error { return tx.Bucket(tasksBucket).Put([]byte("bad"), []byte("{not json")) }); err != nil {
		t.Fatal(err)
	}
	db.Close()

	got, corrupt, err := s.List(Filter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].ID != "good" || len(corrupt) != 1 || corrupt[0] != "bad" {
		t.Fatalf("list = %v, corrupt = %v", got, corrupt)
	}
	if _, err := s.Get("bad"); err == nil || !strings.Contains(err.Error(), "corrupt") {
		t.Fatalf("get corrupt record: %v", err)
	}
	if _, err := s.Update("bad", func(*Task) error { return nil }); err == nil {
		t.Fatal("update of a corrupt record succeeded")
	}
	// The bytes are still there for a person to inspect or repair.
	db, _ = bolt.Open(s.Path(), 0o600, &bolt.Options{ReadOnly: true})
	defer db.Close()
	_ = db.View(func(tx *bolt.Tx) error {
		if string(tx.Bucket(tasksBucket).Get([]byte("bad"))) != "{not json" {
			t.Error("corrupt record was changed")
		}
		return nil
	})
}

func TestLockedDatabaseFailsWithinTimeout(t *testing.T) {
	s := openTemp(t)
	holder, err := bolt.Open(s.Path(), 0o600, nil) // an exclusive lock, as another process would hold
	if err != nil {
		t.Fatal(err)
	}
	defer holder.Close()
	done := make(chan error, 1)
	go func() { _, err := s.Get("x"); done <- err }()
	select {
	case err := <-done:
		if !errors.Is(err, ErrLocked) || !strings.Contains(err.Error(), s.Path()) {
			t.Fatalf("got %v, want ErrLocked naming the file", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Get hung on a locked database")
	}
}

func TestUnreadableDatabaseSaysWhatToDo(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tasks.db")
	if err := os.WriteFile(path, []byte(strings.Repeat("garbage!", 1024)), 0o600); err != nil {
		t.Fatal(err)
	}
	s := New(path, time.Second)
	for i := 0; i < 2; i++ { // the second call tries again, and says the same
		_, err := s.Get("20261125-061000-abcdef")
		if !errors.Is(err, ErrUnreadable) || !strings.Contains(err.Error(), "move it aside") {
			t.Fatalf("got %v", err)
		}
	}
	if data, _ := os.ReadFile(path); string(data) != strings.Repeat("garbage!", 1024) {
		t.Fatal("the unreadable file was changed")
	}
}

// A file whose pages are damaged past the meta pages makes bbolt panic on
// some reads; the store turns that into an error the caller can act on.
func TestDamagedPagesGiveAnError(t *testing.T) {
	s := openTemp(t)
	for i := 0; i < 200; i++ {
		if err := s.Create(&Task{ID: fmt.Sprintf("20261125-061000-%06x", i), Prompt: strings.Repeat("p", 500), CreatedAt: time.Now()}); err != nil {
			t.Fatal(err)
		}
	}
	f, err := os.OpenFile(s.Path(), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	page := int64(os.Getpagesize())
	fi, _ := f.Stat()
	for off := 2 * page; off < fi.Size(); off += page {
		if _, err := f.WriteAt(bytes.Repeat([]byte{0xA5}, 64), off); err != nil {
			t.Fatal(err)
		}
	}
	f.Close()
	_, _, err = s.List(Filter{})
	t.Log(err)
	if !errors.Is(err, ErrUnreadable) || !strings.Contains(err.Error(), "move it aside") {
		t.Fatalf("List of a damaged file: got %v, want ErrUnreadable", err)
	}
}

func TestConcurrentUpdatesLoseNothing(t *testing.T) {
	s := openTemp(t)
	if err := s.Create(&Task{ID: "n", CreatedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := s.Update("n", func(t *Task) error { t.LogBytes++; return nil }); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	got, _ := s.Get("n")
	if got.LogBytes != 20 {
		t.Fatalf("LogBytes = %d, want 20", got.LogBytes)
	}
}

func TestIDs(t *testing.T) {
	id := NewID(time.Date(2026, 11, 25, 6, 10, 0, 0, time.UTC))
	if !strings.HasPrefix(id, "20261125-061000-") || !ValidID(id) {
		t.Fatalf("NewID = %q", id)
	}
	for _, bad := range []string{"", "../../etc/passwd", "20261125-061000-ABCDEF", "20261125-061000-abcdefg", "x0261125-061000-abcdef"} {
		if ValidID(bad) {
			t.Errorf("ValidID(%q) = true", bad)
		}
	}
}

// Renew extends only the leases the owner still holds and names the others:
// taken over, ended, or gone. Their records are left as they are.
func TestRenewNamesTheLeasesItNoLongerHolds(t *testing.T) {
	s := openTemp(t)
	now := time.Now().UTC().Truncate(time.Millisecond)
	mk := func(i int, st Status, follower string) string {
		tk := task(NewID(now.Add(time.Duration(i)*time.Second)), now, st)
		tk.Follower, tk.LeaseUntil = follower, now.Add(time.Second)
		if err := s.Create(tk); err != nil {
			t.Fatal(err)
		}
		return tk.ID
	}
	held := mk(0, Running, "me")
	taken := mk(1, Running, "other")
	ended := mk(2, Completed, "me")
	gone := NewID(now.Add(time.Hour))
	until := now.Add(time.Minute)
	lost, err := s.Renew("me", []string{held, taken, ended, gone}, until)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{taken, ended, gone}; fmt.Sprint(lost) != fmt.Sprint(want) {
		t.Fatalf("lost = %v, want %v", lost, want)
	}
	if got, _ := s.Get(held); !got.LeaseUntil.Equal(until) {
		t.Errorf("the held lease is until %s, want %s", got.LeaseUntil, until)
	}
	for _, id := range []string{taken, ended} {
		if got, _ := s.Get(id); !got.LeaseUntil.Equal(now.Add(time.Second)) {
			t.Errorf("task %s: a lease not held was changed to %s", id, got.LeaseUntil)
		}
	}
}

func TestReleaseEndsOnlyTheOwnersLiveLeases(t *testing.T) {
	s := openTemp(t)
	now := time.Now().UTC().Truncate(time.Millisecond)
	mk := func(i int, st Status, follower string) string {
		tk := task(NewID(now.Add(time.Duration(i)*time.Second)), now, st)
		tk.Follower, tk.LeaseUntil = follower, now.Add(time.Minute)
		if err := s.Create(tk); err != nil {
			t.Fatal(err)
		}
		return tk.ID
	}
	running := mk(0, Running, "me")
	queued := mk(1, Queued, "me")
	other := mk(2, Running, "other")
	ended := mk(3, Completed, "me")
	released, err := s.HandOver("me")
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{running, queued}; fmt.Sprint(released) != fmt.Sprint(want) {
		t.Fatalf("released %v, want %v", released, want)
	}
	for _, id := range []string{running, queued} {
		if got, _ := s.Get(id); !got.LeaseUntil.IsZero() || got.Follower != "" {
			t.Errorf("task %s after release: follower %q until %s", id, got.Follower, got.LeaseUntil)
		}
	}
	for _, id := range []string{other, ended} {
		if got, _ := s.Get(id); !got.LeaseUntil.Equal(now.Add(time.Minute)) {
			t.Errorf("task %s: a lease not to release was changed to %s", id, got.LeaseUntil)
		}
	}
	if again, err := s.HandOver("me"); err != nil || len(again) != 0 {
		t.Errorf("a second release: %v, %v", again, err)
	}
}
