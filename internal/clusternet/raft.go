package clusternet

import (
	"context"
	"net"
	"time"

	"github.com/hashicorp/raft"
)

// StreamLayer returns the raft.StreamLayer for raft.NewNetworkTransport:
// Accept, Close and Addr are those of Listener(KindRaft), so closing the
// transport closes that listener for good (not the Net). Dial dials
// KindRaft connections and expects the origin id that expect returns for
// the address; the caller looks it up in the raft configuration. When
// expect is nil or does not know the address, any origin of the cluster
// CA is accepted.
//
// Addr is the cluster port's bound address, which raft also uses as this
// server's address; bind the listener to the address peers dial.
func (n *Net) StreamLayer(expect func(raft.ServerAddress) (raft.ServerID, bool)) raft.StreamLayer {
	return streamLayer{Listener: n.Listener(KindRaft), n: n, expect: expect}
}

type streamLayer struct {
	net.Listener
	n      *Net
	expect func(raft.ServerAddress) (raft.ServerID, bool)
}

var _ raft.StreamLayer = streamLayer{}

// Dial implements raft.StreamLayer. A timeout of zero or less leaves only
// the handshake timeout to bound the dial.
func (s streamLayer) Dial(addr raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	var want string
	if s.expect != nil {
		if id, ok := s.expect(addr); ok {
			want = string(id)
		}
	}
	ctx := context.Background()
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	return s.n.Dial(ctx, string(addr), KindRaft, want)
}
