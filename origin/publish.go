package origin

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"

	"github.com/geocdn/geocdn/internal/wire"
)

// The write path: every mutation becomes a command committed through raft
// (propose); publish first puts the content where the command can name it.

// HeaderIdempotencyKey names a write across retries: a write repeated with
// the key of one already committed answers with the first commit's LSN
// and commits nothing new.
const HeaderIdempotencyKey = "Idempotency-Key"

// requestIDFrom is the request id of r: from its idempotency key, or zero.
func requestIDFrom(r *http.Request) requestID {
	if k := r.Header.Get(HeaderIdempotencyKey); k != "" {
		return requestIDOf(k)
	}
	return requestID{}
}

// inlineBufs recycles the buffers publish reads small bodies into.
var inlineBufs = sync.Pool{New: func() any {
	b := make([]byte, maxInline+1)
	return &b
}}

// publish commits body as the new version of ns/key. Content of up to
// maxInline bytes rides inside the command; larger content is staged on
// disk first (streamed and hashed, so memory stays constant whatever its
// size) and named by the command. A body over limit bytes (negative: no
// limit) fails with ErrTooLarge and commits nothing.
func (o *Origin) publish(ctx context.Context, id requestID, ns, key string, body io.Reader, limit int64, m PutMeta) (wire.LogEntry, error) {
	e, err := putEntry(ns, key, m)
	if err != nil {
		return wire.LogEntry{}, err
	}
	c := &command{ID: id, Entry: e}
	bufp := inlineBufs.Get().(*[]byte)
	defer inlineBufs.Put(bufp)
	n, err := io.ReadFull(body, *bufp)
	switch {
	case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
		if limit >= 0 && int64(n) > limit {
			return wire.LogEntry{}, fmt.Errorf("put %q in %q: body exceeds %d bytes: %w", key, ns, limit, ErrTooLarge)
		}
		c.Inline = (*bufp)[:n:n]
		if n == 0 {
			c.Inline = []byte{}
		}
		c.Entry.Digest, c.Entry.Size = sha256.Sum256(c.Inline), uint64(n)
	case err != nil:
		return wire.LogEntry{}, fmt.Errorf("put %q in %q: read body: %w", key, ns, err)
	default:
		st, err := o.store.stage(ctx, io.MultiReader(bytes.NewReader((*bufp)[:n]), body), limit)
		if err != nil {
			return wire.LogEntry{}, fmt.Errorf("put %q in %q: %w", key, ns, err)
		}
		c.Stage, c.Entry.Digest, c.Entry.Size = st.name, st.digest, uint64(st.size)
		if err := o.replicateStage(ctx, st); err != nil {
			o.store.unstage(st.name)
			return wire.LogEntry{}, &errNotCommitted{err}
		}
	}
	return o.commitContent(ctx, c)
}

// commitContent proposes c, whose content is inline or staged on a quorum,
// and removes the staged file if nothing was appended.
func (o *Origin) commitContent(ctx context.Context, c *command) (wire.LogEntry, error) {
	ent, err := o.propose(ctx, c)
	var nl *errNotLeader
	if c.Stage != "" && (errors.As(err, &nl) || errors.Is(err, errShuttingDown)) {
		// Nothing was appended: no command will name the staged file.
		o.store.unstage(c.Stage)
	}
	return ent, err
}

// errNotCommitted is a write refused before anything was proposed.
type errNotCommitted struct{ err error }

func (e *errNotCommitted) Error() string { return e.err.Error() + "; nothing was committed" }
func (e *errNotCommitted) Unwrap() error { return e.err }
