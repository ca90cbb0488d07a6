package loadtest

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"io"
)

// content is one version of an object the run publishes: generation gen
// of key, size bytes of an AES-CTR keystream keyed by both and the run's
// seed. Any byte range of it can be made again without the rest, so a
// Range answer is checked against the bytes it should hold, not only the
// whole body against its ETag; and nothing is kept in memory but this.
type content struct {
	key    string
	gen    int
	size   int64
	seed   uint64
	digest [sha256.Size]byte
	tag    string // etag()
}

func newContent(seed uint64, key string, gen int, size int64) *content {
	c := &content{key: key, gen: gen, size: size, seed: seed}
	h := sha256.New()
	io.Copy(h, c.reader(0, size))
	h.Sum(c.digest[:0])
	c.tag = `"` + hex.EncodeToString(c.digest[:]) + `"`
	return c
}

// etag is the entity tag an edge answers for c: the quoted hex digest.
func (c *content) etag() string { return c.tag }

// reader returns the bytes [off, off+n) of c.
func (c *content) reader(off, n int64) io.Reader {
	var k [sha256.Size]byte
	h := sha256.New()
	var b [16]byte
	binary.LittleEndian.PutUint64(b[:8], c.seed)
	binary.LittleEndian.PutUint64(b[8:], uint64(c.gen))
	h.Write(b[:])
	io.WriteString(h, c.key)
	h.Sum(k[:0])
	block, err := aes.NewCipher(k[:16])
	if err != nil {
		panic(err) // a 16-byte key is always valid
	}
	// The counter block of byte off is off/16, big-endian; the keystream
	// is then advanced by off%16 bytes.
	var iv [aes.BlockSize]byte
	binary.BigEndian.PutUint64(iv[8:], uint64(off/aes.BlockSize))
	s := cipher.NewCTR(block, iv[:])
	if skip := off % aes.BlockSize; skip > 0 {
		var junk [aes.BlockSize]byte
		s.XORKeyStream(junk[:skip], junk[:skip])
	}
	return io.LimitReader(&cipher.StreamReader{S: s, R: zeroReader{}}, n)
}

type zeroReader struct{}

func (zeroReader) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}
