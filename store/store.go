package store

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

var (
	tasksBucket = []byte("tasks")
	metaBucket  = []byte("meta")
	schemaKey   = []byte("schema")
	// liveBucket indexes the tasks that have not ended (id → nothing), so
	// that what runs often (reconcile, lease renewal, listing what runs)
	// costs what is live, not the whole history. It is kept in the same
	// transactions as the records.
	liveBucket = []byte("live")
)

// ErrNotFound is returned for a task id that has no record.
var ErrNotFound = errors.New("no such task")

// ErrLocked is returned when another process holds the database for longer
// than the lock timeout.
var ErrLocked = errors.New("task database is locked by another process")

// ErrUnreadable is returned when the database file is damaged or not a
// database.
var ErrUnreadable = errors.New("cannot read the task database")

// Store is the task database. Several codex-connector processes (one per
// Claude Code window) share one file, and bbolt holds an exclusive file lock
// for as long as a database is open; so the store opens the file for each
// transaction and closes it straight after, and no process blocks the others
// for longer than one short transaction.
//
// A database that is locked, damaged or too new makes each call fail with a
// message that says what to do, never the process: the server keeps
// answering, and the next call tries again.
type Store struct {
	path        string
	lockTimeout time.Duration
	// mu serialises this process's own transactions: two opens of the same
	// file from one process would wait on each other's flock. It also
	// guards prepared.
	mu sync.Mutex
	// prepared is set once the buckets exist and the schema is known.
	prepared bool
}

// New returns the store of the database at path without touching the file;
// the first call prepares it. lockTimeout bounds how long any call waits for
// another process's lock.
func New(path string, lockTimeout time.Duration) *Store {
	return &Store{path: path, lockTimeout: lockTimeout}
}

// Open is New followed by Check.
func Open(path string, lockTimeout time.Duration) (*Store, error) {
	s := New(path, lockTimeout)
	if err := s.Check(); err != nil {
		return nil, err
	}
	return s, nil
}

// Check prepares the database (creating it and its directory if needed) and
// checks that its schema is one this version understands.
func (s *Store) Check() error {
	return s.view(func(*bolt.Tx) error { return nil })
}

// prepare creates the buckets, checks the schema version and migrates an
// older database, in the transaction it is given: a crash during the
// migration leaves the database as it was, and the next open migrates it.
func prepare(tx *bolt.Tx) error {
	meta, err := tx.CreateBucketIfNotExists(metaBucket)
	if err != nil {
		return err
	}
	if _, err := tx.CreateBucketIfNotExists(tasksBucket); err != nil {
		return err
	}
	n := 0
	if v := meta.Get(schemaKey); v != nil {
		if n, err = strconv.Atoi(string(v)); err != nil {
			return fmt.Errorf("schema version %q is unreadable", v)
		}
		if n > SchemaVersion {
			return fmt.Errorf("schema version %d is newer than this codex-connector understands (%d): upgrade codex-connector", n, SchemaVersion)
		}
	}
	if n == SchemaVersion {
		return nil
	}
	// Schema 1 (or a new file): build the index of live tasks.
	if err := rebuildLive(tx); err != nil {
		return fmt.Errorf("migrate to schema %d: %w", SchemaVersion, err)
	}
	return meta.Put(schemaKey, []byte(strconv.Itoa(SchemaVersion)))
}

// rebuildLive makes the index of live tasks anew from the records.
func rebuildLive(tx *bolt.Tx) error {
	if tx.Bucket(liveBucket) != nil {
		if err := tx.DeleteBucket(liveBucket); err != nil {
			return err
		}
	}
	live, err := tx.CreateBucket(liveBucket)
	if err != nil {
		return err
	}
	return tx.Bucket(tasksBucket).ForEach(func(k, v []byte) error {
		if t, err := decode(string(k), v); err == nil && !t.Status.Final() {
			return live.Put(k, nil)
		}
		return nil
	})
}

// index keeps t's entry in the index of live tasks as its status says.
func index(tx *bolt.Tx, t *Task) error {
	if t.Status.Final() {
		return tx.Bucket(liveBucket).Delete([]byte(t.ID))
	}
	return tx.Bucket(liveBucket).Put([]byte(t.ID), nil)
}

// RebuildLive makes the index of live tasks anew. A server of schema 1
// that was already running when the database was migrated writes records
// without the index; the housekeeping runs this now and then to catch up.
func (s *Store) RebuildLive() error {
	return s.update(rebuildLive)
}

// Path is the database file.
func (s *Store) Path() string { return s.path }

func (s *Store) withDB(readOnly bool, fn func(*bolt.DB) error) (err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.prepared {
		if err := os.MkdirAll(filepath.Dir(s.path), 0o700); err != nil {
			return fmt.Errorf("create task database directory: %w", err)
		}
		readOnly = false
	}
	// ReadOnly takes a shared lock, so readers of several processes do not
	// wait for each other; the file must exist first.
	if _, err := os.Stat(s.path); err != nil {
		readOnly = false
	}
	// bbolt panics on some kinds of damage to the file instead of returning
	// an error; a damaged file must not take the server down.
	defer func() {
		if p := recover(); p != nil {
			err = s.damaged(fmt.Errorf("%v", p))
		}
	}()
	db, err := bolt.Open(s.path, 0o600, &bolt.Options{Timeout: s.lockTimeout, ReadOnly: readOnly})
	if err != nil {
		if errors.Is(err, berrors.ErrTimeout) {
			return fmt.Errorf("%w (%s, waited %s): another codex-connector may be stuck; try again, or stop it", ErrLocked, s.path, s.lockTimeout)
		}
		return s.damaged(err)
	}
	defer db.Close()
	if !s.prepared {
		if err := db.Update(prepare); err != nil {
			return fmt.Errorf("prepare task database %s: %w", s.path, err)
		}
		s.prepared = true
	}
	return fn(db)
}

// damaged says how to get out of a database that cannot be read, without
// losing it: nothing in the file is changed until the user moves it.
func (s *Store) damaged(err error) error {
	return fmt.Errorf("%w %s: %v — move it aside (mv %s %s.bad) and codex-connector starts a new one; the logs and results in %s are kept",
		ErrUnreadable, s.path, err, s.path, s.path, filepath.Join(filepath.Dir(s.path), "logs"))
}

func (s *Store) update(fn func(*bolt.Tx) error) error {
	return s.withDB(false, func(db *bolt.DB) error { return db.Update(fn) })
}

func (s *Store) view(fn func(*bolt.Tx) error) error {
	return s.withDB(true, func(db *bolt.DB) error { return db.View(fn) })
}

// Create stores a new task; it fails if the id is taken.
func (s *Store) Create(t *Task) error {
	t.Version = RecordVersion
	data, err := json.Marshal(t)
	if err != nil {
		return fmt.Errorf("encode task %s: %w", t.ID, err)
	}
	err = s.update(func(tx *bolt.Tx) error {
		b := tx.Bucket(tasksBucket)
		if b.Get([]byte(t.ID)) != nil {
			return fmt.Errorf("task %s already exists", t.ID)
		}
		if err := b.Put([]byte(t.ID), data); err != nil {
			return err
		}
		return index(tx, t)
	})
	if err != nil {
		return fmt.Errorf("record task %s: %w", t.ID, err)
	}
	return nil
}

// Get returns the task with this id, ErrNotFound, or an error that says the
// record is corrupt.
func (s *Store) Get(id string) (*Task, error) {
	var t *Task
	err := s.view(func(tx *bolt.Tx) error {
		data := tx.Bucket(tasksBucket).Get([]byte(id))
		if data == nil {
			return fmt.Errorf("task %s: %w", id, ErrNotFound)
		}
		var err error
		t, err = decode(id, data)
		return err
	})
	return t, err
}

// Update applies fn to the current record of id and stores the result, in
// one transaction, so that changes made by another process in between are
// never overwritten. If fn returns an error nothing is written.
func (s *Store) Update(id string, fn func(*Task) error) (*Task, error) {
	var t *Task
	err := s.update(func(tx *bolt.Tx) error {
		b := tx.Bucket(tasksBucket)
		data := b.Get([]byte(id))
		if data == nil {
			return fmt.Errorf("task %s: %w", id, ErrNotFound)
		}
		var err error
		if t, err = decode(id, data); err != nil {
			return err
		}
		if err := fn(t); err != nil {
			return err
		}
		t.Version = RecordVersion
		if data, err = json.Marshal(t); err != nil {
			return fmt.Errorf("encode task %s: %w", id, err)
		}
		if err := b.Put([]byte(id), data); err != nil {
			return err
		}
		return index(tx, t)
	})
	if err != nil {
		return nil, err
	}
	return t, nil
}

// Filter selects tasks for List.
type Filter struct {
	// Statuses keeps tasks in any of these statuses; empty keeps all.
	Statuses []Status
	// Limit caps the number of tasks returned; 0 means no cap.
	Limit int
}

// List returns the tasks that match f, newest first, and the ids of records
// that could not be read (they are skipped, never dropped from the file).
// Its cost follows what it returns, not the history: live tasks come from
// their index, and a newest-first walk of the records (ids sort by their
// creation time) stops once it has Limit of them.
func (s *Store) List(f Filter) ([]*Task, []string, error) {
	var tasks []*Task
	var corrupt []string
	keep := func(k, v []byte) {
		t, err := decode(string(k), v)
		if err != nil {
			corrupt = append(corrupt, string(k))
			return
		}
		if matches(t, f.Statuses) {
			tasks = append(tasks, t)
		}
	}
	err := s.view(func(tx *bolt.Tx) error {
		b := tx.Bucket(tasksBucket)
		switch {
		case onlyLive(f.Statuses):
			return tx.Bucket(liveBucket).ForEach(func(k, _ []byte) error {
				if v := b.Get(k); v != nil {
					keep(k, v)
				}
				return nil
			})
		default:
			// Newest first. Ids of one second are in no order of their own,
			// so the walk goes on to the end of the second of the last one
			// kept; the sort below then orders them.
			c := b.Cursor()
			var second []byte
			for k, v := c.Last(); k != nil; k, v = c.Prev() {
				if f.Limit > 0 && len(tasks) >= f.Limit && !bytes.HasPrefix(k, second) {
					break
				}
				n := len(tasks)
				keep(k, v)
				if len(tasks) > n && len(k) >= len(idTimeLayout) {
					second = append(second[:0], k[:len(idTimeLayout)]...)
				}
			}
			return nil
		}
	})
	if err != nil {
		return nil, nil, fmt.Errorf("list tasks: %w", err)
	}
	sort.SliceStable(tasks, func(i, j int) bool {
		if !tasks[i].CreatedAt.Equal(tasks[j].CreatedAt) {
			return tasks[i].CreatedAt.After(tasks[j].CreatedAt)
		}
		return tasks[i].ID > tasks[j].ID
	})
	if f.Limit > 0 && len(tasks) > f.Limit {
		tasks = tasks[:f.Limit]
	}
	return tasks, corrupt, nil
}

// EndedBefore returns the ids of the tasks that ended before cutoff (or,
// with no end recorded, were made before it). It reads each record for its
// times alone and keeps only ids, so that a sweep of a long history costs
// little memory.
func (s *Store) EndedBefore(cutoff time.Time) ([]string, error) {
	var ids []string
	err := s.view(func(tx *bolt.Tx) error {
		return tx.Bucket(tasksBucket).ForEach(func(k, v []byte) error {
			var t struct {
				Status     Status    `json:"status"`
				CreatedAt  time.Time `json:"createdAt"`
				FinishedAt time.Time `json:"finishedAt"`
			}
			if json.Unmarshal(v, &t) != nil || !t.Status.Final() {
				return nil
			}
			ended := t.FinishedAt
			if ended.IsZero() {
				ended = t.CreatedAt
			}
			if ended.Before(cutoff) {
				ids = append(ids, string(k))
			}
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("list ended tasks: %w", err)
	}
	return ids, nil
}

// idTimeLayout is the time at the start of every task id (NewID).
const idTimeLayout = "20060102-150405"

// onlyLive says whether statuses names live ones alone, which the index
// of live tasks holds.
func onlyLive(statuses []Status) bool {
	for _, st := range statuses {
		if st.Final() {
			return false
		}
	}
	return len(statuses) > 0
}

func matches(t *Task, statuses []Status) bool {
	if len(statuses) == 0 {
		return true
	}
	for _, s := range statuses {
		if t.Status == s {
			return true
		}
	}
	return false
}

func decode(id string, data []byte) (*Task, error) {
	var t Task
	if err := json.Unmarshal(data, &t); err != nil {
		return nil, fmt.Errorf("task %s: record is corrupt (%v); it is kept as it is in the database", id, err)
	}
	if t.Version > RecordVersion {
		return nil, fmt.Errorf("task %s: record has version %d, newer than this codex-connector understands: upgrade codex-connector", id, t.Version)
	}
	if t.ID != id {
		// Paths and container names are made of the id: a record that names
		// another task must not lead anywhere.
		return nil, fmt.Errorf("task %s: record is corrupt (it names task %.40q); it is kept as it is in the database", id, t.ID)
	}
	return &t, nil
}

// Renew extends the lease of owner on the tasks it still follows, in one
// transaction, and returns those of ids it no longer holds: taken over by
// another follower, ended, or gone (an unreadable record counts as gone).
// Their records are left alone; the owner must stop following them.
func (s *Store) Renew(owner string, ids []string, until time.Time) (lost []string, err error) {
	if len(ids) == 0 {
		return nil, nil
	}
	err = s.update(func(tx *bolt.Tx) error {
		lost = lost[:0]
		b := tx.Bucket(tasksBucket)
		for _, id := range ids {
			data := b.Get([]byte(id))
			if data == nil {
				lost = append(lost, id)
				continue
			}
			t, err := decode(id, data)
			if err != nil || t.Follower != owner || t.Status.Final() {
				lost = append(lost, id)
				continue
			}
			t.LeaseUntil = until
			if data, err = json.Marshal(t); err != nil {
				return err
			}
			if err := b.Put([]byte(id), data); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return lost, nil
}

// HandOver ends the leases owner holds on tasks that have not ended, in one
// transaction, so that another process may take them over at once rather
// than when they lapse. It returns the ids handed. The records name no
// follower after it, so that a write owner still makes for them fails its
// check, and a renewal of owner's cannot extend them again.
func (s *Store) HandOver(owner string) (handed []string, err error) {
	err = s.update(func(tx *bolt.Tx) error {
		handed = handed[:0]
		b := tx.Bucket(tasksBucket)
		// bolt forbids changing a bucket inside its ForEach: find, then write.
		var held []*Task
		if err := tx.Bucket(liveBucket).ForEach(func(k, _ []byte) error {
			v := b.Get(k)
			if v == nil {
				return nil
			}
			t, err := decode(string(k), v)
			if err == nil && t.Follower == owner && !t.Status.Final() && !t.LeaseUntil.IsZero() {
				held = append(held, t)
			}
			return nil
		}); err != nil {
			return err
		}
		for _, t := range held {
			t.Follower, t.LeaseUntil = "", time.Time{}
			data, err := json.Marshal(t)
			if err != nil {
				return err
			}
			if err := b.Put([]byte(t.ID), data); err != nil {
				return err
			}
			handed = append(handed, t.ID)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return handed, nil
}

// ErrNotFinished is returned when deleting a task that has not ended.
var ErrNotFinished = errors.New("task has not finished")

// DeleteFinished removes the record of a task that has ended; a queued or
// running task is never removed.
func (s *Store) DeleteFinished(id string) error {
	return s.update(func(tx *bolt.Tx) error {
		b := tx.Bucket(tasksBucket)
		data := b.Get([]byte(id))
		if data == nil {
			return nil
		}
		t, err := decode(id, data)
		if err != nil {
			return err
		}
		if !t.Status.Final() {
			return fmt.Errorf("task %s is %s: %w", id, t.Status, ErrNotFinished)
		}
		if err := tx.Bucket(liveBucket).Delete([]byte(id)); err != nil {
			return err
		}
		return b.Delete([]byte(id))
	})
}
