// Package runner is the scheduler of tasks: it accepts a request (where it
// may run, at which sandbox level, on which image), queues it, holds the
// slots and the leases, keeps the records, and follows each task's run to
// its outcome — its logs and Codex's event stream, timeouts, the stall
// watchdog, cancellation, replies, reviews, handover to another server, and
// housekeeping. It turns a sandbox level into a run spec (policy.go) and
// leaves the run itself to a backend (package backend; backend/docker
// today), the run's state (Codex's home, its last message) to the
// backend's Files, the work tree to its workspace (package workspace), and
// every other read or write of what a task may have touched to hostfs. It
// knows nothing of MCP.
package runner
