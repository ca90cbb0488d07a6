package wire

import "github.com/quic-go/quic-go/quicvarint"

// Heartbeat is sent by the edge on the control stream every heartbeat
// interval. Seq identifies it so the edge can measure its lease from when
// it sent the request.
//
// Layout: seq | watermark (varints).
type Heartbeat struct {
	Seq       uint64
	Watermark uint64
}

// HeartbeatAck answers a Heartbeat.
//
// Layout: seq | origin LSN | lease term ms (varints).
type HeartbeatAck struct {
	Seq         uint64
	LSN         uint64
	LeaseMillis uint64
}

// Ack tells the origin the edge has applied every log entry up to
// Watermark. Sent on the control stream after applying log entries.
//
// Layout: watermark (varint).
type Ack struct {
	Watermark uint64
}

func (Heartbeat) Type() FrameType { return FrameHeartbeat }

func (h Heartbeat) Len() int { return varintLen(h.Seq) + varintLen(h.Watermark) }

func (h Heartbeat) Append(b []byte) []byte {
	b = quicvarint.Append(b, h.Seq)
	return quicvarint.Append(b, h.Watermark)
}

func parseHeartbeat(b []byte) (Heartbeat, error) {
	d := decoder{msg: "heartbeat", b: b}
	h := Heartbeat{
		Seq:       d.varint("seq"),
		Watermark: d.varint("watermark"),
	}
	if err := d.finish(); err != nil {
		return Heartbeat{}, err
	}
	return h, nil
}

func (HeartbeatAck) Type() FrameType { return FrameHeartbeatAck }

func (h HeartbeatAck) Len() int {
	return varintLen(h.Seq) + varintLen(h.LSN) + varintLen(h.LeaseMillis)
}

func (h HeartbeatAck) Append(b []byte) []byte {
	b = quicvarint.Append(b, h.Seq)
	b = quicvarint.Append(b, h.LSN)
	return quicvarint.Append(b, h.LeaseMillis)
}

func parseHeartbeatAck(b []byte) (HeartbeatAck, error) {
	d := decoder{msg: "heartbeat ack", b: b}
	h := HeartbeatAck{
		Seq:         d.varint("seq"),
		LSN:         d.varint("lsn"),
		LeaseMillis: d.varint("lease"),
	}
	if err := d.finish(); err != nil {
		return HeartbeatAck{}, err
	}
	return h, nil
}

func (Ack) Type() FrameType { return FrameAck }

func (a Ack) Len() int { return varintLen(a.Watermark) }

func (a Ack) Append(b []byte) []byte { return quicvarint.Append(b, a.Watermark) }

func parseAck(b []byte) (Ack, error) {
	d := decoder{msg: "ack", b: b}
	a := Ack{Watermark: d.varint("watermark")}
	if err := d.finish(); err != nil {
		return Ack{}, err
	}
	return a, nil
}
