package runner

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/codex-connector/codex-connector/backend/docker"
	"github.com/codex-connector/codex-connector/store"
)

// Limits are true or refused. Before a task's first launch on an engine,
// the server looks from inside one of its runs at what it enforces
// (backend/docker's probe): a rootless engine on cgroup v1 gives its runs
// no memory, CPU or process limit, and says nothing. A task whose limits
// would not hold does not start unless the user's config accepts exactly
// what is given up (limits.acceptUnenforced); then its record says so.

// UnenforceableLimits are the limits an engine may not enforce, by the
// names limits.acceptUnenforced takes.
var UnenforceableLimits = []string{"memory", "cpu", "pids"}

// RefusedLimits are the limits of missing (those an engine does not
// enforce) that accepted (limits.acceptUnenforced) does not name: with
// any, tasks do not start.
func RefusedLimits(missing, accepted []string) []string {
	var refused []string
	for _, name := range missing {
		if !slices.Contains(accepted, name) {
			refused = append(refused, name)
		}
	}
	return refused
}

// UnenforcedFix says what to do about an engine that drops the limits
// missing: another engine, or config.json accepting exactly them.
func UnenforcedFix(missing []string) string {
	quoted := make([]string, len(missing))
	for i, name := range missing {
		quoted[i] = fmt.Sprintf("%q", name)
	}
	return fmt.Sprintf("run tasks on an engine that enforces them (cgroup v2 with delegation: the README's \"On a shared machine\"), or accept it in config.json with \"limits\": {\"acceptUnenforced\": [%s]}", strings.Join(quoted, ", "))
}

// checkEnforced refuses a task whose limits the engine would not enforce,
// unless the config accepts it, and records the engine on the task.
func (r *Runner) checkEnforced(ctx context.Context, t *store.Task, rn *run) (*store.Task, error) {
	runtime := r.cfg.Toolchains.runtime(t.RepoRoot)
	if runtime != "" {
		// The engine's default runtime runs the proxy and the cache
		// helpers, and its look says whose ids the engine's runs get.
		if _, err := r.helpers.Look(ctx, ""); err != nil {
			return t, err
		}
	}
	facts, err := r.helpers.Look(ctx, runtime)
	if err != nil {
		return t, err
	}
	missing := facts.Enforced.Missing()
	if refused := RefusedLimits(missing, r.cfg.Limits.AcceptUnenforced); len(refused) > 0 {
		return t, fmt.Errorf("not started: %s does not enforce the %s %s of its runs (seen from inside one), so this task could take all of the machine's %s — %s",
			facts, strings.Join(refused, ", "), plural(len(refused), "limit", "limits"), strings.Join(refused, ", "), UnenforcedFix(missing))
	}
	want := &store.Engine{Name: facts.String(), Unenforced: missing, Warnings: facts.Warnings, Runtime: runtime}
	if t.Engine == nil || t.Engine.Name != want.Name || !slices.Equal(t.Engine.Unenforced, want.Unenforced) || !slices.Equal(t.Engine.Warnings, want.Warnings) || t.Engine.Runtime != runtime {
		if t, err = r.update(t.ID, func(t *store.Task) error {
			if !r.holds(t, rn) {
				return errNotHolder
			}
			t.Engine = want
			return nil
		}); err != nil {
			return t, err
		}
	}
	// Whose files the run would make, before anything of it is made (its
	// cache volumes, its state).
	if _, err := r.docker.MapUser(t.User); err != nil {
		return t, err
	}
	return t, nil
}

// noteWarnings logs and records what the engine said when it made a
// task's run: a limit it dropped, a capability it could not give.
func (r *Runner) noteWarnings(id string, rn *run, warnings []string) {
	r.logf("task %s: the engine warned when it made the run: %s", id, strings.Join(warnings, "; "))
	if _, err := r.update(id, func(t *store.Task) error {
		if !r.holds(t, rn) {
			return errNotHolder
		}
		if t.Engine == nil {
			t.Engine = &store.Engine{}
		}
		for _, w := range warnings {
			if !slices.Contains(t.Engine.Warnings, w) {
				t.Engine.Warnings = append(t.Engine.Warnings, clipN(w, maxText))
			}
		}
		return nil
	}); err != nil {
		r.logf("task %s: record the engine's warnings: %v", id, err)
	}
}

// EngineFacts are what the engine of be says it is and what it gives its
// runs, seen by a probe of binary's helper image, as the runner of home
// would see them: for doctor, which changes nothing else.
func EngineFacts(ctx context.Context, be *docker.Backend, home, binary, runtime string) (docker.Facts, error) {
	// No facts file: doctor looks for itself, and changes nothing.
	return be.Helpers(docker.HelperConfig{Binary: binary, ImageLabels: helperImageLabels(home)}).Look(ctx, runtime)
}

// Runtimes are the engine runtimes config.json may give tasks: "" (the
// engine's default) or images.runtime, then each one a repository names.
func (tc Toolchains) Runtimes() []string {
	names := []string{tc.Runtime}
	for _, rule := range tc.Rules {
		if rule.Runtime != "" && !slices.Contains(names, rule.Runtime) {
			names = append(names, rule.Runtime)
		}
	}
	return names
}

// helperImageLabels mark the helper images built for home: housekeeping
// removes only its own home's images, never another user's. Not
// LabelHome: every container of the image inherits its labels, and
// LabelHome marks a home's task containers.
func helperImageLabels(home string) map[string]string {
	return map[string]string{LabelProxyImageHome: homeLabel(home)}
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}
