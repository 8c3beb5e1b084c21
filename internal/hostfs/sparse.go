package hostfs

import (
	"bytes"
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// ErrTooMuchData is CopySparse's: the file holds more data than its limit.
var ErrTooMuchData = errors.New("more data than the limit")

// sparseChunk is what CopySparse reads at once, and zeroBlock the unit it
// leaves unwritten when all zero: a file system block, or a few.
const (
	sparseChunk = 1 << 20
	zeroBlock   = 64 << 10
)

// CopySparse copies the first size bytes of in to out, a new empty file,
// and returns how many bytes of data it wrote. Only the data is read: the
// holes of in (SEEK_DATA, SEEK_HOLE) are skipped, as are blocks of zeros
// within the data (a file system that reports no holes, or zeros that
// were written), and out is extended to size over them, so that what is
// sparse stays sparse and the copy costs what the file holds, not what it
// claims. Past limit bytes of data it stops with ErrTooMuchData.
func CopySparse(out, in *os.File, size, limit int64) (int64, error) {
	fd := int(in.Fd())
	buf := make([]byte, sparseChunk)
	zeros := make([]byte, zeroBlock)
	var written int64
	for off := int64(0); off < size; {
		start, err := unix.Seek(fd, off, unix.SEEK_DATA)
		if errors.Is(err, unix.ENXIO) {
			break // a hole from off to the end
		}
		if err != nil {
			return written, fmt.Errorf("find the data of %s: %w", in.Name(), err)
		}
		end, err := unix.Seek(fd, start, unix.SEEK_HOLE)
		if err != nil {
			return written, fmt.Errorf("find the holes of %s: %w", in.Name(), err)
		}
		end = min(end, size)
		for start < end {
			n, err := in.ReadAt(buf[:min(int64(len(buf)), end-start)], start)
			if n == 0 && err != nil {
				return written, fmt.Errorf("read %s: %w", in.Name(), err)
			}
			for b := 0; b < n; b += zeroBlock {
				block := buf[b:min(b+zeroBlock, n)]
				if bytes.Equal(block, zeros[:len(block)]) {
					continue
				}
				if written += int64(len(block)); written > limit {
					return written, ErrTooMuchData
				}
				if _, err := out.WriteAt(block, start+int64(b)); err != nil {
					return written, err
				}
			}
			start += int64(n)
		}
		off = end
	}
	return written, out.Truncate(size)
}
