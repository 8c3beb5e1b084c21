// Throwaway: writes a schema-1 database of N realistic tasks.
package main

import (
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/codex-connector/codex-connector/store"
	bolt "go.etcd.io/bbolt"
)

func main() {
	n, _ := strconv.Atoi(os.Args[2])
	db, err := bolt.Open(os.Args[1], 0o600, nil)
	if err != nil {
		panic(err)
	}
	defer db.Close()
	start := time.Date(2025, 12, 1, 0, 0, 0, 0, time.UTC)
	for done := 0; done < n; {
		err := db.Update(func(tx *bolt.Tx) error {
			meta, _ := tx.CreateBucketIfNotExists([]byte("meta"))
			meta.Put([]byte("schema"), []byte("1"))
			b, _ := tx.CreateBucketIfNotExists([]byte("tasks"))
			for i := 0; i < 10000 && done < n; i, done = i+1, done+1 {
				created := start.Add(time.Duration(done) * time.Second)
				t := &store.Task{Version: 1, ID: store.NewID(created), Status: store.Completed, CreatedAt: created, StartedAt: created, FinishedAt: created.Add(time.Minute),
					Sandbox: "workspace-write", Prompt: fmt.Sprintf("refactor module %d so that its tests pass, and update the docs that mention it", done),
					WorkingDirectory: "/home/me/src/project", RepoRoot: "/home/me/src/project", Image: "codex-connector/codex:0.169.0", User: "1000:1000",
					ContainerName: "codex-connector-" + store.NewID(created)}
				code := 0
				s := &store.Summary{ThreadID: "01a240b9-42a6-75e0-aec4-9b10e5c0125d", LastMessage: "Done: the tests pass and the docs say what changed."}
				for c := range 20 {
					s.Commands = append(s.Commands, store.Command{Command: fmt.Sprintf("/usr/bin/bash -lc 'go test ./pkg/module%d/... -run TestCase%d'", done, c), ExitCode: &code})
				}
				for f := range 10 {
					s.FilesChanged = append(s.FilesChanged, fmt.Sprintf("pkg/module%d/file%d.go", done, f))
				}
				t.Summary = s
				data, _ := json.Marshal(t)
				if err := b.Put([]byte(t.ID), data); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			panic(err)
		}
	}
}
