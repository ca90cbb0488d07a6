package h1c

import (
	"bytes"
	"errors"
	"fmt"
)

// Limits on what a response may make the client hold or scan. A load
// generator talks to servers it is measuring, not trusting: a bad one
// must cost it an error, never unbounded memory.
const (
	// maxHeadBytes bounds a response head, status line to blank line.
	maxHeadBytes = 64 << 10
	// maxFields bounds the header fields of one head; their offsets
	// live in a fixed array of the connection, so parsing allocates
	// nothing.
	maxFields = 128
	// maxInterim bounds the 1xx answers skipped before the final one.
	maxInterim = 5
	// maxBodyLine bounds a chunk-size line or a trailer line; it must
	// fit in minBodySpace.
	maxBodyLine = 4 << 10
)

// ErrMalformed is wrapped by every error about a response the client
// refuses to parse: the connection it came on is closed.
var ErrMalformed = errors.New("h1c: malformed response")

func malformed(detail string) error { return fmt.Errorf("%w: %s", ErrMalformed, detail) }

// The parse errors are values, so that refusing a response allocates
// nothing either.
var (
	errStatusLine      = malformed("bad status line")
	errHeaderLine      = malformed("bad header line")
	errHeadTooLarge    = malformed("head larger than 64 KiB")
	errUnterminated    = malformed("head not terminated by a blank line")
	errTooManyFields   = malformed("more than 128 header fields")
	errContentLength   = malformed("bad Content-Length")
	errConflictLength  = malformed("conflicting Content-Length values")
	errTransferCoding  = malformed("unsupported Transfer-Encoding")
	errLengthAndCoding = malformed("both Content-Length and Transfer-Encoding")
	errTooManyInterim  = malformed("too many 1xx answers")
	errSwitching       = malformed("101 Switching Protocols to a request that asked for none")
	errChunkLine       = malformed("bad chunk size line")
	errChunkEnd        = malformed("chunk data not followed by CRLF")
	errTrailer         = malformed("bad or oversized trailer")
)

// field locates one header field of a head in the connection's buffer.
// Offsets rather than slices keep the array free of pointers, which the
// garbage collector then need not scan.
type field struct {
	ns, ne, vs, ve int32 // name and value, value trimmed of OWS
}

// head is what parseHead learnt of a response head.
type head struct {
	status        int
	minor         int   // HTTP/1.minor; anything above 1 counts as 1
	rs, re        int32 // the reason phrase
	contentLength int64 // -1: none
	chunked       bool  // Transfer-Encoding: chunked
	close         bool  // Connection: close
	keepAlive     bool  // Connection: keep-alive (matters for HTTP/1.0)
	nfields       int
	fields        [maxFields]field
}

// parseHead parses the response head at the start of b: a status line
// "HTTP/1.x NNN reason", header lines, a blank line; lines end in CRLF
// or a bare LF. It returns the head's length. It refuses what RFC 9112
// lets a client refuse and what would make framing ambiguous: obsolete
// line folding, whitespace before a colon, control bytes, several or
// malformed Content-Length values, transfer codings other than chunked,
// Content-Length with Transfer-Encoding, Transfer-Encoding in HTTP/1.0.
func parseHead(b []byte, h *head) (int, error) {
	*h = head{contentLength: -1, fields: h.fields}
	nl := bytes.IndexByte(b, '\n')
	if nl < 0 {
		return 0, errUnterminated
	}
	if err := h.statusLine(trimCR(b[:nl])); err != nil {
		return 0, err
	}
	sawTE := false
	for pos := nl + 1; ; {
		i := bytes.IndexByte(b[pos:], '\n')
		if i < 0 {
			return 0, errUnterminated
		}
		start := pos
		line := trimCR(b[pos : pos+i])
		pos += i + 1
		if len(line) == 0 {
			if sawTE && h.contentLength >= 0 {
				return 0, errLengthAndCoding
			}
			if sawTE && h.minor == 0 {
				return 0, errTransferCoding
			}
			return pos, nil
		}
		colon := bytes.IndexByte(line, ':')
		if colon <= 0 || !isToken(line[:colon]) {
			return 0, errHeaderLine
		}
		name := line[:colon]
		value, vs := trimOWS(line[colon+1:], start+colon+1)
		if !isFieldValue(value) {
			return 0, errHeaderLine
		}
		if h.nfields == maxFields {
			return 0, errTooManyFields
		}
		h.fields[h.nfields] = field{int32(start), int32(start + colon), int32(vs), int32(vs + len(value))}
		h.nfields++
		switch {
		case equalFold(name, "content-length"):
			n, ok := parseLength(value)
			if !ok {
				return 0, errContentLength
			}
			if h.contentLength >= 0 && h.contentLength != n {
				return 0, errConflictLength
			}
			h.contentLength = n
		case equalFold(name, "transfer-encoding"):
			// One coding, once: "gzip, chunked" or a second line would
			// need decoding this client does not do.
			if sawTE || !equalFold(value, "chunked") {
				return 0, errTransferCoding
			}
			sawTE, h.chunked = true, true
		case equalFold(name, "connection"):
			h.close = h.close || hasToken(value, "close")
			h.keepAlive = h.keepAlive || hasToken(value, "keep-alive")
		}
	}
}

func (h *head) statusLine(l []byte) error {
	if len(l) < 12 || string(l[:7]) != "HTTP/1." || !isDigit(l[7]) || l[8] != ' ' ||
		l[9] < '1' || l[9] > '9' || !isDigit(l[10]) || !isDigit(l[11]) ||
		len(l) > 12 && l[12] != ' ' {
		return errStatusLine
	}
	h.minor = min(int(l[7]-'0'), 1)
	h.status = int(l[9]-'0')*100 + int(l[10]-'0')*10 + int(l[11]-'0')
	if len(l) > 13 {
		if !isFieldValue(l[13:]) {
			return errStatusLine
		}
		h.rs, h.re = 13, int32(len(l))
	}
	return nil
}

// parseLength parses a Content-Length value: digits only, no sign, no
// list, at most 18 of them so that it cannot overflow.
func parseLength(v []byte) (int64, bool) {
	if len(v) == 0 || len(v) > 18 {
		return 0, false
	}
	var n int64
	for _, c := range v {
		if !isDigit(c) {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, true
}

// parseChunkSize parses a chunk-size line, chunk extensions and all
// (they are ignored, as RFC 9112 lets a recipient do). At most 15 hex
// digits, so the size cannot overflow.
func parseChunkSize(l []byte) (int64, bool) {
	var n int64
	i := 0
	for ; i < len(l); i++ {
		d, ok := unhex(l[i])
		if !ok {
			break
		}
		if i == 15 {
			return 0, false
		}
		n = n<<4 | int64(d)
	}
	if i == 0 {
		return 0, false
	}
	rest, _ := trimOWS(l[i:], 0)
	if len(rest) > 0 && (rest[0] != ';' || !isFieldValue(rest)) {
		return 0, false
	}
	return n, true
}

// validTrailer checks a trailer line as a header line; trailers are
// otherwise dropped.
func validTrailer(l []byte) bool {
	colon := bytes.IndexByte(l, ':')
	return colon > 0 && isToken(l[:colon]) && isFieldValue(l[colon+1:])
}

func unhex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

func trimCR(l []byte) []byte {
	if len(l) > 0 && l[len(l)-1] == '\r' {
		return l[:len(l)-1]
	}
	return l
}

// trimOWS trims spaces and tabs off v, which starts at offset off of
// the buffer, and returns the offset of what is left.
func trimOWS(v []byte, off int) ([]byte, int) {
	for len(v) > 0 && (v[0] == ' ' || v[0] == '\t') {
		v, off = v[1:], off+1
	}
	for len(v) > 0 && (v[len(v)-1] == ' ' || v[len(v)-1] == '\t') {
		v = v[:len(v)-1]
	}
	return v, off
}

// byte classes, as tables: parsing a head tests every byte of it.
const (
	tokenByte  = 1 << iota // RFC 9110 tchar
	valueByte              // field-vchar, SP, HTAB: no CR, LF, NUL or DEL
	targetByte             // a request-target byte, already escaped
	hostByte               // a Host (RFC 3986 reg-name, IP literal, port)
)

var classes = func() (t [256]uint8) {
	set := func(s string, bit uint8) {
		for i := 0; i < len(s); i++ {
			t[s[i]] |= bit
		}
	}
	const alnum = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
	set(alnum+"!#$%&'*+-.^_`|~", tokenByte)
	set(alnum+"-._~!$&'()*+,;=:[]%", hostByte)
	for c := 0; c < 256; c++ {
		if c == '\t' || c >= ' ' && c != 0x7f {
			t[c] |= valueByte
		}
		if c > ' ' && c < 0x7f {
			t[c] |= targetByte
		}
	}
	return t
}()

func isClass[T string | []byte](s T, bit uint8) bool {
	for i := 0; i < len(s); i++ {
		if classes[s[i]]&bit == 0 {
			return false
		}
	}
	return true
}

func isToken[T string | []byte](s T) bool      { return len(s) > 0 && isClass(s, tokenByte) }
func isFieldValue[T string | []byte](s T) bool { return isClass(s, valueByte) }

// equalFold compares ASCII b with s, ignoring case; s may be in any case.
func equalFold[T string | []byte](b []byte, s T) bool {
	if len(b) != len(s) {
		return false
	}
	for i := 0; i < len(b); i++ {
		x, y := b[i], s[i]
		if x != y && lower(x) != lower(y) {
			return false
		}
	}
	return true
}

func lower(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

// hasToken reports whether the comma-separated list v holds token,
// ignoring case.
func hasToken(v []byte, token string) bool {
	for len(v) > 0 {
		item := v
		if i := bytes.IndexByte(v, ','); i >= 0 {
			item, v = v[:i], v[i+1:]
		} else {
			v = nil
		}
		if item, _ = trimOWS(item, 0); equalFold(item, token) {
			return true
		}
	}
	return false
}
