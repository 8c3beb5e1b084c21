// Package backend is the seam between the scheduler and what runs a task's
// container. The scheduler (package runner) keeps the queue, the leases,
// the records and the outcome; a backend creates, starts, follows, stops
// and removes runs, reads what a run left in its state (Files), and says
// what it can do. A run is made from a Spec, followed through a Handle,
// and found again after a restart from the Ref the record keeps, in the
// shape of Nomad's task driver: the wait for the exit is registered before
// the start, and recovering a run registers it anew.
//
// Today's backend is the local Docker engine (backend/docker). Everything
// here is free of any engine's API, so that a second backend (a remote
// engine, Kubernetes Jobs) plugs in beside it.
package backend
