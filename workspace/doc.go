// Package workspace owns where a task's files come from and how its
// changes are told back. It resolves a working directory to the
// repository a task runs in (resolve.go). Today's kind is Shared: the
// user's own work tree, bound into the task's container. For it the
// package works out the binds
// that keep a workspace-write task's hands off git (gitprotect.go), checks
// that the repository is still the directory that was accepted, pins the
// git directories at launch (gitpin.go), and scans the work tree before and
// after the run for the files it changed (changes.go) and the changed files
// that host tools run (hostrun.go). What it measured before the run is kept
// for a server that takes the task over (kept.go).
//
// A task may have left symlinks, named pipes and huge files in the work
// tree: its files are read through hostfs, the walks open directories
// without following symlinks, and where a path is resolved (the root, a
// linked worktree's git directory) what it leads to is checked before it
// is used.
package workspace
