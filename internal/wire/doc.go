// Package wire defines the frames that origin and edge exchange over QUIC
// (ALPN "geocdn/1") and the versioned encoding of replication-log entries,
// which the origin also uses as its on-disk catalog format.
//
// Every frame on a stream is a type byte, a QUIC varint payload length and the
// payload. Each message family lives in its own file with its byte layout
// documented next to its type code, and has parse/Append/Len. Decoders never
// panic: malformed input yields ErrMalformed, input over MaxFrameSize yields
// ErrFrameTooLarge, and a truncated frame yields io.ErrUnexpectedEOF (io.EOF
// only when the stream ends cleanly between frames).
//
// The length prefix is what tells the two kinds of short input apart: a
// stream that stops before the declared length has been truncated
// (io.ErrUnexpectedEOF, more bytes may come), while a payload that is
// complete but whose fields run past its end, leave bytes over, or break a
// limit (MaxStringLen, MaxKeyLen, MaxNamespaceLen, MaxSurrogateKeys,
// MaxReplicas, MaxLogEntrySize) or hold an unknown enum value is
// ErrMalformed, with the field named in the wrapped message.
//
// Strings are a varint length and the bytes, not checked for UTF-8: keys
// are byte strings. Integers are QUIC varints (at most MaxVarint) unless a
// layout says otherwise; fixed-width ones are big-endian.
//
// Frames carry metadata only. Content follows a PushOffer or FillResponse
// raw on the same stream, which is why ReadFrame never reads past a frame.
package wire
