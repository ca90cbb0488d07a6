package origin

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/geocdn/geocdn/internal/pki"
	"github.com/geocdn/geocdn/internal/wire"
)

// scrubOf is the scrub progress the origin lists for edge id.
func (to *testOrigin) scrubOf(id string) *ScrubProgress {
	for _, st := range to.Edges() {
		if st.ID == id {
			return st.Scrub
		}
	}
	return nil
}

// controlSession dials the origin as edge id, with a hello of the given
// protocol version, and returns the welcomed control stream.
func controlSession(t *testing.T, to *testOrigin, c *rawClient, id string, version uint8) (*quic.Conn, *quic.Stream) {
	t.Helper()
	conn := c.mustDial(t, to.issue(t, pki.RoleEdge, id))
	h := hello(wire.ConnControl, id)
	h.Version = version
	st, f, err := exchange(t, conn, wire.AppendFrame(nil, h), false)
	if err != nil {
		t.Fatalf("hello of %s: %v", id, err)
	}
	if _, ok := f.(wire.Welcome); !ok {
		t.Fatalf("hello of %s (version %d) answered with %T %+v, want a welcome", id, version, f, f)
	}
	return conn, st
}

// isAck reports whether f answers heartbeat seq.
func isAck(f wire.Frame, seq uint64) bool {
	ack, ok := f.(wire.HeartbeatAck)
	return ok && ack.Seq == seq
}

// expectProtocolClose waits for the origin to close conn as a protocol
// violation.
func expectProtocolClose(t *testing.T, conn *quic.Conn) {
	t.Helper()
	cause := closeCause(t, conn)
	var ae *quic.ApplicationError
	if !errors.As(cause, &ae) || !ae.Remote || ae.ErrorCode != codeProtocol {
		t.Fatalf("connection ended with %v, want the origin's protocol-error close (code %d)", cause, codeProtocol)
	}
}

// The origin records the scrub progress an edge sends on its control
// stream and lists it in the edge's row, the latest report replacing the
// one before; a report whose counts contradict each other, or an unknown
// frame, closes the connection as any malformed frame does, and the last
// good report stays.
func TestEdgeScrubProgress(t *testing.T) {
	to := startTestOrigin(t, nil)
	c := newRawClient(t, to)
	conn, st := controlSession(t, to, c, "e1", wire.ProtocolVersion)
	eventually(t, "e1 listed", func() bool { return to.listed("e1") })
	if p := to.scrubOf("e1"); p != nil {
		t.Fatalf("scrub progress before any report: %+v, want none", p)
	}
	for _, row := range to.Edges() {
		if b, err := json.Marshal(row); err != nil || strings.Contains(string(b), `"scrub"`) {
			t.Fatalf("edge row before any report: %s (%v), want no scrub field", b, err)
		}
	}

	finished := time.Date(2025, 6, 1, 12, 0, 0, 250e6, time.UTC)
	running := wire.ScrubProgress{Pass: 3, Running: true, Bytes: 41, TotalBytes: 100, Blobs: 4, TotalBlobs: 10,
		ReadErrors: 1, LastFullPass: 2, LastFullPassCorrupt: 2, LastFullPassMillis: uint64(finished.UnixMilli()), CorruptTotal: 2}
	if err := wire.WriteFrame(st, running); err != nil {
		t.Fatal(err)
	}
	eventually(t, "e1's scrub report listed", func() bool { return to.scrubOf("e1") != nil })
	p := to.scrubOf("e1")
	want := ScrubProgress{ReportedAt: p.ReportedAt, Pass: 3, Running: true, Progress: 0.41,
		PassBytes: 41, PassTotalBytes: 100, PassBlobs: 4, PassTotalBlobs: 10, PassReadErrors: 1,
		LastFullPass: 2, LastFullPassCorrupt: 2, LastPassFinished: finished, CorruptTotal: 2}
	if *p != want || p.ReportedAt.IsZero() {
		t.Fatalf("listed %+v, want %+v", *p, want)
	}

	done := wire.ScrubProgress{Pass: 3, Bytes: 100, TotalBytes: 100, Blobs: 10, TotalBlobs: 10, Corrupt: 1,
		LastFullPass: 3, LastFullPassCorrupt: 1, LastFullPassMillis: uint64(finished.Add(time.Hour).UnixMilli()), CorruptTotal: 3}
	if err := wire.WriteFrame(st, done); err != nil {
		t.Fatal(err)
	}
	eventually(t, "e1's second scrub report listed", func() bool { return to.scrubOf("e1").LastFullPass == 3 })
	if p := to.scrubOf("e1"); p.Running || p.Progress != 1 || p.PassCorrupt != 1 || p.LastFullPassCorrupt != 1 ||
		p.CorruptTotal != 3 || !p.LastPassFinished.Equal(finished.Add(time.Hour)) {
		t.Fatalf("after the pass: %+v, want pass 3 done, 1 corrupt, 3 in all", *p)
	}
	b, err := json.Marshal(to.Edges())
	if err != nil {
		t.Fatal(err)
	}
	for _, field := range []string{`"scrub":{`, `"last_full_pass_corrupt":1`, `"corrupt_total":3`, `"progress":1`} {
		if !strings.Contains(string(b), field) {
			t.Errorf("GET /v1/edges body %s does not hold %s", b, field)
		}
	}

	// Heartbeats go on being answered between reports.
	if err := wire.WriteFrame(st, wire.Heartbeat{Seq: 1}); err != nil {
		t.Fatal(err)
	}
	if f, err := answer(st); !isAck(f, 1) {
		t.Fatalf("heartbeat after the reports answered with %T %+v, %v; want its ack", f, f, err)
	}

	bad := wire.AppendFrame(nil, wire.ScrubProgress{Pass: 4, Running: true, Bytes: 5})
	if _, err := st.Write(bad); err != nil {
		t.Fatal(err)
	}
	expectProtocolClose(t, conn)
	if p := to.scrubOf("e1"); p == nil || p.LastFullPass != 3 || p.Pass != 3 {
		t.Fatalf("after a malformed report: %+v, want the last good one", p)
	}

	t.Run("unknown frame on the control stream", func(t *testing.T) {
		conn, st := controlSession(t, to, c, "e2", wire.ProtocolVersion)
		if _, err := st.Write(rawFrame(0x7e, []byte("future"))); err != nil {
			t.Fatal(err)
		}
		expectProtocolClose(t, conn)
	})

	t.Run("edge of protocol version 2", func(t *testing.T) {
		// It never reports scrubbing; the origin serves it as before.
		_, st := controlSession(t, to, c, "e3", wire.MinProtocolVersion)
		if err := wire.WriteFrame(st, wire.Heartbeat{Seq: 9}); err != nil {
			t.Fatal(err)
		}
		if f, err := answer(st); !isAck(f, 9) {
			t.Fatalf("heartbeat of a version-2 edge answered with %T %+v, %v; want its ack", f, f, err)
		}
		if p := to.scrubOf("e3"); p != nil {
			t.Fatalf("version-2 edge lists scrub progress %+v, want none", p)
		}
	})
}
