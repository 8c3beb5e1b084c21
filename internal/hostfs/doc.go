// Package hostfs owns the host side of every file a task may have touched:
// its state directory and, at workspace-write and above, the repository.
// A task can put symlinks, named pipes, huge or sparse files and mode-000
// directories there, and the server, often root, must never follow, block
// on, or choke on them. So everything below a trusted base (a directory
// the server made, or the repository root checked at accept time) is
// reached one component at a time with openat and O_NOFOLLOW; only regular
// files are read, opened non-blocking and checked with fstat, and read with
// a cap; removal never follows a symlink and copes with directories a task
// locked.
//
// It also holds what the server writes there (files made afresh below a
// base, atomic replacement, sparse copies) and the read-only view of a
// repository that go-git reads through (gitfs.go). The scheduler and the
// workspace use it; neither owns it.
package hostfs
