package wire

import (
	"errors"
	"fmt"
	"io"
	"strconv"

	"github.com/quic-go/quic-go/quicvarint"
)

// FrameType is the first byte of every frame.
type FrameType uint8

const (
	FrameHello   FrameType = 0x01
	FrameWelcome FrameType = 0x02
	FrameReject  FrameType = 0x03
	// FrameLeaderChanged is sent on a fill connection (see LeaderChanged).
	FrameLeaderChanged FrameType = 0x04
	FrameHeartbeat     FrameType = 0x10
	FrameHeartbeatAck  FrameType = 0x11
	FrameAck           FrameType = 0x12
	FrameLogEntry      FrameType = 0x20
	FramePushOffer     FrameType = 0x30
	FramePushReply     FrameType = 0x31
	FramePushResult    FrameType = 0x32
	FrameFillRequest   FrameType = 0x40
	FrameFillResponse  FrameType = 0x41
	// FrameForwardRequest carries a client's request in a pull namespace
	// that a cache does not answer (POST, PUT, ...) to the upstream.
	FrameForwardRequest FrameType = 0x42

	FrameTreeRequest     FrameType = 0x50
	FrameTreeNodes       FrameType = 0x51
	FrameLeafRequest     FrameType = 0x52
	FrameLeafTuples      FrameType = 0x53
	FrameEntryRequest    FrameType = 0x54
	FrameSnapshotRequest FrameType = 0x55
	FrameResyncEnd       FrameType = 0x56
	FrameResyncReport    FrameType = 0x57
	FrameResyncNow       FrameType = 0x58
	FrameLogGap          FrameType = 0x59

	FrameScrubProgress FrameType = 0x60
	FrameRTTReport     FrameType = 0x61
)

func (t FrameType) String() string {
	switch t {
	case FrameHello:
		return "hello"
	case FrameWelcome:
		return "welcome"
	case FrameReject:
		return "reject"
	case FrameHeartbeat:
		return "heartbeat"
	case FrameHeartbeatAck:
		return "heartbeat-ack"
	case FrameAck:
		return "ack"
	case FrameLogEntry:
		return "log-entry"
	case FramePushOffer:
		return "push-offer"
	case FramePushReply:
		return "push-reply"
	case FramePushResult:
		return "push-result"
	case FrameFillRequest:
		return "fill-request"
	case FrameFillResponse:
		return "fill-response"
	case FrameForwardRequest:
		return "forward-request"
	case FrameTreeRequest:
		return "tree-request"
	case FrameTreeNodes:
		return "tree-nodes"
	case FrameLeafRequest:
		return "leaf-request"
	case FrameLeafTuples:
		return "leaf-tuples"
	case FrameEntryRequest:
		return "entry-request"
	case FrameSnapshotRequest:
		return "snapshot-request"
	case FrameResyncEnd:
		return "resync-end"
	case FrameResyncReport:
		return "resync-report"
	case FrameLeaderChanged:
		return "leader-changed"
	case FrameResyncNow:
		return "resync-now"
	case FrameLogGap:
		return "log-gap"
	case FrameScrubProgress:
		return "scrub-progress"
	case FrameRTTReport:
		return "rtt-report"
	}
	return "frame(0x" + strconv.FormatUint(uint64(t), 16) + ")"
}

// MaxFrameSize bounds a frame's payload. Content never travels in frames
// (it follows them raw), so metadata frames stay far below it.
const MaxFrameSize = 256 << 10

var (
	// ErrMalformed reports a frame whose payload does not parse.
	ErrMalformed = errors.New("wire: malformed frame")
	// ErrFrameTooLarge reports a frame whose declared length exceeds MaxFrameSize.
	ErrFrameTooLarge = errors.New("wire: frame too large")
	// ErrUnknownFrame reports an unknown frame type.
	ErrUnknownFrame = errors.New("wire: unknown frame type")
)

// Frame is a message that can be written to a stream.
type Frame interface {
	// Type is the frame's type code.
	Type() FrameType
	// Len is the payload length Append will add.
	Len() int
	// Append appends the payload (without type and length) to b.
	Append(b []byte) []byte
}

// Compile-time checks that every message is a Frame by value, which is
// how ReadFrame and ParseFrame return them.
var (
	_ Frame = Hello{}
	_ Frame = Welcome{}
	_ Frame = Reject{}
	_ Frame = Heartbeat{}
	_ Frame = HeartbeatAck{}
	_ Frame = Ack{}
	_ Frame = LogEntry{}
	_ Frame = PushOffer{}
	_ Frame = PushReply{}
	_ Frame = PushResult{}
	_ Frame = FillRequest{}
	_ Frame = FillResponse{}
	_ Frame = TreeRequest{}
	_ Frame = TreeNodes{}
	_ Frame = LeafRequest{}
	_ Frame = LeafTuples{}
	_ Frame = EntryRequest{}
	_ Frame = SnapshotRequest{}
	_ Frame = ResyncEnd{}
	_ Frame = ResyncReport{}
	_ Frame = ResyncNow{}
	_ Frame = LeaderChanged{}
	_ Frame = LogGap{}
	_ Frame = ScrubProgress{}
)

// AppendFrame appends f as a whole frame: type byte, varint payload length,
// payload. It does not check MaxFrameSize; WriteFrame does.
func AppendFrame(b []byte, f Frame) []byte {
	b = append(b, byte(f.Type()))
	b = quicvarint.Append(b, uint64(f.Len()))
	return f.Append(b)
}

// WriteFrame writes f to w in a single Write call, so that frames written
// by concurrent writers that serialise their calls never interleave. It
// refuses a frame whose payload exceeds MaxFrameSize, which the peer would
// refuse anyway, before writing anything.
func WriteFrame(w io.Writer, f Frame) error {
	n := f.Len()
	if n > MaxFrameSize {
		return fmt.Errorf("%w: %s payload is %d bytes (max %d)", ErrFrameTooLarge, f.Type(), n, MaxFrameSize)
	}
	b := AppendFrame(make([]byte, 0, 1+varintLen(uint64(n))+n), f)
	_, err := w.Write(b)
	return err
}

// ReadFrame reads exactly one frame from r and returns it as a value of its
// concrete type (Heartbeat, not *Heartbeat).
//
// It never reads past the frame, because raw content bytes follow some
// frames on the same stream: unless r is an io.ByteReader, the header is
// read one byte at a time. Wrap r in a bufio.Reader if that is too slow,
// and keep reading the content from the bufio.Reader.
//
// Errors: io.EOF if r ends before the first byte; io.ErrUnexpectedEOF if it
// ends inside the frame; ErrFrameTooLarge if the declared length exceeds
// MaxFrameSize (nothing is allocated or read past the length); otherwise the
// whole frame has been consumed and ErrUnknownFrame or ErrMalformed report
// a type or payload that does not parse, so a caller may skip the frame and
// carry on. Errors from r itself are returned unchanged.
func ReadFrame(r io.Reader) (Frame, error) {
	br, ok := r.(io.ByteReader)
	if !ok {
		br = &oneByteReader{r: r}
	}
	t, err := br.ReadByte()
	if err != nil {
		return nil, err
	}
	n, err := quicvarint.Read(br)
	if err != nil {
		return nil, noEOF(err)
	}
	if n > MaxFrameSize {
		return nil, fmt.Errorf("%w: %s declares %d bytes (max %d)", ErrFrameTooLarge, FrameType(t), n, MaxFrameSize)
	}
	payload := make([]byte, n)
	if _, err := io.ReadFull(r, payload); err != nil {
		return nil, noEOF(err)
	}
	return parsePayload(FrameType(t), payload)
}

// ParseFrame parses the frame at the start of b and returns it with the
// number of bytes it took. If b holds only part of a frame (including
// none), it returns io.ErrUnexpectedEOF and 0: read more and retry. If the
// declared length exceeds MaxFrameSize it returns ErrFrameTooLarge and 0.
// On ErrUnknownFrame or ErrMalformed the returned count still spans the
// whole frame, so a caller may skip it.
func ParseFrame(b []byte) (Frame, int, error) {
	if len(b) == 0 {
		return nil, 0, io.ErrUnexpectedEOF
	}
	t := FrameType(b[0])
	n, l, err := quicvarint.Parse(b[1:])
	if err != nil {
		return nil, 0, io.ErrUnexpectedEOF
	}
	if n > MaxFrameSize {
		return nil, 0, fmt.Errorf("%w: %s declares %d bytes (max %d)", ErrFrameTooLarge, t, n, MaxFrameSize)
	}
	end := 1 + l + int(n)
	if len(b) < end {
		return nil, 0, io.ErrUnexpectedEOF
	}
	f, err := parsePayload(t, b[1+l:end])
	return f, end, err
}

// parsePayload decodes a complete payload of type t.
func parsePayload(t FrameType, p []byte) (Frame, error) {
	switch t {
	case FrameHello:
		return asFrame(parseHello(p))
	case FrameWelcome:
		return asFrame(parseWelcome(p))
	case FrameReject:
		return asFrame(parseReject(p))
	case FrameHeartbeat:
		return asFrame(parseHeartbeat(p))
	case FrameHeartbeatAck:
		return asFrame(parseHeartbeatAck(p))
	case FrameAck:
		return asFrame(parseAck(p))
	case FrameLogEntry:
		return asFrame(parseLogEntry(p))
	case FramePushOffer:
		return asFrame(parsePushOffer(p))
	case FramePushReply:
		return asFrame(parsePushReply(p))
	case FramePushResult:
		return asFrame(parsePushResult(p))
	case FrameFillRequest:
		return asFrame(parseFillRequest(p))
	case FrameFillResponse:
		return asFrame(parseFillResponse(p))
	case FrameForwardRequest:
		return asFrame(parseForwardRequest(p))
	case FrameTreeRequest:
		return asFrame(parseTreeRequest(p))
	case FrameTreeNodes:
		return asFrame(parseTreeNodes(p))
	case FrameLeafRequest:
		return asFrame(parseLeafRequest(p))
	case FrameLeafTuples:
		return asFrame(parseLeafTuples(p))
	case FrameEntryRequest:
		return asFrame(parseEntryRequest(p))
	case FrameSnapshotRequest:
		return asFrame(parseSnapshotRequest(p))
	case FrameResyncEnd:
		return asFrame(parseResyncEnd(p))
	case FrameResyncReport:
		return asFrame(parseResyncReport(p))
	case FrameResyncNow:
		return asFrame(parseResyncNow(p))
	case FrameLeaderChanged:
		return asFrame(parseLeaderChanged(p))
	case FrameLogGap:
		return asFrame(parseLogGap(p))
	case FrameScrubProgress:
		return asFrame(parseScrubProgress(p))
	case FrameRTTReport:
		return asFrame(parseRTTReport(p))
	}
	return nil, fmt.Errorf("%w 0x%02x", ErrUnknownFrame, uint8(t))
}

// asFrame turns a parse result into a Frame, making sure a failed parse
// yields a nil Frame rather than a zero message in a non-nil interface.
func asFrame[T Frame](f T, err error) (Frame, error) {
	if err != nil {
		return nil, err
	}
	return f, nil
}

// noEOF maps io.EOF inside a frame to io.ErrUnexpectedEOF: only a stream
// that ends between frames has ended cleanly.
func noEOF(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// oneByteReader reads from r one byte per call, so that reading a frame
// header consumes nothing beyond it.
type oneByteReader struct {
	r   io.Reader
	buf [1]byte
}

func (o *oneByteReader) ReadByte() (byte, error) {
	// ReadFull retries empty reads and reports io.EOF only when nothing
	// was read, which is the io.ByteReader contract.
	if _, err := io.ReadFull(o.r, o.buf[:]); err != nil {
		return 0, err
	}
	return o.buf[0], nil
}
