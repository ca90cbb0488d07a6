package edge

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"

	"github.com/geocdn/geocdn/internal/wire"
)

// content is an opened blob: either hot bytes held in RAM or a file the
// caller must close (see close).
type content struct {
	hot  []byte
	file *os.File
	size int64
	// shared, when set, owns file: it is the store's open copy, read only
	// by sendfile at explicit offsets (openShared).
	shared *sharedFile
}

// close releases the file, if any.
func (c content) close() error {
	if c.shared != nil {
		c.shared.release()
		return nil
	}
	if c.file == nil {
		return nil
	}
	return c.file.Close()
}

// hotBlob is a hot-tier value. The tier is keyed by the first 8 bytes of
// the digest (a uint64 key costs no hashing and no allocation on the hit
// path), and a publisher could search out two contents whose digests share
// those 64 bits, so the value carries the full digest and a Get whose
// digest differs is a miss.
type hotBlob struct {
	digest wire.Digest
	data   []byte
}

func hotKey(d wire.Digest) uint64 { return binary.BigEndian.Uint64(d[:8]) }

// openContent opens the blob d: from the hot tier if it holds it, else
// from disk. Small objects read from disk are returned as bytes and
// offered to the hot tier, which may refuse them. A file in the result
// must be closed by the caller. A blob that is not on disk yields an error
// wrapping fs.ErrNotExist, and so does a small one whose file does not
// match its digest (it is quarantined: scrub.go).
func (s *store) openContent(d wire.Digest) (content, error) {
	return s.open(d, false)
}

// openShared is openContent for a reader that sends the file only with
// sendfile at explicit offsets (h1.Reply.SendFile), never reading, seeking
// or closing it itself: the file may be the store's cached open copy,
// which other requests send at the same time. close releases it.
func (s *store) openShared(d wire.Digest) (content, error) {
	return s.open(d, true)
}

func (s *store) open(d wire.Digest, shared bool) (content, error) {
	s.mu.RLock()
	b := s.blobs.get(d)
	var size int64
	ok := b != nil && b.onDisk
	if ok {
		size = b.size
	}
	s.mu.RUnlock()
	if !ok {
		return content{}, fmt.Errorf("edge: open blob %s: %w", shortHex(d), fs.ErrNotExist)
	}
	// Repeated hits on the most recently used blob leave the shared counter
	// alone, so a hot object does not make every hit write one cache line.
	if b.lastUse.Load() != s.tick.Load() {
		b.lastUse.Store(s.tick.Add(1))
	}
	if size == 0 {
		return content{}, nil
	}
	small := size <= s.hotMax
	if small {
		if hb, ok := s.hot.Get(hotKey(d)); ok && hb.digest == d {
			return content{hot: hb.data, size: size}, nil
		}
	}
	if shared && !small {
		sf, err := s.files.acquire(d)
		if err != nil {
			return content{}, fmt.Errorf("edge: open blob: %w", err)
		}
		return content{file: sf.f, size: size, shared: sf}, nil
	}
	f, err := os.Open(s.blobPath(d))
	if err != nil {
		// Evicted or superseded between the check above and the open.
		return content{}, fmt.Errorf("edge: open blob: %w", err)
	}
	if !small {
		return content{file: f, size: size}, nil
	}
	data := make([]byte, size)
	_, err = io.ReadFull(f, data)
	f.Close()
	// Bytes cached here are served from RAM until evicted, so they are
	// checked first (about 10 µs for 16 KiB, on a miss of the hot tier
	// only): rotten or torn, the blob is quarantined and filled again.
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || err == nil && sha256.Sum256(data) != d {
		return content{}, s.corruptOnRead(d, size)
	}
	if err != nil {
		return content{}, fmt.Errorf("edge: read blob: %w", err)
	}
	hb := &hotBlob{data: data}
	hb.digest = d
	s.hot.Set(hotKey(d), hb, size)
	return content{hot: data, size: size}, nil
}
