package workspace

import (
	"bytes"
	"compress/zlib"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/codex-connector/codex-connector/internal/hostfs"
	"github.com/go-git/go-git/v5/plumbing"
)

// Git objects as a branch workspace moves them: written loose, by the
// server, into a git directory whose files belong to the repository's
// owner; read from a task's git directory only by hash, with a cap on their
// size, and kept only when their content hashes to that name.

// Owner is whom the files the server writes into a repository or a
// workspace belong to: the repository's owner, when the server runs as
// root (Chown); else the server itself, who is that owner.
type Owner struct {
	UID, GID int
	Chown    bool
}

// maxObjectBytes is the largest object taken from a task's git directory,
// and the largest file of a work tree stored in a branch.
const maxObjectBytes = 64 << 20

// objectWriter writes loose objects into the objects directory of a git
// directory, as owner.
type objectWriter struct {
	gitDir string
	owner  Owner
	// written counts the objects made (not those already there).
	written int
}

// put stores an object of type t and content data, unless one of its name
// is there already, and returns its name.
func (w *objectWriter) put(t plumbing.ObjectType, data []byte) (plumbing.Hash, error) {
	h := plumbing.ComputeHash(t, data)
	hex := h.String()
	dir := filepath.Join("objects", hex[:2])
	rel := filepath.Join(dir, hex[2:])
	if _, err := hostfs.LstatBelow(w.gitDir, w.gitDir, rel); err == nil {
		return h, nil
	}
	if err := hostfs.MkdirBelow(w.gitDir, dir, 0o755, w.owner.Chown, w.owner.UID, w.owner.GID); err != nil {
		return h, fmt.Errorf("write object %s: %w", hex, err)
	}
	var buf bytes.Buffer
	zw := zlib.NewWriter(&buf)
	zw.Write([]byte(t.String() + " " + strconv.Itoa(len(data)) + "\x00"))
	zw.Write(data)
	if err := zw.Close(); err != nil {
		return h, err
	}
	// Whole or not at all: written beside, then renamed into its name.
	// The temporary name is this write's own: tasks prepared at once
	// write the same objects (the user's same edit) at the same moment.
	var nonce [8]byte
	_, _ = rand.Read(nonce[:])
	tmp := filepath.Join(dir, fmt.Sprintf("tmp_obj_%x", nonce))
	if err := hostfs.WriteNewBelow(w.gitDir, tmp, buf.Bytes(), 0o444, w.owner.Chown, w.owner.UID, w.owner.GID); err != nil {
		return h, fmt.Errorf("write object %s: %w", hex, err)
	}
	if err := hostfs.RenameBelow(w.gitDir, tmp, hex[2:]); err != nil {
		return h, fmt.Errorf("write object %s: %w", hex, err)
	}
	w.written++
	return h, nil
}

// errObjectTooLarge marks an object past maxObjectBytes.
var errObjectTooLarge = errors.New("larger than codex-connector takes from a task")

// taskObjects reads the loose objects of a task's .git, below its work tree
// root: every component walked without following a symlink (.git itself
// too), regular files only. It reads no pack: a pack's deltas can refer to
// themselves or to each other without end, and go-git follows them until
// the server's stack overflows; a task's commits that are packed are
// taken as uncommitted changes instead.
type taskObjects struct{ root string }

// read reads object h, of at most max bytes, and checks that its content
// hashes to h. The header's size is checked before anything is inflated,
// and no more than it is inflated: a few hundred bytes of zlib can expand
// to gigabytes.
func (o taskObjects) read(h plumbing.Hash, max int64) (plumbing.ObjectType, []byte, error) {
	hex := h.String()
	rel := filepath.Join(".git", "objects", hex[:2], hex[2:])
	f, st, err := hostfs.OpenRegular(o.root, o.root, rel)
	if errors.Is(err, os.ErrNotExist) || errors.Is(err, unix.ENOENT) {
		if packs, _ := hostfs.ReadDirBelow(o.root, o.root, ".git/objects/pack", nil); len(packs) > 0 {
			return 0, nil, fmt.Errorf("object %s is not loose, and codex-connector reads no pack of a task's", h)
		}
		return 0, nil, fmt.Errorf("object %s is missing", h)
	}
	if err != nil {
		return 0, nil, err
	}
	defer f.Close()
	if st.Size > 2*max+(64<<10) {
		return 0, nil, fmt.Errorf("object %s is %d bytes compressed, %w", h, st.Size, errObjectTooLarge)
	}
	zr, err := zlib.NewReader(io.LimitReader(f, st.Size))
	if err != nil {
		return 0, nil, fmt.Errorf("object %s: %w", h, err)
	}
	defer zr.Close()
	var head []byte
	for len(head) < 32 {
		var b [1]byte
		if _, err := io.ReadFull(zr, b[:]); err != nil {
			return 0, nil, fmt.Errorf("object %s: its header: %w", h, err)
		}
		if b[0] == 0 {
			break
		}
		head = append(head, b[0])
	}
	kind, sizeText, ok := strings.Cut(string(head), " ")
	t, terr := plumbing.ParseObjectType(kind)
	size, serr := strconv.ParseInt(sizeText, 10, 64)
	if !ok || terr != nil || serr != nil || size < 0 || strconv.FormatInt(size, 10) != sizeText || t == plumbing.OFSDeltaObject || t == plumbing.REFDeltaObject {
		return 0, nil, fmt.Errorf("object %s has no valid header (%q)", h, clipText(string(head)))
	}
	if size > max {
		return 0, nil, fmt.Errorf("object %s is %d bytes, %w (%d)", h, size, errObjectTooLarge, max)
	}
	data := make([]byte, size)
	if _, err := io.ReadFull(zr, data); err != nil {
		return 0, nil, fmt.Errorf("object %s holds less than its header says: %w", h, err)
	}
	if n, _ := zr.Read(make([]byte, 1)); n > 0 {
		return 0, nil, fmt.Errorf("object %s holds more than its header says", h)
	}
	if got := plumbing.ComputeHash(t, data); got != h {
		return 0, nil, fmt.Errorf("object %s holds the content of %s: its name is not its own", h, got)
	}
	return t, data, nil
}
