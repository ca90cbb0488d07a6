package origin

import "sync"

// Peer is what an origin knows of another member of its cluster: where
// edges reach it (QUIC) and where its admin API listens (HTTP). Members
// learn each other's addresses from the members themselves, over the
// cluster transport.
type Peer struct {
	ID   string `json:"id"`
	Raft string `json:"raft"`
	QUIC string `json:"quic"`
	HTTP string `json:"http"`
}

// peerBook holds the addresses of the other members, by id.
type peerBook struct {
	mu sync.Mutex
	m  map[string]Peer
}

func (b *peerBook) set(p Peer) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.m == nil {
		b.m = map[string]Peer{}
	}
	b.m[p.ID] = p
}

func (b *peerBook) get(id string) (Peer, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	p, ok := b.m[id]
	return p, ok
}

func (b *peerBook) edgeAddr(id string) string {
	p, _ := b.get(id)
	return p.QUIC
}

// idAt is the id of the member with cluster address addr.
func (b *peerBook) idAt(addr string) (string, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for id, p := range b.m {
		if p.Raft == addr {
			return id, true
		}
	}
	return "", false
}
