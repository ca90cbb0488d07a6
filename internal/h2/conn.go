package h2

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/geocdn/geocdn/internal/h1"
)

const http2ErrCodeNo = http2.ErrCodeNo

// Limits of a connection's buffers.
const (
	// readBufSize is the read buffer: a TLS record's worth.
	readBufSize = 16 << 10
	// flushAt is the output the reader gathers before it writes while it
	// still has input to process.
	flushAt = 64 << 10
	// maxPending bounds the output waiting for the wire: writers wait
	// beyond it.
	maxPending = 512 << 10
	// maxControlFrames bounds the answers to PING and SETTINGS (and the
	// RST_STREAM frames) queued and not yet written: a peer that floods
	// them without reading loses the connection, as with net/http.
	maxControlFrames = 10000
	// goAwayLinger is how long a connection that said GOAWAY and has
	// nothing left to send waits for its peer to close, so that frames
	// still in flight from it do not turn the close into a reset that
	// could lose the last response.
	goAwayLinger = time.Second
	// recentResets remembers the streams this end reset, whose frames
	// still in flight are then ignored (RFC 9113 §5.4.2) rather than
	// answered as errors.
	recentResets = 32
	// maxWindow is the largest flow-control window (RFC 9113 §6.9.1).
	maxWindow = 1<<31 - 1
	// initialWindow is the peer's initial window before its SETTINGS, and
	// the receive windows this server advertises (it sends no
	// SETTINGS_INITIAL_WINDOW_SIZE): request bodies are rare at a cache,
	// and each stream's buffer is bounded by its window.
	initialWindow = 65535
)

type conn struct {
	s      *Server
	rwc    net.Conn
	remote string
	tls    *tls.ConnectionState
	ctx    context.Context
	cancel context.CancelFunc

	// Reader goroutine only.
	lr    budgetReader
	br    *bufio.Reader
	fr    *http2.Framer
	req   h1.Request
	reply Reply
	hbuf  []byte // the fast handler's header scratch
	// fastBlock and scratch are the fast path's header block and a
	// lowercased name; fastStream the state of its stream while it sends.
	fastBlock  []byte
	scratch    []byte
	fastStream stream
	hostBuf    []byte
	handlers   sync.WaitGroup
	// activity is set by the reader on every frame; tick reads and clears
	// it.
	activity atomic.Bool
	timer    *time.Timer
	start    time.Time

	mu   sync.Mutex
	cond sync.Cond
	// streams are the open streams (and half-closed ones): those counted
	// against MaxConcurrentStreams.
	streams map[uint32]*stream
	// maxID is the highest stream the client opened: those at or below
	// it not in streams are closed.
	maxID uint32
	// blocked are the fast-path streams whose body waits for window.
	blocked []*stream
	// reset are recent streams this end reset (a ring).
	reset     [recentResets]uint32
	resetNext int

	out, spare []byte
	writing    bool  // a goroutine is writing out
	werr       error // the first write error
	wdl        time.Time
	control    int // control frames queued since the last write

	sendWindow   int64 // the peer's connection window
	recvWindow   int64 // what the peer may still send on the connection
	peerInitial  int64 // the peer's SETTINGS_INITIAL_WINDOW_SIZE
	peerMaxFrame int   // the peer's SETTINGS_MAX_FRAME_SIZE

	nHandlers int // handler goroutines running
	refused   int // streams refused while handlers of reset ones ran
	gotPrefix bool
	goAway    bool // GOAWAY sent
	closing   bool // close once what is queued is written
	closed    bool

	pingOut   bool
	pingSent  time.Time
	lastRead  time.Time
	idleSince time.Time
	stalled   time.Time // when a response first waited for window; zero if none waits
	writers   int       // handler writers waiting for window
}

// budgetReader limits what one frame, with the CONTINUATION frames of
// its header block, may take from the connection: the Framer bounds a
// header list's size but not the number of empty CONTINUATION frames
// (a CONTINUATION flood).
type budgetReader struct {
	r io.Reader
	n int
}

var errContinuationFlood = errors.New("h2: header block too long")

func (b *budgetReader) Read(p []byte) (int, error) {
	if b.n <= 0 {
		return 0, errContinuationFlood
	}
	if len(p) > b.n {
		p = p[:b.n]
	}
	n, err := b.r.Read(p)
	b.n -= n
	return n, err
}

type stream struct {
	id uint32
	// remoteDone: END_STREAM received (half-closed remote);
	// localDone: END_STREAM or RST_STREAM sent.
	remoteDone, localDone bool
	// reset: the stream ended by RST_STREAM or with its connection;
	// writers and readers get resetErr.
	reset    bool
	resetErr error
	head     bool

	sendWindow int64
	recvWindow int64

	// A fast-path body waiting for window: pend, or the file pendFile
	// from pendOff to pendEnd.
	pend             []byte
	pendFile         *os.File
	pendOff, pendEnd int64

	// The handler path.
	handler bool
	cancel  context.CancelFunc
	inbuf   []byte // request body received, not yet read
	inEOF   bool
	closed  bool  // the handler closed the body
	declCL  int64 // the request's Content-Length, -1 if none
	got     int64 // request body bytes received
}

func newConn(s *Server, rwc net.Conn) *conn {
	c := &conn{
		s:            s,
		rwc:          rwc,
		remote:       rwc.RemoteAddr().String(),
		streams:      map[uint32]*stream{},
		sendWindow:   initialWindow,
		recvWindow:   initialWindow,
		peerInitial:  initialWindow,
		peerMaxFrame: 16384,
		hbuf:         make([]byte, 0, 512),
		start:        time.Now(),
	}
	c.cond.L = &c.mu
	if tc, ok := rwc.(*tls.Conn); ok {
		st := tc.ConnectionState()
		c.tls = &st
	}
	c.ctx, c.cancel = context.WithCancel(s.baseCtx)
	c.br = bufio.NewReaderSize(rwc, readBufSize)
	c.lr.r = c.br
	c.fr = http2.NewFramer(nil, &c.lr)
	c.fr.SetMaxReadFrameSize(16384)
	c.fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	c.fr.MaxHeaderListSize = uint32(s.MaxHeaderBytes)
	c.fr.SetReuseFrames()
	c.reply.c = c
	c.lastRead = c.start
	c.idleSince = c.start
	return c
}

// frameBudget is what one ReadFrame may take: a frame, or a header block
// of MaxHeaderBytes encoded at worst twice as long (the Framer's own
// bound) in CONTINUATION frames, with room for a few thousand frame
// headers.
func (c *conn) frameBudget() int { return 2*c.s.MaxHeaderBytes + 4*(16384+9) }

// serve is the connection's goroutine: it reads frames and answers them
// until the connection ends.
func (c *conn) serve() {
	// The timer is set with c.mu held, as tick reads it with c.mu held.
	c.mu.Lock()
	c.timer = time.AfterFunc(c.tickEvery(), c.tick)
	c.mu.Unlock()
	defer c.cleanup()
	defer func() {
		// A panic in the fast handler costs its connection, not the
		// process, as a panic in Handler costs its stream.
		if p := recover(); p != nil {
			c.s.Logger.Error("h2: fast handler panic", "path", c.req.Path, "panic", fmt.Sprint(p))
		}
	}()
	c.mu.Lock()
	c.out = append(c.out, 0, 0, 0, byte(http2.FrameSettings), 0, 0, 0, 0, 0)
	c.out = appendSetting(c.out, http2.SettingMaxConcurrentStreams, c.s.MaxConcurrentStreams)
	c.out = appendSetting(c.out, http2.SettingMaxHeaderListSize, uint32(c.s.MaxHeaderBytes))
	putLen(c.out, 0, len(c.out)-9)
	c.flushLocked()
	c.mu.Unlock()

	var preface [len(http2.ClientPreface)]byte
	if _, err := io.ReadFull(c.br, preface[:]); err != nil || string(preface[:]) != http2.ClientPreface {
		return
	}
	first := true
	for {
		if c.br.Buffered() == 0 {
			c.mu.Lock()
			c.flushLocked()
			c.mu.Unlock()
		}
		c.lr.n = c.frameBudget()
		f, err := c.fr.ReadFrame()
		c.activity.Store(true)
		if err != nil {
			var se http2.StreamError
			if errors.As(err, &se) {
				c.mu.Lock()
				if se.StreamID > c.maxID && se.StreamID&1 == 1 {
					// A malformed HEADERS opens its stream all the same.
					c.maxID = se.StreamID
				}
				c.resetLocked(c.streams[se.StreamID], se.StreamID, se.Code)
				c.mu.Unlock()
				continue
			}
			switch {
			case errors.As(err, new(http2.ConnectionError)):
				c.connError(http2.ErrCode(err.(http2.ConnectionError)))
			case errors.Is(err, http2.ErrFrameTooLarge):
				c.connError(http2.ErrCodeFrameSize)
			case errors.Is(err, errContinuationFlood):
				c.connError(http2.ErrCodeEnhanceYourCalm)
			}
			return
		}
		if first {
			sf, ok := f.(*http2.SettingsFrame)
			if !ok || sf.IsAck() {
				c.connError(http2.ErrCodeProtocol)
				return
			}
			first = false
			c.mu.Lock()
			c.gotPrefix = true
			c.mu.Unlock()
		}
		if code, ok := c.process(f); !ok {
			c.connError(code)
			return
		}
	}
}

// connError ends the connection with GOAWAY(code). It then reads and
// drops what the peer still sends, for goAwayLinger at most, so that the
// close does not become a reset that loses the GOAWAY.
func (c *conn) connError(code http2.ErrCode) {
	c.mu.Lock()
	c.queueGoAway(code)
	// Out with the GOAWAY before the close_notify below: if another
	// goroutine is writing, wait until it has written it too.
	for {
		c.flushLocked()
		if !c.writing || c.werr != nil {
			break
		}
		c.cond.Wait()
	}
	failed := c.werr != nil
	c.mu.Unlock()
	if failed {
		return
	}
	if tc, ok := c.rwc.(*tls.Conn); ok {
		tc.CloseWrite()
	}
	c.rwc.SetReadDeadline(time.Now().Add(goAwayLinger))
	io.Copy(io.Discard, io.LimitReader(c.rwc, 1<<20))
}

// cleanup ends every stream, closes the connection and waits for the
// handlers.
func (c *conn) cleanup() {
	c.timer.Stop()
	c.mu.Lock()
	c.closed = true
	for _, st := range c.streams {
		c.endStreamLocked(st, errConnClosed)
	}
	c.blocked = nil
	c.cond.Broadcast()
	c.mu.Unlock()
	c.cancel()
	c.rwc.Close()
	c.handlers.Wait()
}

var (
	errConnClosed   = errors.New("h2: connection closed")
	errStreamReset  = errors.New("h2: stream reset by the client")
	errStreamClosed = errors.New("h2: stream closed")
)

// process answers one frame; false (with a code) is a connection error.
func (c *conn) process(f http2.Frame) (http2.ErrCode, bool) {
	switch f := f.(type) {
	case *http2.MetaHeadersFrame:
		return c.processHeaders(f)
	case *http2.DataFrame:
		return c.processData(f)
	case *http2.SettingsFrame:
		return c.processSettings(f)
	case *http2.WindowUpdateFrame:
		return c.processWindowUpdate(f)
	case *http2.PingFrame:
		c.mu.Lock()
		defer c.mu.Unlock()
		if f.IsAck() {
			c.pingOut = false
			return 0, true
		}
		c.out = appendFrameHeader(c.out, 8, http2.FramePing, http2.FlagPingAck, 0)
		c.out = append(c.out, f.Data[:]...)
		return c.countControlLocked()
	case *http2.RSTStreamFrame:
		c.mu.Lock()
		defer c.mu.Unlock()
		if c.idle(f.StreamID) {
			return http2.ErrCodeProtocol, false
		}
		if st := c.streams[f.StreamID]; st != nil {
			st.localDone = true
			c.endStreamLocked(st, errStreamReset)
		}
		return 0, true
	case *http2.PriorityFrame:
		if f.StreamDep == f.StreamID {
			c.mu.Lock()
			c.resetLocked(c.streams[f.StreamID], f.StreamID, http2.ErrCodeProtocol)
			c.mu.Unlock()
		}
		return 0, true
	case *http2.GoAwayFrame:
		if f.ErrCode != http2.ErrCodeNo {
			return http2.ErrCodeNo, false // the client gave up: so do we
		}
		// No new streams, and close when the open ones are done.
		c.startGoAway(http2.ErrCodeNo, true)
		return 0, true
	case *http2.PushPromiseFrame:
		return http2.ErrCodeProtocol, false
	case *http2.ContinuationFrame:
		// A CONTINUATION outside a header block (the Framer merges the
		// others).
		return http2.ErrCodeProtocol, false
	}
	return 0, true // unknown frame types are ignored (RFC 9113 §5.5)
}

// idle reports whether stream id is one the client has not opened yet.
func (c *conn) idle(id uint32) bool { return id > c.maxID }

// countControlLocked counts a control frame queued; too many unwritten end the
// connection.
func (c *conn) countControlLocked() (http2.ErrCode, bool) {
	c.control++
	if c.control > maxControlFrames {
		return http2.ErrCodeEnhanceYourCalm, false
	}
	return 0, true
}

func (c *conn) processSettings(f *http2.SettingsFrame) (http2.ErrCode, bool) {
	if f.IsAck() {
		return 0, true
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	grew := false
	err := f.ForeachSetting(func(s http2.Setting) error {
		if err := s.Valid(); err != nil {
			return err
		}
		switch s.ID {
		case http2.SettingInitialWindowSize:
			delta := int64(s.Val) - c.peerInitial
			c.peerInitial = int64(s.Val)
			for _, st := range c.streams {
				st.sendWindow += delta
				if st.sendWindow > maxWindow {
					return http2.ConnectionError(http2.ErrCodeFlowControl)
				}
			}
			grew = grew || delta > 0
		case http2.SettingMaxFrameSize:
			c.peerMaxFrame = int(s.Val)
		}
		return nil
	})
	if err != nil {
		var ce http2.ConnectionError
		if errors.As(err, &ce) {
			return http2.ErrCode(ce), false
		}
		return http2.ErrCodeProtocol, false
	}
	c.out = appendFrameHeader(c.out, 0, http2.FrameSettings, http2.FlagSettingsAck, 0)
	if grew {
		c.windowGrewLocked()
	}
	return c.countControlLocked()
}

func (c *conn) processWindowUpdate(f *http2.WindowUpdateFrame) (http2.ErrCode, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if f.StreamID == 0 {
		c.sendWindow += int64(f.Increment)
		if c.sendWindow > maxWindow {
			return http2.ErrCodeFlowControl, false
		}
	} else {
		if c.idle(f.StreamID) {
			return http2.ErrCodeProtocol, false
		}
		st := c.streams[f.StreamID]
		if st == nil || st.localDone {
			return 0, true
		}
		st.sendWindow += int64(f.Increment)
		if st.sendWindow > maxWindow {
			c.resetLocked(st, st.id, http2.ErrCodeFlowControl)
			return 0, true
		}
	}
	c.windowGrewLocked()
	return 0, true
}

// windowGrewLocked sends what waited for window and wakes the writers
// that wait.
func (c *conn) windowGrewLocked() {
	c.stalled = time.Time{}
	c.sendPendingLocked()
	c.cond.Broadcast()
}

func (c *conn) processData(f *http2.DataFrame) (http2.ErrCode, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	id := f.StreamID
	if c.idle(id) {
		return http2.ErrCodeProtocol, false
	}
	n := int64(f.Header().Length)
	if n > c.recvWindow {
		return http2.ErrCodeFlowControl, false
	}
	c.recvWindow -= n
	st := c.streams[id]
	if st == nil || st.remoteDone {
		c.creditLocked(0, n)
		if !c.resetByUs(id) {
			c.resetLocked(st, id, http2.ErrCodeStreamClosed)
		}
		return 0, true
	}
	if n > st.recvWindow {
		c.creditLocked(0, n)
		c.resetLocked(st, id, http2.ErrCodeFlowControl)
		return 0, true
	}
	st.recvWindow -= n
	data := f.Data()
	st.got += int64(len(data))
	if st.declCL >= 0 && (st.got > st.declCL || f.StreamEnded() && st.got != st.declCL) {
		c.creditLocked(0, n)
		c.resetLocked(st, id, http2.ErrCodeProtocol)
		return 0, true
	}
	if pad := n - int64(len(data)); pad > 0 || st.closed {
		if st.closed {
			pad = n
		}
		c.creditLocked(0, pad)
		if !f.StreamEnded() {
			c.creditLocked(id, pad)
		}
	}
	if !st.closed {
		st.inbuf = append(st.inbuf, data...)
	}
	if f.StreamEnded() {
		c.remoteEndLocked(st)
	}
	c.cond.Broadcast()
	return 0, true
}

// remoteEndLocked marks st half-closed (remote).
func (c *conn) remoteEndLocked(st *stream) {
	st.remoteDone = true
	st.inEOF = true
	if st.localDone {
		c.forgetLocked(st)
	}
}

// creditLocked gives the peer n bytes of window back on stream id (0:
// the connection).
func (c *conn) creditLocked(id uint32, n int64) {
	if n <= 0 {
		return
	}
	if id == 0 {
		c.recvWindow += n
	} else if st := c.streams[id]; st != nil {
		st.recvWindow += n
	}
	c.out = appendFrameHeader(c.out, 4, http2.FrameWindowUpdate, 0, id)
	c.out = append(c.out, byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
}

func (c *conn) processHeaders(f *http2.MetaHeadersFrame) (http2.ErrCode, bool) {
	id := f.StreamID
	if id&1 == 0 {
		return http2.ErrCodeProtocol, false
	}
	c.mu.Lock()
	if !c.idle(id) {
		defer c.mu.Unlock()
		st := c.streams[id]
		if st == nil {
			if c.resetByUs(id) {
				return 0, true
			}
			return http2.ErrCodeStreamClosed, false
		}
		if st.remoteDone {
			c.resetLocked(st, id, http2.ErrCodeStreamClosed)
			return 0, true
		}
		// Trailers: they must end the stream and carry no pseudo-fields.
		if !f.StreamEnded() || len(f.PseudoFields()) > 0 ||
			st.declCL >= 0 && st.got != st.declCL {
			c.resetLocked(st, id, http2.ErrCodeProtocol)
			return 0, true
		}
		c.remoteEndLocked(st)
		c.cond.Broadcast()
		return 0, true
	}
	c.maxID = id
	if c.goAway {
		c.mu.Unlock()
		return 0, true // opened after GOAWAY: ignored (RFC 9113 §6.8)
	}
	if f.HasPriority() && f.Priority.StreamDep == id {
		c.resetLocked(nil, id, http2.ErrCodeProtocol)
		c.mu.Unlock()
		return 0, true
	}
	if len(c.streams) >= int(c.s.MaxConcurrentStreams) {
		c.resetLocked(nil, id, http2.ErrCodeRefusedStream)
		code, ok := c.countControlLocked()
		c.mu.Unlock()
		return code, ok
	}
	c.mu.Unlock()

	var method, path, scheme, authority, host, te string
	fast := f.StreamEnded() && c.s.Fast != nil
	declCL := int64(-1)
	for _, hf := range f.Fields {
		switch hf.Name {
		case ":method":
			method = hf.Value
		case ":path":
			path = hf.Value
		case ":scheme":
			scheme = hf.Value
		case ":authority":
			authority = hf.Value
		case ":protocol":
			return c.streamError(id, http2.ErrCodeProtocol)
		case "host":
			host = hf.Value
		case "te":
			te = hf.Value
		case "content-length":
			n, err := strconv.ParseUint(hf.Value, 10, 63)
			if err != nil || declCL >= 0 && int64(n) != declCL {
				return c.streamError(id, http2.ErrCodeProtocol)
			}
			declCL = int64(n)
		}
		if connSpecific(hf.Name) {
			return c.streamError(id, http2.ErrCodeProtocol)
		}
		if fast && c.s.slow[hf.Name] {
			fast = false
		}
	}
	if method == "" || method != "CONNECT" && (path == "" || scheme == "") ||
		te != "" && te != "trailers" {
		return c.streamError(id, http2.ErrCodeProtocol)
	}
	if f.Truncated {
		// The header list exceeded MaxHeaderBytes: 431, as net/http.
		c.mu.Lock()
		c.out = c.appendHeadersFrame(c.out, id, true, appendStatus(c.hbuf[:0], 431))
		c.mu.Unlock()
		return 0, true
	}
	if authority == "" {
		authority = host
	}
	if fast && (method == "GET" || method == "HEAD") && strings.HasPrefix(path, "/") {
		if c.serveFast(id, method == "HEAD", path, authority) {
			return 0, true
		}
	}
	return c.startHandler(f, id, method, path, scheme, authority, declCL)
}

// streamError resets stream id with code, before it had a stream.
func (c *conn) streamError(id uint32, code http2.ErrCode) (http2.ErrCode, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.resetLocked(nil, id, code)
	return c.countControlLocked()
}

// resetLocked sends RST_STREAM(code) on stream id, whose state is st (nil
// if it has none), and ends it.
func (c *conn) resetLocked(st *stream, id uint32, code http2.ErrCode) {
	c.out = appendFrameHeader(c.out, 4, http2.FrameRSTStream, 0, id)
	c.out = append(c.out, byte(code>>24), byte(code>>16), byte(code>>8), byte(code))
	c.reset[c.resetNext] = id
	c.resetNext = (c.resetNext + 1) % recentResets
	if st != nil {
		st.localDone = true
		c.endStreamLocked(st, errStreamClosed)
	}
}

// resetByUs reports a stream this end reset lately.
func (c *conn) resetByUs(id uint32) bool {
	for _, r := range c.reset {
		if r == id && id != 0 {
			return true
		}
	}
	return false
}

// endStreamLocked ends st at once: its handler's context is cancelled,
// its waiters woken with err and what it waited to send dropped.
func (c *conn) endStreamLocked(st *stream, err error) {
	if !st.reset {
		st.reset = true
		st.resetErr = err
	}
	if st.cancel != nil {
		st.cancel()
	}
	// What the body held goes back to the connection's window.
	if n := int64(len(st.inbuf)); n > 0 && !c.closed {
		c.creditLocked(0, n)
	}
	st.inbuf = nil
	c.dropPending(st)
	c.forgetLocked(st)
	c.cond.Broadcast()
}

// forgetLocked removes st from the open streams; after a GOAWAY the last
// one closes the connection.
func (c *conn) forgetLocked(st *stream) {
	if c.streams[st.id] != st {
		return
	}
	delete(c.streams, st.id)
	if len(c.streams) == 0 && c.s.IdleTimeout > 0 {
		c.idleSince = time.Now()
	}
	if c.goAway && len(c.streams) == 0 && c.nHandlers == 0 {
		c.closing = true
		c.kickLocked()
	}
}

// queueGoAway queues a GOAWAY naming the last stream answered, once.
func (c *conn) queueGoAway(code http2.ErrCode) {
	if c.goAway && code == http2.ErrCodeNo {
		return
	}
	c.goAway = true
	c.out = appendFrameHeader(c.out, 8, http2.FrameGoAway, 0, 0)
	id := c.maxID
	c.out = append(c.out, byte(id>>24), byte(id>>16), byte(id>>8), byte(id),
		byte(code>>24), byte(code>>16), byte(code>>8), byte(code))
}

// goAway starts closing the connection: GOAWAY(code), then, when graceful,
// the streams open finish first.
func (c *conn) startGoAway(code http2.ErrCode, graceful bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return
	}
	c.queueGoAway(code)
	if !graceful || len(c.streams) == 0 && c.nHandlers == 0 {
		c.closing = true
	}
	c.kickLocked()
}

// kickLocked starts a goroutine writing what is queued, unless one
// writes already; for goroutines that must not wait on the peer.
func (c *conn) kickLocked() {
	if c.writing {
		return
	}
	if len(c.out) == 0 {
		if c.closing {
			c.lingerClose()
		}
		return
	}
	c.writing = true
	go func() {
		c.mu.Lock()
		c.writing = false
		c.flushLocked()
		c.mu.Unlock()
	}()
}

// flushLocked writes what is queued, with c.mu held (released during the
// writes), unless another goroutine is writing: that one writes it too.
func (c *conn) flushLocked() {
	if c.writing {
		return
	}
	c.writing = true
	for len(c.out) > 0 && c.werr == nil {
		out := c.out
		c.out = c.spare[:0]
		c.control = 0
		c.mu.Unlock()
		c.setWriteDeadline()
		_, err := c.rwc.Write(out)
		c.mu.Lock()
		if cap(out) <= maxPending {
			c.spare = out[:0]
		} else {
			c.spare = nil // not kept: c.out may be the old spare
		}
		if err != nil && c.werr == nil {
			c.werr = err
			c.rwc.Close()
		}
		c.cond.Broadcast()
	}
	c.writing = false
	c.cond.Broadcast() // for connError, waiting for the writer to finish
	if c.werr != nil {
		c.out = nil
	}
	if c.closing && len(c.out) == 0 {
		c.lingerClose()
	}
}

// lingerClose closes the connection after a GOAWAY once the peer had a
// moment to close it first (see goAwayLinger).
func (c *conn) lingerClose() {
	if c.closed || c.werr != nil {
		c.rwc.Close()
		return
	}
	c.closed = true
	if tc, ok := c.rwc.(*tls.Conn); ok {
		tc.CloseWrite()
	}
	time.AfterFunc(goAwayLinger, func() { c.rwc.Close() })
}

// setWriteDeadline moves the write deadline to WriteTimeout from now,
// unless it is within wslack of that already. Called by the writing
// goroutine only.
func (c *conn) setWriteDeadline() {
	d := time.Now().Add(c.s.WriteTimeout)
	if d.Sub(c.wdl) > c.s.wslack {
		c.wdl = d
		c.rwc.SetWriteDeadline(d)
	}
}

// waitRoomLocked waits until the output queue has room, writing it
// itself when no one else is.
func (c *conn) waitRoomLocked() {
	for len(c.out) >= maxPending && c.werr == nil {
		if !c.writing {
			c.flushLocked()
			continue
		}
		c.cond.Wait()
	}
}

// tickEvery is how often tick checks the connection's timeouts.
func (c *conn) tickEvery() time.Duration {
	d := c.s.PrefaceTimeout
	for _, t := range []time.Duration{c.s.IdleTimeout, c.s.PingInterval, c.s.PingTimeout, c.s.WriteTimeout} {
		if t > 0 {
			d = min(d, t)
		}
	}
	return max(d/4, 10*time.Millisecond)
}

// tick enforces the preface, idle, ping and flow-control timeouts; it runs
// on a timer, so that the reader never sets a read deadline (one that
// expired mid-frame would corrupt the stream of frames).
func (c *conn) tick() {
	now := time.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed || c.werr != nil {
		return
	}
	if c.activity.Swap(false) {
		// Frames came: the client is alive, and the connection is not
		// idle (fast-path streams never join c.streams).
		c.lastRead = now
		c.idleSince = now
		c.pingOut = false
	}
	s := c.s
	switch {
	case !c.gotPrefix && now.Sub(c.start) >= s.PrefaceTimeout:
		c.rwc.Close()
		return
	case s.IdleTimeout > 0 && len(c.streams) == 0 && c.nHandlers == 0 && now.Sub(c.idleSince) >= s.IdleTimeout:
		c.queueGoAway(http2.ErrCodeNo)
		c.closing = true
		c.kickLocked()
		return
	case c.pingOut && now.Sub(c.pingSent) >= s.PingTimeout:
		c.rwc.Close()
		return
	case !c.stalled.IsZero() && now.Sub(c.stalled) >= s.WriteTimeout:
		// A response has waited WriteTimeout for window with no
		// WINDOW_UPDATE: the client stopped reading.
		c.queueGoAway(http2.ErrCodeFlowControl)
		c.closing = true
		c.kickLocked()
		return
	}
	if s.PingInterval > 0 && !c.pingOut && now.Sub(c.lastRead) >= s.PingInterval {
		c.pingOut = true
		c.pingSent = now
		c.out = appendFrameHeader(c.out, 8, http2.FramePing, 0, 0)
		c.out = append(c.out, 'g', 'e', 'o', 'c', 'd', 'n', 0, 0)
		c.kickLocked()
	}
	c.timer.Reset(c.tickEvery())
}

// stallLocked notes that a response waits for window.
func (c *conn) stallLocked() {
	if c.stalled.IsZero() {
		c.stalled = time.Now()
	}
}

func appendFrameHeader(b []byte, n int, t http2.FrameType, fl http2.Flags, id uint32) []byte {
	return append(b, byte(n>>16), byte(n>>8), byte(n), byte(t), byte(fl),
		byte(id>>24)&0x7f, byte(id>>16), byte(id>>8), byte(id))
}

func putLen(b []byte, at, n int) {
	b[at], b[at+1], b[at+2] = byte(n>>16), byte(n>>8), byte(n)
}

func appendSetting(b []byte, id http2.SettingID, v uint32) []byte {
	return append(b, byte(id>>8), byte(id), byte(v>>24), byte(v>>16), byte(v>>8), byte(v))
}

// appendHeadersFrame appends block as a HEADERS frame on stream id, with
// CONTINUATION frames if it exceeds the peer's frame size.
func (c *conn) appendHeadersFrame(dst []byte, id uint32, endStream bool, block []byte) []byte {
	t, fl := http2.FrameHeaders, http2.Flags(0)
	if endStream {
		fl = http2.FlagHeadersEndStream
	}
	for {
		n := min(len(block), c.peerMaxFrame)
		f := fl
		if n == len(block) {
			f |= http2.FlagHeadersEndHeaders
		}
		dst = appendFrameHeader(dst, n, t, f, id)
		dst = append(dst, block[:n]...)
		block = block[n:]
		if len(block) == 0 {
			return dst
		}
		t, fl = http2.FrameContinuation, 0
	}
}
