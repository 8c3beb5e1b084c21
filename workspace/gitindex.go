package workspace

import (
	"bytes"
	be "encoding/binary"
	"errors"
	"fmt"
	"os"
	"strconv"

	"github.com/codex-connector/codex-connector/internal/hostfs"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"golang.org/x/sys/unix"
)

// The index, read here rather than by go-git's decoder, which reads it a
// field at a time through reflection: on 30,000 entries that took 45 ms
// of a status git takes 90 ms for whole. Only what a status needs is
// kept: each entry's path, blob, mode, stage, the lstat git recorded of
// its file, and whether the whole tree the index holds is cached with its
// hash (the TREE extension's root).

// maxIndexBytes bounds the index read: a million files take about 100 MB.
const maxIndexBytes = 512 << 20

// maxIndexPath bounds one entry's path (git's own is PATH_MAX).
const maxIndexPath = 4096

// indexEntry is one entry of the index.
type indexEntry struct {
	name         string
	hash         plumbing.Hash
	mode         filemode.FileMode
	stage        int
	skipWorktree bool
	// What git recorded of the file's lstat, each as the index keeps it
	// (32 bits).
	size, ino    uint32
	mtime, ctime unix.Timespec
}

// gitIndex is a read index.
type gitIndex struct {
	entries []indexEntry
	// tree is the hash of the tree the whole index makes, when its cache
	// is whole; zero otherwise.
	tree plumbing.Hash
	// when is the index file's modification time: an entry whose file
	// changed in it or later is racy, and hashed.
	when unix.Timespec
}

// readIndex reads the index of the git directory gitDir; a missing one is
// an empty index, as before the first add.
func readIndex(gitDir string) (*gitIndex, error) {
	data, _, err := hostfs.ReadRegular(gitDir, gitDir, "index", maxIndexBytes)
	if errors.Is(err, os.ErrNotExist) {
		return &gitIndex{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read the index: %w", err)
	}
	st, err := hostfs.LstatBelow(gitDir, gitDir, "index")
	if err != nil {
		return nil, fmt.Errorf("read the index: %w", err)
	}
	idx, err := parseIndex(data)
	if err != nil {
		return nil, fmt.Errorf("read the index %s/index: %w", gitDir, err)
	}
	idx.when = st.Mtim
	return idx, nil
}

var errShortIndex = errors.New("it ends early (git writes it whole: another git may be writing it, try again)")

func parseIndex(data []byte) (*gitIndex, error) {
	if len(data) < 12+20 || string(data[:4]) != "DIRC" {
		return nil, errors.New("it is not a git index")
	}
	version := be.BigEndian.Uint32(data[4:8])
	if version < 2 || version > 4 {
		return nil, fmt.Errorf("its version %d is not one git writes", version)
	}
	count := be.BigEndian.Uint32(data[8:12])
	body := data[:len(data)-20] // the trailer is the file's hash
	idx := &gitIndex{entries: make([]indexEntry, 0, min(int(count), len(body)/62))}
	at := 12
	prev := ""
	names := 0
	for range count {
		if at+62 > len(body) {
			return nil, errShortIndex
		}
		b := body[at:]
		e := indexEntry{
			ctime: unix.Timespec{Sec: int64(be.BigEndian.Uint32(b[0:])), Nsec: int64(be.BigEndian.Uint32(b[4:]))},
			mtime: unix.Timespec{Sec: int64(be.BigEndian.Uint32(b[8:])), Nsec: int64(be.BigEndian.Uint32(b[12:]))},
			ino:   be.BigEndian.Uint32(b[20:]),
			mode:  filemode.FileMode(be.BigEndian.Uint32(b[24:])),
			size:  be.BigEndian.Uint32(b[36:]),
		}
		copy(e.hash[:], b[40:60])
		flags := be.BigEndian.Uint16(b[60:])
		e.stage = int(flags>>12) & 3
		n := 62
		if flags&0x4000 != 0 {
			if version < 3 || at+n+2 > len(body) {
				return nil, errShortIndex
			}
			e.skipWorktree = be.BigEndian.Uint16(b[n:])&0x4000 != 0
			n += 2
		}
		if version == 4 {
			// The path is the previous one less a count of bytes, then the
			// rest up to a NUL, with no padding.
			strip, used := indexVarint(b[n:])
			if used == 0 || strip > uint64(len(prev)) {
				return nil, errors.New("an entry's path is malformed")
			}
			n += used
			end := bytes.IndexByte(b[n:], 0)
			if end < 0 {
				return nil, errShortIndex
			}
			e.name = prev[:len(prev)-int(strip)] + string(b[n:n+end])
			n += end + 1
		} else {
			end := bytes.IndexByte(b[n:], 0)
			if end < 0 {
				return nil, errShortIndex
			}
			e.name = string(b[n : n+end])
			// Padded with NULs to a multiple of 8, at least one.
			n = (n + end + 8) &^ 7
		}
		if e.name == "" || at+n > len(body) {
			return nil, errShortIndex
		}
		// Version 4 makes each path from the one before: a path that only
		// grows would allocate the square of the file's size.
		if names += len(e.name); len(e.name) > maxIndexPath || names > 16*len(data)+(1<<20) {
			return nil, errors.New("its paths are longer than any git writes")
		}
		prev = e.name
		idx.entries = append(idx.entries, e)
		at += n
	}
	for at+8 <= len(body) {
		sig, size := string(body[at:at+4]), int(be.BigEndian.Uint32(body[at+4:]))
		at += 8
		if size < 0 || at+size > len(body) {
			return nil, errShortIndex
		}
		switch {
		case sig == "TREE":
			idx.tree = cachedRoot(body[at:at+size], len(idx.entries))
		case sig == "link":
			return nil, errors.New("it is a split index, which codex-connector does not read: run `git update-index --no-split-index` in the repository")
		case sig[0] >= 'A' && sig[0] <= 'Z':
			// An optional extension git may add: nothing a status needs.
		default:
			return nil, fmt.Errorf("it has the extension %q, which git requires to be understood and codex-connector does not know", sig)
		}
		at += size
	}
	return idx, nil
}

// indexVarint reads the offset encoding of index v4's paths, returning
// the value and the bytes it took (0: malformed).
func indexVarint(b []byte) (uint64, int) {
	if len(b) == 0 {
		return 0, 0
	}
	c := b[0]
	v := uint64(c & 127)
	i := 1
	for c&128 != 0 {
		if i >= len(b) || i > 9 {
			return 0, 0
		}
		c = b[i]
		i++
		v = (v+1)<<7 | uint64(c&127)
	}
	return v, i
}

// cachedRoot is the root tree's hash from a TREE extension, if its entry
// is valid and covers all entries: "" NUL count SP subtrees LF hash.
func cachedRoot(ext []byte, entries int) plumbing.Hash {
	var h plumbing.Hash
	if len(ext) == 0 || ext[0] != 0 {
		return h // not the root's entry first
	}
	nl := bytes.IndexByte(ext, '\n')
	if nl < 0 {
		return h
	}
	fields := bytes.Fields(ext[1:nl])
	if len(fields) != 2 {
		return h
	}
	count, err := strconv.Atoi(string(fields[0]))
	if err != nil || count != entries || len(ext) < nl+1+20 {
		return h // invalidated (-1), or not the index's entries
	}
	copy(h[:], ext[nl+1:nl+21])
	return h
}
