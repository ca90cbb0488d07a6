package wire

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"testing/iotest"
	"time"
	"unicode/utf8"

	"github.com/quic-go/quic-go/quicvarint"
)

// frameCase is a message and what decoding its encoding must give. want is
// nil when the message is already in the canonical form a decoder returns
// (times in UTC without a monotonic reading, empty lists nil).
type frameCase struct {
	name string
	in   Frame
	want Frame
}

func (c frameCase) wanted() Frame {
	if c.want != nil {
		return c.want
	}
	return c.in
}

func testDigest(seed byte) Digest {
	var d Digest
	for i := range d {
		d[i] = seed + byte(i)
	}
	return d
}

func manyStrings(n int, prefix string) []string {
	s := make([]string, n)
	for i := range s {
		s[i] = fmt.Sprintf("%s-%d", prefix, i)
	}
	return s
}

// fullEntry has every field set to a representative value.
func fullEntry() LogEntry {
	return LogEntry{
		LSN:           42,
		Op:            OpPut,
		Namespace:     "default",
		Key:           "img/logo.png",
		Digest:        testDigest(1),
		Size:          12345,
		ContentType:   "image/png",
		CacheControl:  "public, max-age=60",
		SurrogateKeys: []string{"logos", "home"},
		Consistency:   Bounded,
		Bound:         5 * time.Second,
		ModTime:       time.Unix(1_700_000_000, 123456789).UTC(),
		Replicas:      []string{"edge-fra-1", "edge-iad-2"},
	}
}

// validFrames lists every message type with representative and edge
// values. It is shared by the round-trip, truncation and fuzz tests.
func validFrames() []frameCase {
	now := time.Now()
	paris := time.Date(2025, 3, 1, 12, 0, 0, 5, time.FixedZone("CET", 3600))
	maxed := LogEntry{
		LSN:           MaxVarint,
		Op:            OpPut,
		Namespace:     strings.Repeat("n", MaxNamespaceLen),
		Key:           strings.Repeat("k", MaxKeyLen),
		Digest:        testDigest(0xe0),
		Size:          MaxVarint,
		ContentType:   strings.Repeat("t", MaxStringLen),
		CacheControl:  strings.Repeat("c", MaxStringLen),
		SurrogateKeys: manyStrings(MaxSurrogateKeys, "tag"),
		Consistency:   Strong,
		Bound:         time.Duration(math.MaxInt64/int64(time.Millisecond)) * time.Millisecond,
		ModTime:       time.Unix(0, math.MaxInt64).UTC(),
		Replicas:      manyStrings(MaxReplicas, "e"),
	}
	deleted := LogEntry{LSN: 7, Op: OpDelete, Namespace: "default", Key: "gone"}
	unicode := LogEntry{
		LSN:           1,
		Op:            OpPut,
		Namespace:     "ünï.example",
		Key:           "文件/日本語 ✓.txt",
		ContentType:   "text/plain; charset=utf-8",
		SurrogateKeys: []string{"", "é"},
		Consistency:   Session,
		ModTime:       time.Unix(-1_000_000_000, 1).UTC(), // before 1970
		Replicas:      []string{"边缘-1"},
	}
	return []frameCase{
		{name: "hello", in: Hello{Version: ProtocolVersion, Kind: ConnControl, EdgeID: "edge-fra-1", Region: "eu-central", Lat: 50.11, Lon: 8.68, FaultDomain: "fra-az1", PublicURL: "https://fra.cdn.example", Watermark: 1234}},
		{name: "hello/empty", in: Hello{Kind: ConnData}},
		{name: "hello/fill", in: Hello{Version: ProtocolVersion, Kind: ConnFill, EdgeID: "edge-fra-1", Watermark: 7}},
		{name: "leader-changed", in: LeaderChanged{OriginID: "o2", QUIC: "10.0.0.2:4433"}},
		{name: "leader-changed/empty", in: LeaderChanged{}},
		{name: "hello/extremes", in: Hello{Version: 255, Kind: ConnData, EdgeID: strings.Repeat("x", MaxStringLen), Region: "南极", Lat: -90, Lon: 180, Watermark: MaxVarint}},
		{name: "hello/negative-zero", in: Hello{Kind: ConnControl, Lat: math.Copysign(0, -1), Lon: -180}},
		{name: "welcome", in: Welcome{Version: 1, OriginID: "origin-1", CurrentLSN: 99, LeaseMillis: 2000, HeartbeatInterval: 500}},
		{name: "welcome/empty", in: Welcome{}},
		{name: "welcome/max", in: Welcome{Version: 255, OriginID: "ö", CurrentLSN: MaxVarint, LeaseMillis: MaxVarint, HeartbeatInterval: MaxVarint, FirstLSN: MaxVarint}},
		{name: "reject", in: Reject{Code: RejectIdentity, Reason: "certificate names edge-2"}},
		{name: "reject/empty-reason", in: Reject{Code: RejectShutdown}},
		{name: "reject/not-leader", in: Reject{Code: RejectNotLeader, Reason: "127.0.0.1:7443"}},
		{name: "reject/not-leader-unknown", in: Reject{Code: RejectNotLeader}},
		{name: "reject/max-reason", in: Reject{Code: RejectVersion, Reason: strings.Repeat("r", MaxStringLen)}},
		{name: "reject/long-reason-cut", in: Reject{Code: RejectBadHello, Reason: strings.Repeat("é", MaxStringLen)}, want: Reject{Code: RejectBadHello, Reason: strings.Repeat("é", MaxStringLen/2)}},
		{name: "heartbeat", in: Heartbeat{Seq: 17, Watermark: 4096}},
		{name: "heartbeat/zero", in: Heartbeat{}},
		{name: "heartbeat/varint-boundaries", in: Heartbeat{Seq: 63, Watermark: 64}},
		{name: "heartbeat/max", in: Heartbeat{Seq: MaxVarint, Watermark: 1 << 30}},
		{name: "heartbeat-ack", in: HeartbeatAck{Seq: 17, LSN: 4100, LeaseMillis: 2000}},
		{name: "heartbeat-ack/max", in: HeartbeatAck{Seq: MaxVarint, LSN: MaxVarint, LeaseMillis: MaxVarint}},
		{name: "ack", in: Ack{Watermark: 16383}},
		{name: "ack/zero", in: Ack{}},
		{name: "log-entry", in: fullEntry()},
		{name: "log-entry/delete", in: deleted},
		{name: "log-entry/unicode", in: unicode},
		{name: "log-entry/max", in: maxed},
		{name: "log-entry/empty-lists", in: LogEntry{Op: OpPut, SurrogateKeys: []string{}, Replicas: []string{}}, want: LogEntry{Op: OpPut}},
		{name: "log-entry/local-time", in: LogEntry{Op: OpPut, ModTime: paris}, want: LogEntry{Op: OpPut, ModTime: paris.UTC()}},
		{name: "log-entry/monotonic-time", in: LogEntry{Op: OpPut, ModTime: now}, want: LogEntry{Op: OpPut, ModTime: time.Unix(0, now.UnixNano()).UTC()}},
		{name: "log-entry/sub-millisecond-bound", in: LogEntry{Op: OpPut, Consistency: Bounded, Bound: 1500 * time.Microsecond}, want: LogEntry{Op: OpPut, Consistency: Bounded, Bound: time.Millisecond}},
		{name: "push-offer", in: PushOffer{LSN: 42, Namespace: "default", Key: "img/logo.png", Digest: testDigest(1), Size: 12345, Required: true}},
		{name: "push-offer/empty", in: PushOffer{}},
		{name: "push-offer/max", in: PushOffer{LSN: MaxVarint, Namespace: strings.Repeat("n", MaxNamespaceLen), Key: strings.Repeat("ключ", MaxKeyLen/8), Digest: testDigest(0xff), Size: MaxVarint}},
		{name: "push-reply/want", in: PushReply{Status: PushWant}},
		{name: "push-reply/refuse", in: PushReply{Status: PushRefuse, Reason: "disk full: 0 bytes free"}},
		{name: "push-result/stored", in: PushResult{Status: PushStored}},
		{name: "push-result/bad-digest", in: PushResult{Status: PushBadDigest, Reason: "got e3b0…"}},
		{name: "push-result/failed", in: PushResult{Status: PushFailed, Reason: "✗"}},
		{name: "fill-request", in: FillRequest{Namespace: "default", Key: "a/b/c.js", Digest: testDigest(3)}},
		{name: "fill-request/latest", in: FillRequest{Namespace: "default", Key: "a"}},
		{name: "fill-request/empty", in: FillRequest{}},
		{name: "fill-request/revalidate", in: FillRequest{Namespace: "default", Key: "a", Have: testDigest(4)}},
		{name: "fill-response/ok", in: FillResponse{Status: FillOK, Entry: fullEntry()}},
		{name: "fill-response/ok-with-reason", in: FillResponse{Status: FillOK, Reason: "pending, do not cache", Entry: deleted}},
		{name: "fill-response/not-found", in: FillResponse{Status: FillNotFound, Reason: "no such key"}},
		{name: "fill-response/not-modified", in: FillResponse{Status: FillNotModified, Entry: fullEntry()}},
		{name: "fill-request/pull", in: FillRequest{Namespace: "site", Key: "blog/?page=2", Have: testDigest(5), Pull: &PullInfo{
			Header: []HeaderField{{"Accept-Encoding", "gzip"}, {"Cookie", "a=1"}}, ClientIP: "192.0.2.1", Host: "www.example.com",
		}}},
		{name: "fill-request/pull-empty", in: FillRequest{Namespace: "site", Key: "/", Pull: &PullInfo{}}},
		{name: "fill-request/pull-forward", in: FillRequest{Namespace: "site", Key: "a", Pull: &PullInfo{Forward: true, Host: "h"}}},
		{name: "fill-response/pass-through", in: FillResponse{Status: FillPassThrough, Reason: "private", Entry: LogEntry{
			Op: OpPut, Namespace: "site", Key: "me", Pulled: &Pulled{Status: 200, Header: []HeaderField{{"Cache-Control", "private"}}},
		}}},
		{name: "fill-response/bad-gateway", in: FillResponse{Status: FillBadGateway, Reason: "connection refused"}},
		{name: "forward-request", in: ForwardRequest{Namespace: "site", Key: "api/cart?x=1", Method: "POST",
			Header: []HeaderField{{"Content-Type", "application/json"}}, ClientIP: "192.0.2.9", Host: "shop.example.com"}},
		{name: "fill-response/gateway-timeout", in: FillResponse{Status: FillGatewayTimeout, Reason: "no answer in 15s"}},
		{name: "tree-request/root", in: TreeRequest{Level: 0, Indices: []uint32{0}}},
		{name: "tree-request/leaves", in: TreeRequest{Level: TreeDepth, Indices: []uint32{0, 63, 64, TreeLeaves - 1}}},
		{name: "tree-request/empty", in: TreeRequest{Level: 2}},
		{name: "tree-nodes", in: TreeNodes{LSN: 77, Hashes: []NodeHash{{1}, {2, 3}}}},
		{name: "tree-nodes/empty", in: TreeNodes{}},
		{name: "leaf-request", in: LeafRequest{Leaves: []uint32{5, TreeLeaves - 1}}},
		{name: "leaf-tuples", in: LeafTuples{Tuples: []Tuple{{Namespace: "default", Key: "a/b", LSN: 9, Digest: testDigest(7)}, {Namespace: "x", Key: "ключ", LSN: MaxVarint}}}},
		{name: "leaf-tuples/empty", in: LeafTuples{}},
		{name: "entry-request", in: EntryRequest{Objects: []ObjectRef{{"default", "a"}, {"n", "b/c"}}}},
		{name: "snapshot-request", in: SnapshotRequest{FromLeaf: 0, ToLeaf: TreeLeaves}},
		{name: "resync-end", in: ResyncEnd{LSN: 123}},
		{name: "resync-end/error", in: ResyncEnd{LSN: 1, Error: "catalog unreadable"}},
		{name: "resync-report", in: ResyncReport{ID: 4, DurationMillis: 1500, Missing: 20, Stale: 1, Extra: 2, Metadata: 3, Corrupt: 5, Repaired: 31, Failed: 0, Entries: 400, Bytes: 9000, Snapshot: true, Error: "x"}},
		{name: "resync-report/zero", in: ResyncReport{}},
		{name: "resync-now", in: ResyncNow{ID: 8}},
		{name: "log-gap", in: LogGap{FirstLSN: 9001}},
		{name: "scrub-progress/running", in: ScrubProgress{Pass: 3, Running: true, Bytes: 41 << 20, TotalBytes: 100 << 20, Blobs: 410, TotalBlobs: 1000, Corrupt: 1, ReadErrors: 2, LastFullPass: 2, LastFullPassCorrupt: 2, LastFullPassMillis: 1_700_000_000_123, CorruptTotal: 3}},
		{name: "scrub-progress/listing", in: ScrubProgress{Pass: 1, Running: true}},
		{name: "scrub-progress/done", in: ScrubProgress{Pass: 7, Bytes: 5, TotalBytes: 5, Blobs: 1, TotalBlobs: 1, LastFullPass: 7, LastFullPassMillis: 1}},
		{name: "scrub-progress/zero", in: ScrubProgress{}},
		{name: "rtt-report/empty", in: RTTReport{Networks: []RTTNetwork{}}},
		{name: "rtt-report/both families", in: RTTReport{Networks: []RTTNetwork{
			{Network: netip.MustParsePrefix("192.0.2.0/24"), MedianMicros: 23_400, Samples16: 16 * 12},
			{Network: netip.MustParsePrefix("2001:db8:1::/48"), MedianMicros: MaxVarint, Samples16: 1},
			{Network: netip.MustParsePrefix("10.0.0.0/8"), MedianMicros: 0, Samples16: 0},
		}}},
		{name: "scrub-progress/max", in: ScrubProgress{Pass: MaxVarint, Running: true, Bytes: MaxVarint, TotalBytes: MaxVarint, Blobs: MaxVarint, TotalBlobs: MaxVarint, Corrupt: MaxVarint / 2, ReadErrors: MaxVarint - MaxVarint/2, LastFullPass: MaxVarint, LastFullPassCorrupt: MaxVarint, LastFullPassMillis: MaxVarint, CorruptTotal: MaxVarint}},
		{name: "fill-response/error-drops-entry", in: FillResponse{Status: FillError, Reason: "io", Entry: fullEntry()}, want: FillResponse{Status: FillError, Reason: "io"}},
	}
}

func TestRoundTrip(t *testing.T) {
	for _, tc := range validFrames() {
		t.Run(tc.name, func(t *testing.T) {
			enc := AppendFrame(nil, tc.in)
			got, err := ReadFrame(bytes.NewReader(enc))
			if err != nil {
				t.Fatalf("ReadFrame: %v", err)
			}
			if want := tc.wanted(); !reflect.DeepEqual(got, want) {
				t.Errorf("ReadFrame = %#v, want %#v", got, want)
			}
			got2, n, err := ParseFrame(enc)
			if err != nil {
				t.Fatalf("ParseFrame: %v", err)
			}
			if n != len(enc) {
				t.Errorf("ParseFrame consumed %d bytes, want %d", n, len(enc))
			}
			if !reflect.DeepEqual(got2, got) {
				t.Errorf("ParseFrame = %#v, want %#v", got2, got)
			}
			// Encoding the decoded value again must give the same bytes:
			// every value has one encoding.
			if again := AppendFrame(nil, got); !bytes.Equal(again, enc) && tc.want == nil {
				t.Errorf("re-encoding differs:\n got %x\nwant %x", again, enc)
			}
		})
	}
}

func TestLen(t *testing.T) {
	for _, tc := range validFrames() {
		t.Run(tc.name, func(t *testing.T) {
			prefix := []byte("prefix")
			b := tc.in.Append(append([]byte(nil), prefix...))
			if !bytes.HasPrefix(b, prefix) {
				t.Fatalf("Append overwrote the bytes it was given")
			}
			if got, want := tc.in.Len(), len(b)-len(prefix); got != want {
				t.Errorf("Len() = %d, want %d (len of Append)", got, want)
			}
		})
	}
}

// hideByteReader hides a reader's ReadByte so ReadFrame takes its
// one-byte-at-a-time path.
type hideByteReader struct{ r io.Reader }

func (h hideByteReader) Read(p []byte) (int, error) { return h.r.Read(p) }

func TestReadFrameTruncated(t *testing.T) {
	for _, tc := range validFrames() {
		t.Run(tc.name, func(t *testing.T) {
			enc := AppendFrame(nil, tc.in)
			for i := range len(enc) {
				want := io.ErrUnexpectedEOF
				if i == 0 {
					want = io.EOF
				}
				if _, err := ReadFrame(bytes.NewReader(enc[:i])); err != want {
					t.Fatalf("ReadFrame of %d/%d bytes: got %v, want %v", i, len(enc), err, want)
				}
				if _, err := ReadFrame(hideByteReader{bytes.NewReader(enc[:i])}); err != want {
					t.Fatalf("ReadFrame (plain reader) of %d/%d bytes: got %v, want %v", i, len(enc), err, want)
				}
				if _, n, err := ParseFrame(enc[:i]); err != io.ErrUnexpectedEOF || n != 0 {
					t.Fatalf("ParseFrame of %d/%d bytes: got (%d, %v), want (0, %v)", i, len(enc), n, err, io.ErrUnexpectedEOF)
				}
			}
		})
	}
}

// frameBytes builds a frame with an arbitrary payload.
func frameBytes(t FrameType, payload []byte) []byte {
	b := append([]byte{byte(t)}, quicvarint.Append(nil, uint64(len(payload)))...)
	return append(b, payload...)
}

// TestPayloadTruncated checks the other kind of short input: a complete
// frame whose payload stops early is malformed, not unexpected EOF.
func TestPayloadTruncated(t *testing.T) {
	for _, tc := range validFrames() {
		t.Run(tc.name, func(t *testing.T) {
			p := tc.in.Append(nil)
			for i := 0; i < len(p); i++ {
				// Decoding a cut payload costs its length, so for the
				// few large ones the middle is sampled; every cut near
				// either end is still tried.
				if i > 2048 && i < len(p)-2048 && i%101 != 0 {
					continue
				}
				_, n, err := ParseFrame(frameBytes(tc.in.Type(), p[:i]))
				if !errors.Is(err, ErrMalformed) {
					t.Fatalf("payload cut to %d/%d bytes: got %v, want %v", i, len(p), err, ErrMalformed)
				}
				if want := len(frameBytes(tc.in.Type(), p[:i])); n != want {
					t.Fatalf("payload cut to %d/%d bytes: consumed %d, want %d", i, len(p), n, want)
				}
			}
		})
	}
}

func TestTrailingBytes(t *testing.T) {
	for _, tc := range validFrames() {
		t.Run(tc.name, func(t *testing.T) {
			p := append(tc.in.Append(nil), 0)
			_, err := ReadFrame(bytes.NewReader(frameBytes(tc.in.Type(), p)))
			if !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), "trailing") {
				t.Errorf("got %v, want %v about trailing bytes", err, ErrMalformed)
			}
		})
	}
}

func TestFrameTooLarge(t *testing.T) {
	tests := []struct {
		name string
		n    uint64
	}{
		{"one over", MaxFrameSize + 1},
		{"1 GiB", 1 << 30},
		{"max varint", MaxVarint},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			// Only the header is there: reading on, or allocating the
			// declared size, would show as a different error or an OOM.
			hdr := quicvarint.Append([]byte{byte(FrameLogEntry)}, tc.n)
			if _, err := ReadFrame(bytes.NewReader(hdr)); !errors.Is(err, ErrFrameTooLarge) {
				t.Errorf("ReadFrame: got %v, want %v", err, ErrFrameTooLarge)
			}
			if _, err := ReadFrame(hideByteReader{bytes.NewReader(hdr)}); !errors.Is(err, ErrFrameTooLarge) {
				t.Errorf("ReadFrame (plain reader): got %v, want %v", err, ErrFrameTooLarge)
			}
			if _, n, err := ParseFrame(hdr); !errors.Is(err, ErrFrameTooLarge) || n != 0 {
				t.Errorf("ParseFrame: got (%d, %v), want (0, %v)", n, err, ErrFrameTooLarge)
			}
		})
	}
	t.Run("exactly max is read", func(t *testing.T) {
		enc := frameBytes(0x7f, make([]byte, MaxFrameSize))
		_, n, err := ParseFrame(enc)
		if !errors.Is(err, ErrUnknownFrame) || n != len(enc) {
			t.Errorf("ParseFrame: got (%d, %v), want (%d, %v)", n, err, len(enc), ErrUnknownFrame)
		}
	})
}

func TestWriteFrame(t *testing.T) {
	t.Run("one write", func(t *testing.T) {
		for _, tc := range validFrames() {
			var w countingWriter
			if err := WriteFrame(&w, tc.in); err != nil {
				t.Fatalf("%s: WriteFrame: %v", tc.name, err)
			}
			if w.writes != 1 {
				t.Errorf("%s: %d Write calls, want 1", tc.name, w.writes)
			}
			if want := AppendFrame(nil, tc.in); !bytes.Equal(w.buf.Bytes(), want) {
				t.Errorf("%s: wrote %x, want %x", tc.name, w.buf.Bytes(), want)
			}
		}
	})
	t.Run("too large", func(t *testing.T) {
		big := LogEntry{Op: OpPut, Replicas: []string{strings.Repeat("x", MaxFrameSize)}}
		var w countingWriter
		if err := WriteFrame(&w, big); !errors.Is(err, ErrFrameTooLarge) {
			t.Errorf("got %v, want %v", err, ErrFrameTooLarge)
		}
		if w.writes != 0 {
			t.Errorf("%d Write calls, want 0", w.writes)
		}
	})
	t.Run("write error", func(t *testing.T) {
		want := errors.New("stream reset")
		if err := WriteFrame(failingWriter{want}, Ack{}); err != want {
			t.Errorf("got %v, want %v", err, want)
		}
	})
}

type countingWriter struct {
	buf    bytes.Buffer
	writes int
}

func (w *countingWriter) Write(p []byte) (int, error) {
	w.writes++
	return w.buf.Write(p)
}

type failingWriter struct{ err error }

func (w failingWriter) Write([]byte) (int, error) { return 0, w.err }

func TestUnknownFrame(t *testing.T) {
	for _, typ := range []FrameType{0x00, 0x05, 0x13, 0x43, 0xff} {
		t.Run(typ.String(), func(t *testing.T) {
			// The unknown frame is consumed whole, so the next one reads.
			stream := append(frameBytes(typ, []byte("future")), AppendFrame(nil, Ack{Watermark: 9})...)
			r := bytes.NewReader(stream)
			if _, err := ReadFrame(r); !errors.Is(err, ErrUnknownFrame) {
				t.Fatalf("ReadFrame: got %v, want %v", err, ErrUnknownFrame)
			}
			got, err := ReadFrame(r)
			if err != nil || got != (Ack{Watermark: 9}) {
				t.Fatalf("next ReadFrame = %#v, %v; want %#v", got, err, Ack{Watermark: 9})
			}
			_, n, err := ParseFrame(stream)
			if !errors.Is(err, ErrUnknownFrame) || n != len(frameBytes(typ, []byte("future"))) {
				t.Errorf("ParseFrame: got (%d, %v), want (%d, %v)", n, err, len(frameBytes(typ, []byte("future"))), ErrUnknownFrame)
			}
		})
	}
}

// TestReadFrameLeavesRawBytes checks that the bytes after a frame (content
// of a push or fill) are still in the stream after ReadFrame.
func TestReadFrameLeavesRawBytes(t *testing.T) {
	offer := PushOffer{LSN: 1, Namespace: "default", Key: "k", Size: 11, Required: true}
	raw := []byte("hello world")
	var stream []byte
	stream = AppendFrame(stream, offer)
	stream = append(stream, raw...)
	stream = AppendFrame(stream, PushResult{Status: PushStored})

	readers := []struct {
		name string
		r    func() io.Reader
	}{
		{"plain", func() io.Reader { return hideByteReader{bytes.NewReader(stream)} }},
		{"byte-reader", func() io.Reader { return bytes.NewReader(stream) }},
		{"bufio", func() io.Reader { return bufio.NewReader(bytes.NewReader(stream)) }},
		{"one-byte", func() io.Reader { return iotest.OneByteReader(bytes.NewReader(stream)) }},
		{"half", func() io.Reader { return iotest.HalfReader(bytes.NewReader(stream)) }},
		{"data-err", func() io.Reader { return iotest.DataErrReader(bytes.NewReader(stream)) }},
	}
	for _, tc := range readers {
		t.Run(tc.name, func(t *testing.T) {
			r := tc.r()
			got, err := ReadFrame(r)
			if err != nil || !reflect.DeepEqual(got, offer) {
				t.Fatalf("ReadFrame = %#v, %v; want %#v", got, err, offer)
			}
			body := make([]byte, len(raw))
			if _, err := io.ReadFull(r, body); err != nil || !bytes.Equal(body, raw) {
				t.Fatalf("raw bytes = %q, %v; want %q", body, err, raw)
			}
			got, err = ReadFrame(r)
			if err != nil || got != (PushResult{Status: PushStored}) {
				t.Fatalf("second ReadFrame = %#v, %v; want %#v", got, err, PushResult{Status: PushStored})
			}
			if _, err := ReadFrame(r); err != io.EOF {
				t.Errorf("ReadFrame at end: got %v, want %v", err, io.EOF)
			}
		})
	}
}

func TestReadFrameReaderError(t *testing.T) {
	want := errors.New("stream reset")
	enc := AppendFrame(nil, fullEntry())
	for _, cut := range []int{0, 1, 2, len(enc) / 2} {
		r := io.MultiReader(bytes.NewReader(enc[:cut]), iotest.ErrReader(want))
		if _, err := ReadFrame(r); err != want {
			t.Errorf("error after %d bytes: got %v, want %v", cut, err, want)
		}
	}
}

func TestMalformed(t *testing.T) {
	entry := func(mod func(*LogEntry)) []byte {
		e := fullEntry()
		mod(&e)
		return frameBytes(FrameLogEntry, e.Append(nil))
	}
	withVersion := func(v byte) []byte {
		p := fullEntry().Append(nil)
		p[0] = v
		return frameBytes(FrameLogEntry, p)
	}
	// A bounded entry whose bound in milliseconds overflows a Duration
	// cannot be produced by Append, so it is written field by field.
	var overflow []byte
	overflow = append(overflow, LogEntryVersion)
	overflow = quicvarint.Append(overflow, 1)
	overflow = append(overflow, byte(OpPut))
	overflow = appendString(overflow, "default")
	overflow = appendString(overflow, "k")
	overflow = append(overflow, make([]byte, DigestSize)...)
	overflow = quicvarint.Append(overflow, 0)
	overflow = appendString(overflow, "")
	overflow = appendString(overflow, "")
	overflow = quicvarint.Append(overflow, 0)
	overflow = append(overflow, byte(Bounded))
	overflow = quicvarint.Append(overflow, math.MaxInt64/uint64(time.Millisecond)+1)
	overflow = append(overflow, make([]byte, 8)...)
	overflow = quicvarint.Append(overflow, 0)

	truncated := func(f Frame) []byte {
		p := f.Append(nil)
		return frameBytes(f.Type(), p[:len(p)-1])
	}
	withLastByte := func(f Frame, v byte) []byte {
		p := f.Append(nil)
		p[len(p)-1] = v
		return frameBytes(f.Type(), p)
	}
	// A reason over the limit, which Append would have cut.
	longReason := appendString([]byte{byte(PushFailed)}, strings.Repeat("r", MaxStringLen+1))
	// A list count far beyond the bytes that follow must fail before
	// anything is allocated for it.
	hugeCount := fullEntry().Append(nil)
	// Strip the replicas, the (empty) purge section of format 2 and the
	// pulled flag of format 3 after them.
	hugeCount = hugeCount[:len(hugeCount)-len(appendString(appendString([]byte{2}, "edge-fra-1"), "edge-iad-2"))-5]
	hugeCount = quicvarint.Append(hugeCount, MaxReplicas)

	tests := []struct {
		name   string
		frame  []byte
		detail string
	}{
		{"hello/kind 0", AppendFrame(nil, Hello{Kind: 0}), "connection kind"},
		{"rtt-report/family 5", frameBytes(FrameRTTReport, []byte{1, 5, 24, 192, 0, 2, 0, 1, 1}), "family 5"},
		{"rtt-report/ipv4 /25", frameBytes(FrameRTTReport, []byte{1, 4, 25, 192, 0, 2, 0, 1, 1}), "longer than /24"},
		{"rtt-report/ipv6 /64", frameBytes(FrameRTTReport, append(append([]byte{1, 6, 64}, netip.MustParseAddr("2001:db8::").AsSlice()...), 1, 1)), "longer than /48"},
		{"rtt-report/host bits", frameBytes(FrameRTTReport, []byte{1, 4, 24, 192, 0, 2, 7, 1, 1}), "bits set past the prefix"},
		{"rtt-report/short address", frameBytes(FrameRTTReport, []byte{1, 4, 24, 192, 0}), "address"},
		{"rtt-report/count beyond bytes", frameBytes(FrameRTTReport, []byte{0x40, 200}), "cannot fit"},
		{"hello/kind 4", AppendFrame(nil, Hello{Kind: 4}), "connection kind"},
		{"hello/lat NaN", AppendFrame(nil, Hello{Kind: ConnData, Lat: math.NaN()}), "latitude"},
		{"hello/lat 90.5", AppendFrame(nil, Hello{Kind: ConnData, Lat: 90.5}), "latitude"},
		{"hello/lon -181", AppendFrame(nil, Hello{Kind: ConnData, Lon: -181}), "longitude"},
		{"hello/lon +Inf", AppendFrame(nil, Hello{Kind: ConnData, Lon: math.Inf(1)}), "longitude"},
		{"hello/edge id too long", AppendFrame(nil, Hello{Kind: ConnData, EdgeID: strings.Repeat("x", MaxStringLen+1)}), "edge id: length 4097"},
		{"welcome/origin id too long", AppendFrame(nil, Welcome{OriginID: strings.Repeat("x", MaxStringLen+1)}), "origin id"},
		{"tree request/level 5", AppendFrame(nil, TreeRequest{Level: TreeDepth + 1}), "level 5"},
		{"tree request/index beyond level", AppendFrame(nil, TreeRequest{Level: 1, Indices: []uint32{16}}), "index 16"},
		{"tree request/too many", AppendFrame(nil, TreeRequest{Level: TreeDepth, Indices: make([]uint32, MaxTreeNodes+1)}), "exceed"},
		{"leaf request/leaf beyond", AppendFrame(nil, LeafRequest{Leaves: []uint32{TreeLeaves}}), "leaf 65536"},
		{"leaf tuples/NUL in key", AppendFrame(nil, LeafTuples{Tuples: []Tuple{{Namespace: "d", Key: "a\x00b"}}}), "NUL"},
		{"entry request/key too long", AppendFrame(nil, EntryRequest{Objects: []ObjectRef{{"d", strings.Repeat("k", MaxKeyLen+1)}}}), "key"},
		{"snapshot request/empty range", AppendFrame(nil, SnapshotRequest{FromLeaf: 5, ToLeaf: 5}), "empty"},
		{"snapshot request/beyond", AppendFrame(nil, SnapshotRequest{FromLeaf: 0, ToLeaf: TreeLeaves + 1}), "beyond"},
		{"tree nodes/truncated hash", truncated(TreeNodes{Hashes: []NodeHash{{1}}}), "hash"},
		{"reject/code 0", AppendFrame(nil, Reject{Code: 0}), "reject code"},
		{"reject/code 6", AppendFrame(nil, Reject{Code: RejectNotLeader + 1}), "reject code 6"},
		{"log entry/version 0", withVersion(0), "format version 0"},
		{"log entry/version 4", withVersion(LogEntryVersion + 1), "format version 4"},
		{"log entry/pulled flag 2", withLastByte(LogEntry{Op: OpPut}, 2), "pulled flag 2"},
		{"log entry/pulled status 99", entry(func(e *LogEntry) { e.Pulled = &Pulled{Status: 99} }), "status 99"},
		{"log entry/pulled status 600", entry(func(e *LogEntry) { e.Pulled = &Pulled{Status: 600} }), "status 600"},
		{"log entry/pulled on a delete", entry(func(e *LogEntry) { e.Op = OpDelete; e.Pulled = &Pulled{Status: 200} }), "carries a pulled response"},
		{"log entry/pulled header name", entry(func(e *LogEntry) { e.Pulled = &Pulled{Status: 200, Header: []HeaderField{{"Bad Name", "x"}}} }), "not a token"},
		{"log entry/pulled empty header name", entry(func(e *LogEntry) { e.Pulled = &Pulled{Status: 200, Header: []HeaderField{{"", "x"}}} }), "not a token"},
		{"log entry/pulled header CRLF", entry(func(e *LogEntry) { e.Pulled = &Pulled{Status: 200, Header: []HeaderField{{"X-A", "a\r\nX-B: b"}}} }), "CR, LF or NUL"},
		{"log entry/pulled too many fields", entry(func(e *LogEntry) { e.Pulled = &Pulled{Status: 200, Header: make([]HeaderField, MaxHeaderFields+1)} }), "header fields: 257 entries"},
		{"log entry/pulled selecting name", entry(func(e *LogEntry) { e.Pulled = &Pulled{Status: 200, Selecting: []HeaderField{{"A:B", "x"}}} }), "selecting field name"},
		{"log entry/op 0", entry(func(e *LogEntry) { e.Op = 0 }), "op 0"},
		{"log entry/op 4", entry(func(e *LogEntry) { e.Op = 4 }), "op 4"},
		{"log entry/consistency 5", entry(func(e *LogEntry) { e.Consistency = Strong + 1 }), "consistency 5"},
		{"log entry/namespace too long", entry(func(e *LogEntry) { e.Namespace = strings.Repeat("n", MaxNamespaceLen+1) }), "namespace: length"},
		{"log entry/namespace NUL", entry(func(e *LogEntry) { e.Namespace = "a\x00b" }), "namespace: contains NUL"},
		{"log entry/key too long", entry(func(e *LogEntry) { e.Key = strings.Repeat("k", MaxKeyLen+1) }), "key: length 1025"},
		{"log entry/key NUL", entry(func(e *LogEntry) { e.Key = "a\x00" }), "key: contains NUL"},
		{"log entry/content type too long", entry(func(e *LogEntry) { e.ContentType = strings.Repeat("t", MaxStringLen+1) }), "content type"},
		{"log entry/surrogate key too long", entry(func(e *LogEntry) { e.SurrogateKeys = []string{strings.Repeat("s", MaxStringLen+1)} }), "surrogate key"},
		{"log entry/too many surrogate keys", entry(func(e *LogEntry) { e.SurrogateKeys = manyStrings(MaxSurrogateKeys+1, "s") }), "surrogate keys: 257 entries"},
		{"log entry/too many replicas", entry(func(e *LogEntry) { e.Replicas = manyStrings(MaxReplicas+1, "e") }), "replicas: 4097 entries"},
		{"log entry/replica count beyond input", frameBytes(FrameLogEntry, hugeCount), "cannot fit"},
		{"log entry/bound overflow", frameBytes(FrameLogEntry, overflow), "overflows"},
		{"log entry/over MaxLogEntrySize", entry(func(e *LogEntry) { e.Replicas = manyStrings(64, strings.Repeat("r", 4000)) }), "exceed"},
		{"push offer/required 2", withLastByte(PushOffer{}, 2), "invalid boolean"},
		{"push offer/key too long", AppendFrame(nil, PushOffer{Key: strings.Repeat("k", MaxKeyLen+1)}), "key"},
		{"push reply/status 0", AppendFrame(nil, PushReply{}), "unknown status 0"},
		{"push reply/status 4", AppendFrame(nil, PushReply{Status: 4}), "unknown status 4"},
		{"push result/status 0", AppendFrame(nil, PushResult{}), "unknown status 0"},
		{"push result/status 5", AppendFrame(nil, PushResult{Status: 5}), "unknown status 5"},
		{"push result/reason too long", frameBytes(FramePushResult, longReason), "reason: length 4097"},
		{"fill request/namespace NUL", AppendFrame(nil, FillRequest{Namespace: "\x00"}), "namespace"},
		{"fill request/key too long", AppendFrame(nil, FillRequest{Key: strings.Repeat("k", MaxKeyLen+1)}), "key"},
		{"fill response/status 0", AppendFrame(nil, FillResponse{}), "unknown status 0"},
		{"fill response/status 8", AppendFrame(nil, FillResponse{Status: FillGatewayTimeout + 1}), "unknown status 8"},
		{"fill response/pass-through without entry", frameBytes(FrameFillResponse, []byte{byte(FillPassThrough), 0, 0}), "without an entry"},
		{"fill response/pass-through not pulled", AppendFrame(nil, FillResponse{Status: FillPassThrough, Entry: LogEntry{Op: OpPut}}), "without a pulled response"},
		{"fill request/pull flag 3", frameBytes(FrameFillRequest, append(FillRequest{}.Append(nil)[:len(FillRequest{}.Append(nil))-1], 3, 0, 0, 0)), "pull flag 3"},
		{"forward request/method with a space", AppendFrame(nil, ForwardRequest{Method: "GET X"}), "not a token"},
		{"forward request/empty method", AppendFrame(nil, ForwardRequest{}), "not a token"},
		{"fill request/no pull flag", frameBytes(FrameFillRequest, FillRequest{}.Append(nil)[:len(FillRequest{}.Append(nil))-1]), "pull flag"},
		{"fill request/pull field CRLF", AppendFrame(nil, FillRequest{Pull: &PullInfo{Header: []HeaderField{{"X", "a\r\nb"}}}}), "CR, LF or NUL"},
		{"fill response/not-modified without entry", frameBytes(FrameFillResponse, []byte{byte(FillNotModified), 0, 0}), "without an entry"},
		{"fill response/ok without entry", frameBytes(FrameFillResponse, []byte{byte(FillOK), 0, 0}), "without an entry"},
		{"fill response/not found with entry", frameBytes(FrameFillResponse, appendString([]byte{byte(FillNotFound), 0}, string(fullEntry().Append(nil)))), "with an entry"},
		{"fill response/bad entry", AppendFrame(nil, FillResponse{Status: FillOK, Entry: LogEntry{}}), "log entry: unknown op 0"},
		{"scrub progress/running 2", frameBytes(FrameScrubProgress, append([]byte{1, 2}, make([]byte, 10)...)), "running: invalid boolean"},
		{"leader changed/truncated id", frameBytes(FrameLeaderChanged, []byte{5, 'o'}), "origin id"},
		{"leader changed/trailing", frameBytes(FrameLeaderChanged, []byte{0, 0, 1}), "trailing"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f, n, err := ParseFrame(tc.frame)
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("ParseFrame = %#v, %v; want %v", f, err, ErrMalformed)
			}
			if f != nil {
				t.Errorf("ParseFrame returned frame %#v with error", f)
			}
			if n != len(tc.frame) {
				t.Errorf("consumed %d bytes, want %d", n, len(tc.frame))
			}
			if !strings.Contains(err.Error(), tc.detail) {
				t.Errorf("error %q does not mention %q", err, tc.detail)
			}
			if _, err := ReadFrame(bytes.NewReader(tc.frame)); !errors.Is(err, ErrMalformed) {
				t.Errorf("ReadFrame: got %v, want %v", err, ErrMalformed)
			}
		})
	}
}

func TestReasonCutAtRuneBoundary(t *testing.T) {
	tests := []struct {
		name   string
		reason string
	}{
		{"ascii", strings.Repeat("a", 5000)},
		{"two-byte", strings.Repeat("é", 3000)},
		{"three-byte offset", "a" + strings.Repeat("€", 2000)},
		{"four-byte", strings.Repeat("😀", 1100)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f, _, err := ParseFrame(AppendFrame(nil, PushReply{Status: PushRefuse, Reason: tc.reason}))
			if err != nil {
				t.Fatalf("ParseFrame: %v", err)
			}
			got := f.(PushReply).Reason
			if len(got) > MaxStringLen || len(got) < MaxStringLen-3 {
				t.Errorf("reason cut to %d bytes, want %d-3 to %d", len(got), MaxStringLen, MaxStringLen)
			}
			if !utf8.ValidString(got) || !strings.HasPrefix(tc.reason, got) {
				t.Errorf("reason cut to %q…, not a valid prefix", got[:16])
			}
		})
	}
}

func TestRejectCodeString(t *testing.T) {
	tests := []struct {
		c    RejectCode
		want string
	}{
		{RejectVersion, "version"},
		{RejectIdentity, "identity"},
		{RejectBadHello, "bad-hello"},
		{RejectShutdown, "shutdown"},
		{RejectNotLeader, "not leader"},
		{0, "reject-code(0)"},
		{RejectNotLeader + 1, "reject-code(6)"},
	}
	for _, tc := range tests {
		if got := tc.c.String(); got != tc.want {
			t.Errorf("RejectCode(%d).String() = %q, want %q", uint8(tc.c), got, tc.want)
		}
	}
}

func TestFrameTypeString(t *testing.T) {
	tests := []struct {
		t    FrameType
		want string
	}{
		{FrameHello, "hello"},
		{FrameHeartbeatAck, "heartbeat-ack"},
		{FrameFillResponse, "fill-response"},
		{0x7f, "frame(0x7f)"},
	}
	for _, tc := range tests {
		if got := tc.t.String(); got != tc.want {
			t.Errorf("FrameType(%#x).String() = %q, want %q", uint8(tc.t), got, tc.want)
		}
	}
	for _, tc := range validFrames() {
		if s := tc.in.Type().String(); strings.HasPrefix(s, "frame(") {
			t.Errorf("%s: type %#x has no name", tc.name, uint8(tc.in.Type()))
		}
	}
}
