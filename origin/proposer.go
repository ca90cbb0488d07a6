package origin

import (
	"sync"
)

// The proposer: group commit before raft.
//
// Raft already writes the entries queued for it in one log append, one
// fsync, and replicates them in one message. But each entry still costs
// every origin a log record of its own (encoded, written to the bolt log
// store, sent, decoded), and with fast fsyncs raft's batches stay small,
// so under load most of a write's cost was per entry and per batch. The
// proposer keeps at most proposeInFlight raft entries in flight; requests
// arriving meanwhile wait, and go together, in order, as one entry as soon
// as one of those completes. A lone request is proposed at once, so
// coalescing costs latency only when writes queue anyway.
//
// Commands keep their own LSNs and results: the FSM applies a batch entry
// as the commands it carries, one after the other (see encodeCommands).

// proposeInFlight bounds the raft entries the proposer has in flight.
// Raft pipelines them to the followers; the fewer there are, the more
// each carries.
const proposeInFlight = 2

// maxBatchBytes bounds the encoded size of a batch entry; a command larger
// than that goes alone.
const maxBatchBytes = 1 << 20

// proposal is one command waiting to be proposed, and its outcome.
type proposal struct {
	data []byte // the command, encoded
	res  applyResult
	err  error // raft refused or lost the entry carrying c
	done chan struct{}
}

// proposer queues proposals and runs the entries that carry them; apply
// proposes the data of one entry and returns what ApplyBatch gave for it,
// or raft's error.
type proposer struct {
	apply func(data []byte) (any, error)
	// one proposes each command as an entry of its own (group commit
	// off).
	one bool

	mu       sync.Mutex
	queue    []*proposal
	inFlight int
}

// propose proposes c, in an entry of its own or with others, and returns
// its result once the entry has been applied.
func (p *proposer) propose(c *command) (applyResult, error) {
	pr := &proposal{data: c.encode(), done: make(chan struct{})}
	p.mu.Lock()
	p.queue = append(p.queue, pr)
	if p.inFlight < proposeInFlight || p.one {
		p.inFlight++
		batch := p.take()
		p.mu.Unlock()
		go p.run(batch)
	} else {
		p.mu.Unlock()
	}
	<-pr.done
	return pr.res, pr.err
}

// take removes the proposals of the next entry from the queue: as many as
// fit, oldest first, at least one. p.mu is held.
func (p *proposer) take() []*proposal {
	n, size := 1, len(p.queue[0].data)
	if !p.one {
		for n < len(p.queue) && n < maxBatchCommands && size+len(p.queue[n].data) <= maxBatchBytes {
			size += len(p.queue[n].data)
			n++
		}
	}
	batch := p.queue[:n:n]
	p.queue = p.queue[n:]
	if len(p.queue) == 0 {
		p.queue = nil // let the backing array go
	}
	return batch
}

// run proposes batch, and then whatever queued meanwhile, until the queue
// is empty.
func (p *proposer) run(batch []*proposal) {
	for {
		p.proposeEntry(batch)
		p.mu.Lock()
		if len(p.queue) == 0 {
			p.inFlight--
			p.mu.Unlock()
			return
		}
		batch = p.take()
		p.mu.Unlock()
	}
}

// proposeEntry proposes batch as one raft entry and hands each proposal
// its outcome.
func (p *proposer) proposeEntry(batch []*proposal) {
	enc := make([][]byte, len(batch))
	for i, pr := range batch {
		enc[i] = pr.data
	}
	resp, err := p.apply(encodeBatch(enc))
	var res applyResults
	if err == nil {
		res, err = resultsOf(resp, len(batch))
	}
	for i, pr := range batch {
		if err != nil {
			pr.err = err
		} else {
			pr.res = res[i]
		}
		close(pr.done)
	}
}
