package docker

import (
	"fmt"
	"os"
	"strconv"
	"strings"
)

// A run's user is given by the scheduler as the host's uid:gid whose files
// the run makes (backend.Spec.User). Inside a user namespace (a rootless
// engine) that is another id: rootless Docker and Podman map the engine's
// own user to root inside, and the rest of the ids to the user's
// subordinate range. So the run is made with the id inside that maps to
// the host's, as the probe read the maps; an id the namespace does not map
// cannot write the user's files, and is refused before anything is made.

// mapRange is one line of a uid_map or gid_map: count ids from inside on
// are the ids from outside on.
type mapRange struct{ inside, outside, count uint64 }

// rangesOf reads a map's lines, skipping what is not one.
func rangesOf(idMap string) []mapRange {
	var out []mapRange
	for _, line := range strings.Split(idMap, "\n") {
		f := strings.Fields(line)
		if len(f) != 3 {
			continue
		}
		in, err1 := strconv.ParseUint(f[0], 10, 32)
		host, err2 := strconv.ParseUint(f[1], 10, 32)
		n, err3 := strconv.ParseUint(f[2], 10, 64)
		if err1 == nil && err2 == nil && err3 == nil {
			out = append(out, mapRange{in, host, n})
		}
	}
	return out
}

// insideID is the id inside a namespace of idMap (/proc/self/uid_map's
// lines: inside, host, count) that maps to host; false when none does.
func insideID(idMap string, host uint64) (uint64, bool) {
	for _, r := range rangesOf(idMap) {
		if host >= r.outside && host < r.outside+r.count {
			return r.inside + (host - r.outside), true
		}
	}
	return 0, false
}

// MapUser is mapUser for the scheduler, to refuse a task whose user the
// engine cannot run before anything of it is made.
func (b *Backend) MapUser(user string) (string, error) { return b.mapUser(user) }

// mapUser is the uid:gid inside the engine's runs that is the host's user
// ("uid:gid"); "" stays "" (the image's own user).
func (b *Backend) mapUser(user string) (string, error) {
	if user == "" {
		return "", nil
	}
	b.factsMu.Lock()
	facts, ok := b.facts[""]
	b.factsMu.Unlock()
	if !ok {
		// Every server looks at the engine before its first launch: one
		// that has not cannot know whose files a run would make.
		return "", fmt.Errorf("make a run as %s: the engine was not looked at first (internal error: a launch before Helpers.Look)", user)
	}
	if !facts.Enforced.UserNamespace {
		return user, nil
	}
	u, g, _ := strings.Cut(user, ":")
	uid, err1 := strconv.ParseUint(u, 10, 32)
	gid, err2 := strconv.ParseUint(g, 10, 32)
	if err1 != nil || err2 != nil {
		return "", fmt.Errorf("make a run as %q: not a uid:gid", user)
	}
	inUID, okU := insideID(facts.Enforced.Inside.UIDMap, uid)
	inGID, okG := insideID(facts.Enforced.Inside.GIDMap, gid)
	if okU && !okG {
		// A repository of the user's in a group of theirs the namespace
		// does not map: the run writes as the user's own group, the one
		// the engine runs as.
		inGID, okG = insideID(facts.Enforced.Inside.GIDMap, uint64(os.Getegid()))
	}
	if !okU || !okG {
		return "", fmt.Errorf("make a run as uid %d, gid %d of this machine: %s has no id for them inside its runs (its user namespace maps %s) — on a rootless engine, run codex-connector as the user whose engine it is, on repositories that user owns",
			uid, gid, facts, readableMap(facts.Enforced.Inside.UIDMap))
	}
	return fmt.Sprintf("%d:%d", inUID, inGID), nil
}

// readableMap is a uid_map for a message: "inside 0 = 2002 outside,
// inside 1-65536 = 165536-231071 outside".
func readableMap(idMap string) string {
	var parts []string
	for _, r := range rangesOf(idMap) {
		if r.count == 1 {
			parts = append(parts, fmt.Sprintf("inside %d = %d outside", r.inside, r.outside))
		} else {
			parts = append(parts, fmt.Sprintf("inside %d-%d = %d-%d outside", r.inside, r.inside+r.count-1, r.outside, r.outside+r.count-1))
		}
	}
	return strings.Join(parts, ", ")
}
