package origin

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/geocdn/geocdn/internal/wire"
)

// A command is one mutation as the raft log carries it: the log entry it
// becomes, before the FSM gives it its LSN, and where its content is.
//
// Content travels one of two ways. Small content rides inside the command
// (Inline), so it is made durable by the same raft log fsync that commits
// the entry, and a batch of publishes shares that fsync. Larger content is
// staged first: the leader streams it to the followers, each writes and
// fsyncs it under its tmp directory as Stage, and the command is proposed
// once a quorum holds it; applying the command moves the staged file into
// place.
type command struct {
	// ID identifies the request that proposed the command, so that a
	// retry of the same request (a forward repeated after a leader change)
	// is applied once; zero means no identity.
	ID    requestID
	Entry wire.LogEntry
	// Stage is the name, under the store's tmp directory, of the staged
	// content of a put; empty when Inline holds it.
	Stage  string
	Inline []byte
}

// requestID names a request across retries (see command.ID).
type requestID [16]byte

// requestIDOf derives a request id from a client's idempotency key.
func requestIDOf(key string) requestID {
	sum := sha256.Sum256([]byte("geocdn request\x00" + key))
	var id requestID
	copy(id[:], sum[:])
	return id
}

const commandVersion = 1

// maxStageName bounds a staged file's name in a command.
const maxStageName = 64

var errBadCommand = errors.New("malformed command")

// Flags of an encoded command.
const cmdInline = 1 // Inline holds the content, possibly empty

// encode lays c out as
//
//	version (1 byte) | id (16 bytes) | flags (1 byte)
//	| entry (uvarint length + wire encoding)
//	| stage (uvarint length + bytes) | inline (uvarint length + bytes)
func (c *command) encode() []byte {
	ent := c.Entry.Append(nil)
	b := make([]byte, 0, 2+len(c.ID)+3*binary.MaxVarintLen64+len(ent)+len(c.Stage)+len(c.Inline))
	b = append(b, commandVersion)
	b = append(b, c.ID[:]...)
	var flags byte
	if c.Inline != nil {
		flags |= cmdInline
	}
	b = append(b, flags)
	b = binary.AppendUvarint(b, uint64(len(ent)))
	b = append(b, ent...)
	b = binary.AppendUvarint(b, uint64(len(c.Stage)))
	b = append(b, c.Stage...)
	b = binary.AppendUvarint(b, uint64(len(c.Inline)))
	return append(b, c.Inline...)
}

// decodeCommand parses what encode wrote. Inline aliases b.
func decodeCommand(b []byte) (*command, error) {
	if len(b) < 2+len(requestID{}) || b[0] != commandVersion {
		return nil, fmt.Errorf("%w: version or length", errBadCommand)
	}
	c := &command{}
	copy(c.ID[:], b[1:])
	flags := b[1+len(c.ID)]
	if flags&^cmdInline != 0 {
		return nil, fmt.Errorf("%w: unknown flags %#x", errBadCommand, flags)
	}
	b = b[2+len(c.ID):]
	field := func(name string, max uint64) ([]byte, error) {
		n, k := binary.Uvarint(b)
		if k <= 0 || n > uint64(len(b)-k) || n > max {
			return nil, fmt.Errorf("%w: %s", errBadCommand, name)
		}
		v := b[k : k+int(n)]
		b = b[k+int(n):]
		return v, nil
	}
	ent, err := field("entry", wire.MaxLogEntrySize)
	if err != nil {
		return nil, err
	}
	if c.Entry, err = wire.ParseLogEntry(ent); err != nil {
		return nil, fmt.Errorf("%w: %v", errBadCommand, err)
	}
	stage, err := field("stage", maxStageName)
	if err != nil {
		return nil, err
	}
	c.Stage = string(stage)
	if c.Inline, err = field("inline", maxInline); err != nil {
		return nil, err
	}
	if len(b) != 0 {
		return nil, fmt.Errorf("%w: %d trailing bytes", errBadCommand, len(b))
	}
	switch {
	case flags&cmdInline == 0 && len(c.Inline) > 0:
		return nil, fmt.Errorf("%w: inline content without the inline flag", errBadCommand)
	case flags&cmdInline == 0:
		c.Inline = nil
	case c.Inline == nil:
		c.Inline = []byte{}
	}
	return c, nil
}

// applyResult is what applying a command gives the proposer: the entry as
// committed, with its LSN, or why it was refused (ErrNotFound for a
// delete of nothing). Every node computes the same result.
type applyResult struct {
	Entry wire.LogEntry
	Err   error
}
