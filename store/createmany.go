package store

import (
	"encoding/json"
	"fmt"

	bolt "go.etcd.io/bbolt"
)

// CreateMany stores new tasks in one transaction, with their entries in
// the index of live tasks: all of them, or none if any id is taken (in the
// database or twice in tasks). It is Create for many records at once, for
// a history made in one go (the benchmarks' 100,000 tasks); a transaction
// holds its records in memory until it commits, so pass tens of
// thousands at a time, not millions.
func (s *Store) CreateMany(tasks []*Task) error {
	data := make([][]byte, len(tasks))
	for i, t := range tasks {
		t.Version = RecordVersion
		var err error
		if data[i], err = json.Marshal(t); err != nil {
			return fmt.Errorf("encode task %s: %w", t.ID, err)
		}
	}
	err := s.update(func(tx *bolt.Tx) error {
		b := tx.Bucket(tasksBucket)
		for i, t := range tasks {
			if b.Get([]byte(t.ID)) != nil {
				return fmt.Errorf("task %s already exists", t.ID)
			}
			if err := b.Put([]byte(t.ID), data[i]); err != nil {
				return fmt.Errorf("task %s: %w", t.ID, err)
			}
			if err := index(tx, t); err != nil {
				return fmt.Errorf("task %s: %w", t.ID, err)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("record %d tasks (none was recorded): %w", len(tasks), err)
	}
	return nil
}
