package store

import (
	"slices"
	"strings"
	"testing"
	"time"
)

// TestCreateManyIsManyCreates: a batch reads back as the same records made
// one by one would, with the live ones in the index, and a batch with a
// taken id records nothing.
func TestCreateManyIsManyCreates(t *testing.T) {
	s := openTemp(t)
	now := time.Date(2026, 12, 4, 10, 0, 0, 0, time.UTC)
	var batch []*Task
	var live []string
	for i := range 30 {
		at := now.Add(time.Duration(i) * time.Second)
		st := []Status{Completed, Running, Failed}[i%3]
		batch = append(batch, task(NewID(at), at, st))
		if !st.Final() {
			live = append(live, batch[i].ID)
		}
	}
	if err := s.CreateMany(batch); err != nil {
		t.Fatal(err)
	}
	t.Run("every record reads back, newest first", func(t *testing.T) {
		got, corrupt, err := s.List(Filter{})
		if err != nil || len(corrupt) > 0 || len(got) != len(batch) {
			t.Fatalf("listed %d (corrupt %v, %v), want %d", len(got), corrupt, err, len(batch))
		}
		for i, tk := range got {
			want := batch[len(batch)-1-i]
			if tk.ID != want.ID || tk.Status != want.Status || tk.Version != RecordVersion || !tk.CreatedAt.Equal(want.CreatedAt) {
				t.Fatalf("task %d: %+v, want %+v", i, tk, want)
			}
		}
	})
	t.Run("the live ones, and only they, are in the index", func(t *testing.T) {
		if got := liveIDs(t, s); !slices.Equal(got, live) {
			t.Fatalf("index %v, want %v", got, live)
		}
	})
	t.Run("a batch with a taken id records nothing", func(t *testing.T) {
		at := now.Add(time.Hour)
		fresh := task(NewID(at), at, Queued)
		err := s.CreateMany([]*Task{fresh, task(batch[0].ID, now, Queued)})
		if err == nil || !strings.Contains(err.Error(), batch[0].ID+" already exists") {
			t.Fatalf("err %v", err)
		}
		if _, err := s.Get(fresh.ID); err == nil {
			t.Fatal("the batch's other task was recorded")
		}
		if got := liveIDs(t, s); !slices.Equal(got, live) {
			t.Fatalf("index %v after a refused batch", got)
		}
	})
	t.Run("an id twice in one batch is refused", func(t *testing.T) {
		at := now.Add(2 * time.Hour)
		id := NewID(at)
		if err := s.CreateMany([]*Task{task(id, at, Completed), task(id, at, Completed)}); err == nil {
			t.Fatal("no error")
		}
		if _, err := s.Get(id); err == nil {
			t.Fatal("recorded")
		}
	})
}
