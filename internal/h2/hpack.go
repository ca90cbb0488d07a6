package h2

import (
	"net/http"
	"strconv"
	"sync/atomic"
	"time"
)

// Header blocks are encoded without a dynamic table, as nginx encodes
// them: every field a literal "without indexing" (RFC 7541 §6.2.2),
// naming its field by its static-table index where it has one, with no
// Huffman coding. So encoding keeps no state per connection (the peer's
// SETTINGS_HEADER_TABLE_SIZE never matters) and costs a copy of the
// bytes; a response's block is some 200 bytes longer than with a dynamic
// table, cheaper to send than to spend CPU on saving.

// staticNames maps a lowercase field name to its index in HPACK's static
// table (RFC 7541 Appendix A), the first entry when there are several.
var staticNames = func() map[string]uint8 {
	names := []string{
		":authority", ":method", ":method", ":path", ":path", ":scheme", ":scheme",
		":status", ":status", ":status", ":status", ":status", ":status", ":status",
		"accept-charset", "accept-encoding", "accept-language", "accept-ranges", "accept",
		"access-control-allow-origin", "age", "allow", "authorization", "cache-control",
		"content-disposition", "content-encoding", "content-language", "content-length",
		"content-location", "content-range", "content-type", "cookie", "date", "etag",
		"expect", "expires", "from", "host", "if-match", "if-modified-since",
		"if-none-match", "if-range", "if-unmodified-since", "last-modified", "link",
		"location", "max-forwards", "proxy-authenticate", "proxy-authorization", "range",
		"referer", "refresh", "retry-after", "server", "set-cookie",
		"strict-transport-security", "transfer-encoding", "user-agent", "vary", "via",
		"www-authenticate",
	}
	m := make(map[string]uint8, len(names))
	for i, n := range names {
		if _, ok := m[n]; !ok {
			m[n] = uint8(i + 1)
		}
	}
	return m
}()

const (
	idxStatus = 8
	idxDate   = 33
)

// appendInt appends i as an HPACK integer (RFC 7541 §5.1) with an n-bit
// prefix, the first byte's other bits being first.
func appendInt(dst []byte, first byte, n uint, i uint64) []byte {
	k := uint64(1)<<n - 1
	if i < k {
		return append(dst, first|byte(i))
	}
	dst = append(dst, first|byte(k))
	i -= k
	for i >= 128 {
		dst = append(dst, byte(i&0x7f|0x80))
		i >>= 7
	}
	return append(dst, byte(i))
}

// appendString appends s as an HPACK string literal, not Huffman coded.
func appendString[S ~string | ~[]byte](dst []byte, s S) []byte {
	dst = appendInt(dst, 0, 7, uint64(len(s)))
	return append(dst, s...)
}

// appendField appends a literal field without indexing; name must be
// lowercase.
func appendField[N, V ~string | ~[]byte](dst []byte, name N, value V) []byte {
	if idx, ok := staticNames[string(name)]; ok {
		dst = appendInt(dst, 0, 4, uint64(idx))
	} else {
		dst = append(dst, 0)
		dst = appendString(dst, name)
	}
	return appendString(dst, value)
}

// appendStatus appends the :status field: one byte for the statuses the
// static table holds.
func appendStatus(dst []byte, status int) []byte {
	switch status {
	case 200:
		return append(dst, 0x80|8)
	case 204:
		return append(dst, 0x80|9)
	case 206:
		return append(dst, 0x80|10)
	case 304:
		return append(dst, 0x80|11)
	case 400:
		return append(dst, 0x80|12)
	case 404:
		return append(dst, 0x80|13)
	case 500:
		return append(dst, 0x80|14)
	}
	dst = appendInt(dst, 0, 4, idxStatus)
	dst = append(dst, 3)
	return strconv.AppendInt(dst, int64(status), 10)
}

// connSpecific reports a field HTTP/2 forbids (RFC 9113 §8.2.2), given
// its lowercase name.
func connSpecific[S ~string | ~[]byte](name S) bool {
	switch string(name) {
	case "connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade":
		return true
	}
	return false
}

// appendLines appends the fields of HTTP/1.1 header lines ("Name:
// value\r\n" each) to a header block, names lowercased and fields HTTP/2
// forbids left out. scratch holds the lowercased name.
func appendLines(dst, hdr, scratch []byte) ([]byte, []byte) {
	for len(hdr) > 0 {
		end := 0
		for end < len(hdr) && hdr[end] != '\n' {
			end++
		}
		line := hdr[:end]
		if end < len(hdr) {
			hdr = hdr[end+1:]
		} else {
			hdr = nil
		}
		if n := len(line); n > 0 && line[n-1] == '\r' {
			line = line[:n-1]
		}
		colon := 0
		for colon < len(line) && line[colon] != ':' {
			colon++
		}
		if colon == 0 || colon == len(line) {
			continue
		}
		scratch = scratch[:0]
		for _, b := range line[:colon] {
			if 'A' <= b && b <= 'Z' {
				b += 'a' - 'A'
			}
			scratch = append(scratch, b)
		}
		if connSpecific(scratch) {
			continue
		}
		v := line[colon+1:]
		for len(v) > 0 && (v[0] == ' ' || v[0] == '\t') {
			v = v[1:]
		}
		for len(v) > 0 && (v[len(v)-1] == ' ' || v[len(v)-1] == '\t') {
			v = v[:len(v)-1]
		}
		dst = appendField(dst, scratch, v)
	}
	return dst, scratch
}

// dateValue is the Date field of one second.
type dateValue struct {
	sec int64
	val string
}

// dateCache formats the Date field once a second.
type dateCache struct{ cur atomic.Pointer[dateValue] }

func (d *dateCache) at(now time.Time) string {
	sec := now.Unix()
	v := d.cur.Load()
	if v == nil || v.sec != sec {
		v = &dateValue{sec: sec, val: now.UTC().Format(http.TimeFormat)}
		d.cur.Store(v)
	}
	return v.val
}
