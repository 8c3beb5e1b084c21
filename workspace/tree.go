package workspace

import (
	"bytes"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/object"
)

// treeDir is one directory of a git tree as a branch workspace edits it:
// the tree as it was read, changed path by path, and written back only
// where it changed (hash zero), so that a commit that changes ten files
// writes the trees on their ten paths and no other.
type treeDir struct {
	hash    plumbing.Hash // as read; zero once changed, or for a new directory
	entries map[string]treeEntry
	dirs    map[string]*treeDir
}

// treeEntry is what is not a directory: a file, a symlink or a gitlink.
type treeEntry struct {
	mode filemode.FileMode
	hash plumbing.Hash
}

func newTreeDir() *treeDir {
	return &treeDir{entries: map[string]treeEntry{}, dirs: map[string]*treeDir{}}
}

// maxTreeEntries bounds how much of a tree is read: a task may have
// written one of any size.
const maxTreeEntries = 1 << 20

// loadTree reads the tree h and the trees below it through get. strict
// refuses names that git would refuse to check out (a task wrote the tree):
// "..", ".git", a slash.
func loadTree(get func(plumbing.Hash) (*object.Tree, error), h plumbing.Hash, strict bool) (*treeDir, error) {
	count := 0
	var load func(h plumbing.Hash, path string, depth int) (*treeDir, error)
	load = func(h plumbing.Hash, path string, depth int) (*treeDir, error) {
		if depth > 256 {
			return nil, fmt.Errorf("the tree at %s is nested deeper than 256", path)
		}
		t, err := get(h)
		if err != nil {
			return nil, fmt.Errorf("read the tree of %s: %w", orRoot(path), err)
		}
		d := newTreeDir()
		d.hash = h
		for _, e := range t.Entries {
			if count++; count > maxTreeEntries {
				return nil, fmt.Errorf("the tree has more than %d entries", maxTreeEntries)
			}
			if strict {
				if err := checkEntryName(e.Name); err != nil {
					return nil, fmt.Errorf("%s: %w", joinPath(path, e.Name), err)
				}
			}
			switch e.Mode {
			case filemode.Dir:
				sub, err := load(e.Hash, joinPath(path, e.Name), depth+1)
				if err != nil {
					return nil, err
				}
				d.dirs[e.Name] = sub
			case filemode.Regular, filemode.Executable, filemode.Symlink, filemode.Submodule, filemode.Deprecated:
				d.entries[e.Name] = treeEntry{mode: e.Mode, hash: e.Hash}
			default:
				return nil, fmt.Errorf("%s has mode %o, which git does not write", joinPath(path, e.Name), e.Mode)
			}
		}
		return d, nil
	}
	return load(h, "", 0)
}

// checkEntryName refuses a tree entry's name that would, once checked out,
// write outside its directory or into a git directory.
func checkEntryName(name string) error {
	lower := strings.ToLower(strings.TrimRight(name, ". "))
	switch {
	case name == "" || name == "." || name == "..":
		return fmt.Errorf("a tree entry named %q", name)
	case strings.ContainsAny(name, "/\x00"):
		return fmt.Errorf("a tree entry whose name holds a slash or a NUL")
	case lower == ".git" || lower == "git~1":
		return fmt.Errorf("a tree entry named %q: git refuses to check it out", name)
	}
	return nil
}

func joinPath(dir, name string) string {
	if dir == "" {
		return name
	}
	return dir + "/" + name
}

func orRoot(path string) string {
	if path == "" {
		return "the root"
	}
	return path
}

// files lists every entry below d by its slash-separated path.
func (d *treeDir) files(prefix string, into map[string]treeEntry) map[string]treeEntry {
	if into == nil {
		into = map[string]treeEntry{}
	}
	for name, e := range d.entries {
		into[joinPath(prefix, name)] = e
	}
	for name, sub := range d.dirs {
		sub.files(joinPath(prefix, name), into)
	}
	return into
}

// dir returns the directory at the slash-separated path, made (and every
// directory on the way marked changed) when make is set; nil if absent.
func (d *treeDir) dir(path string, make bool) *treeDir {
	cur := d
	if path == "" {
		if make {
			cur.hash = plumbing.ZeroHash
		}
		return cur
	}
	for _, name := range strings.Split(path, "/") {
		if make {
			cur.hash = plumbing.ZeroHash
		}
		next := cur.dirs[name]
		if next == nil {
			if !make {
				return nil
			}
			delete(cur.entries, name) // a file where a directory now is
			next = newTreeDir()
			cur.dirs[name] = next
		}
		cur = next
	}
	if make {
		cur.hash = plumbing.ZeroHash
	}
	return cur
}

func splitPath(path string) (dir, name string) {
	if i := strings.LastIndexByte(path, '/'); i >= 0 {
		return path[:i], path[i+1:]
	}
	return "", path
}

// set makes path the entry e, unless it is that already.
func (d *treeDir) set(path string, e treeEntry) {
	dir, name := splitPath(path)
	if parent := d.dir(dir, false); parent != nil && parent.entries[name] == e && parent.dirs[name] == nil {
		return
	}
	parent := d.dir(dir, true)
	delete(parent.dirs, name) // a directory where a file now is
	parent.entries[name] = e
}

// remove deletes the entry at path, if there is one.
func (d *treeDir) remove(path string) {
	dir, name := splitPath(path)
	if parent := d.dir(dir, false); parent == nil {
		return
	} else if _, ok := parent.entries[name]; !ok {
		return
	}
	delete(d.dir(dir, true).entries, name)
}

// write stores the trees that changed through put, deepest first, and
// returns the hash of d. A directory left empty is left out, as git does.
func (d *treeDir) write(put func(plumbing.ObjectType, []byte) (plumbing.Hash, error)) (plumbing.Hash, error) {
	if !d.hash.IsZero() {
		return d.hash, nil
	}
	type item struct {
		key  string // the name, with a slash after a directory's: git's order
		name string
		mode filemode.FileMode
		hash plumbing.Hash
	}
	var items []item
	for name, e := range d.entries {
		items = append(items, item{name, name, e.mode, e.hash})
	}
	for name, sub := range d.dirs {
		if sub.empty() {
			continue
		}
		h, err := sub.write(put)
		if err != nil {
			return h, err
		}
		items = append(items, item{name + "/", name, filemode.Dir, h})
	}
	sort.Slice(items, func(i, j int) bool { return items[i].key < items[j].key })
	var buf bytes.Buffer
	for _, it := range items {
		buf.WriteString(strconv.FormatUint(uint64(it.mode), 8))
		buf.WriteByte(' ')
		buf.WriteString(it.name)
		buf.WriteByte(0)
		buf.Write(it.hash[:])
	}
	h, err := put(plumbing.TreeObject, buf.Bytes())
	if err == nil {
		d.hash = h
	}
	return h, err
}

// empty says whether no entry is below d.
func (d *treeDir) empty() bool {
	if len(d.entries) > 0 {
		return false
	}
	for _, sub := range d.dirs {
		if !sub.empty() {
			return false
		}
	}
	return true
}
