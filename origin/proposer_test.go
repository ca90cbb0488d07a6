package origin

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/hashicorp/raft"

	"github.com/geocdn/geocdn/internal/wire"
)

func TestCommandBatchRoundTrip(t *testing.T) {
	cs := []*command{
		{Entry: wire.LogEntry{Op: wire.OpPurge, Namespace: "default", PurgePrefixes: []string{"a/"}}},
		{ID: requestIDOf("k"), Entry: wire.LogEntry{Op: wire.OpPut, Namespace: "n", Key: "x", Size: 3}, Inline: []byte("abc")},
		{Entry: wire.LogEntry{Op: wire.OpPut, Namespace: "n", Key: "y", Size: 1 << 20}, Stage: "ABCDEF0123"},
	}
	for n := 1; n <= len(cs); n++ {
		b := encodeCommands(cs[:n])
		if n == 1 && !bytes.Equal(b, cs[0].encode()) {
			t.Fatal("a single command is not encoded as itself")
		}
		got, err := decodeCommands(b)
		if err != nil {
			t.Fatalf("%d commands: %v", n, err)
		}
		if len(got) != n {
			t.Fatalf("%d commands decoded as %d", n, len(got))
		}
		for i, c := range got {
			if c.ID != cs[i].ID || c.Stage != cs[i].Stage || !bytes.Equal(c.Inline, cs[i].Inline) || c.Entry.Key != cs[i].Entry.Key || c.Entry.Op != cs[i].Entry.Op {
				t.Errorf("command %d of %d: %+v, want %+v", i, n, c, cs[i])
			}
		}
	}
	good := encodeCommands(cs[:2])
	one := cs[0].encode()
	for name, b := range map[string][]byte{
		"count of one":       append([]byte{batchVersion, 1, byte(len(one))}, one...),
		"count of zero":      {batchVersion, 0},
		"count too large":    {batchVersion, 0x81, 0x10}, // 2049
		"no count":           {batchVersion},
		"truncated":          good[:len(good)-1],
		"trailing":           append(bytes.Clone(good), 0),
		"member too long":    {batchVersion, 2, 0x7f, 1},
		"member malformed":   append([]byte{batchVersion, 2, byte(len(one))}, append(bytes.Clone(one), 3, 9, 9, 9)...),
		"second member gone": append([]byte{batchVersion, 2, byte(len(one))}, one...),
	} {
		if _, err := decodeCommands(b); !errors.Is(err, errBadCommand) {
			t.Errorf("%s: %v, want errBadCommand", name, err)
		}
	}
}

// fakeRaft stands in for raft under a proposer: it records the commands
// of every entry, holds each entry until released, and applies them by
// numbering them.
type fakeRaft struct {
	mu      sync.Mutex
	entries [][]string // the keys of each entry's commands
	release chan struct{}
	lsn     uint64
	fail    error
}

func (f *fakeRaft) apply(data []byte) (any, error) {
	cs, err := decodeCommands(data)
	if err != nil {
		return nil, err
	}
	f.mu.Lock()
	var keys []string
	for _, c := range cs {
		keys = append(keys, c.Entry.Key)
	}
	f.entries = append(f.entries, keys)
	f.mu.Unlock()
	<-f.release
	if f.fail != nil {
		return nil, f.fail
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	res := make(applyResults, len(cs))
	for i, c := range cs {
		if c.Entry.Key == "refused" {
			res[i].Err = ErrNotFound
			continue
		}
		f.lsn++
		res[i].Entry = c.Entry
		res[i].Entry.LSN = f.lsn
	}
	return res, nil
}

// TestProposerCoalesces: proposals arriving while proposeInFlight entries
// are in flight go together, in the order they came, as the next entry;
// each gets its own result.
func TestProposerCoalesces(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fr := &fakeRaft{release: make(chan struct{})}
		p := &proposer{apply: fr.apply}
		keys := []string{"a", "b", "c", "refused", "d"}
		res := make([]applyResult, len(keys))
		errs := make([]error, len(keys))
		var wg sync.WaitGroup
		for i, k := range keys {
			wg.Go(func() {
				res[i], errs[i] = p.propose(&command{Entry: wire.LogEntry{Op: wire.OpDelete, Namespace: "n", Key: k}})
			})
			synctest.Wait() // proposed (or queued) before the next comes
		}
		close(fr.release)
		wg.Wait()
		want := [][]string{{"a"}, {"b"}, {"c", "refused", "d"}}
		if fmt.Sprint(fr.entries) != fmt.Sprint(want) {
			t.Fatalf("entries %v, want %v", fr.entries, want)
		}
		lsns := map[string]uint64{}
		for i, k := range keys {
			if errs[i] != nil {
				t.Fatalf("%s: %v", k, errs[i])
			}
			if k == "refused" {
				if !errors.Is(res[i].Err, ErrNotFound) {
					t.Errorf("refused: %v, want its own ErrNotFound", res[i].Err)
				}
				continue
			}
			if res[i].Err != nil || res[i].Entry.Key != k {
				t.Errorf("%s: result %+v", k, res[i])
			}
			lsns[k] = res[i].Entry.LSN
		}
		if lsns["c"] >= lsns["d"] || len(lsns) != 4 {
			t.Errorf("LSNs %v: want distinct, c before d", lsns)
		}
	})
}

// TestProposerErrorReachesEveryProposal: when raft refuses an entry, every
// proposal it carried gets the error, and the proposer goes on.
func TestProposerErrorReachesEveryProposal(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fr := &fakeRaft{release: make(chan struct{}), fail: raft.ErrNotLeader}
		p := &proposer{apply: fr.apply}
		errs := make([]error, 5)
		var wg sync.WaitGroup
		for i := range errs {
			wg.Go(func() {
				_, errs[i] = p.propose(&command{Entry: wire.LogEntry{Op: wire.OpDelete, Namespace: "n", Key: fmt.Sprint(i)}})
			})
			synctest.Wait()
		}
		close(fr.release)
		wg.Wait()
		for i, err := range errs {
			if !errors.Is(err, raft.ErrNotLeader) {
				t.Errorf("proposal %d: %v, want raft's error", i, err)
			}
		}
		if len(fr.entries) != 3 {
			t.Errorf("%d entries for 5 proposals, want 3", len(fr.entries))
		}
		fr.fail = nil
		if res, err := p.propose(&command{Entry: wire.LogEntry{Op: wire.OpDelete, Namespace: "n", Key: "after"}}); err != nil || res.Entry.LSN == 0 {
			t.Fatalf("a proposal after the failure: %+v %v", res, err)
		}
	})
}

// TestProposerOneByOne: with group commit off every command is an entry
// of its own, however many wait.
func TestProposerOneByOne(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fr := &fakeRaft{release: make(chan struct{})}
		p := &proposer{apply: fr.apply, one: true}
		var wg sync.WaitGroup
		for i := range 5 {
			wg.Go(func() {
				p.propose(&command{Entry: wire.LogEntry{Op: wire.OpDelete, Namespace: "n", Key: fmt.Sprint(i)}})
			})
			synctest.Wait()
		}
		close(fr.release)
		wg.Wait()
		if len(fr.entries) != 5 {
			t.Fatalf("entries %v: want one per command", fr.entries)
		}
	})
}

// TestResultsOf: an entry's results are spread over its commands; one
// error stands for all of them; a count that does not match is an error,
// not a misattributed result.
func TestResultsOf(t *testing.T) {
	if res, err := resultsOf(applyResults{{Err: errReplayed}}, 3); err != nil || len(res) != 3 || !errors.Is(res[2].Err, errReplayed) {
		t.Errorf("one error for three commands: %v %v", res, err)
	}
	if _, err := resultsOf(applyResults{{}, {}}, 3); err == nil {
		t.Error("two results for three commands accepted")
	}
	if _, err := resultsOf(applyResult{}, 1); err == nil {
		t.Error("an applyResult where applyResults are due accepted")
	}
	job := &applyJob{res: []applyResult{{Err: ErrNotFound}, {}, {Entry: wire.LogEntry{LSN: 9}}}, done: make(chan struct{})}
	close(job.done)
	if res, err := resultsOf(pendingResult{job: job, from: 1, to: 3}, 2); err != nil || res[1].Entry.LSN != 9 {
		t.Errorf("pending result: %v %v", res, err)
	}
}

// TestApplyBatchEntry: the FSM applies an entry carrying several commands
// as those commands in order: consecutive LSNs, a refused one in the
// middle using none, and after a restart the entry is not applied again.
func TestApplyBatchEntry(t *testing.T) {
	for _, oneByOne := range []bool{false, true} {
		t.Run(fmt.Sprint("oneByOne=", oneByOne), func(t *testing.T) {
			ts := newTestStore(t)
			f := &fsm{s: ts.store, oneByOne: oneByOne}
			put := func(key string) *command {
				body := []byte("body of " + key)
				return &command{Entry: wire.LogEntry{Op: wire.OpPut, Namespace: "default", Key: key, Digest: wire.Digest(sha256.Sum256(body)), Size: uint64(len(body))}, Inline: body}
			}
			logs := []*raft.Log{
				{Index: 5, Type: raft.LogCommand, Data: put("first").encode()},
				{Index: 6, Type: raft.LogCommand, Data: encodeCommands([]*command{
					put("a"),
					{Entry: deleteEntry("default", "nothing-here", time.Now())},
					put("b"),
				})},
				{Index: 7, Type: raft.LogCommand, Data: put("last").encode()},
			}
			out := f.ApplyBatch(logs)
			var lsns []uint64
			for i, n := range []int{1, 3, 1} {
				res, err := resultsOf(out[i], n)
				if err != nil {
					t.Fatal(err)
				}
				for _, r := range res {
					if errors.Is(r.Err, ErrNotFound) {
						continue
					}
					if r.Err != nil {
						t.Fatalf("entry %d: %v", i, r.Err)
					}
					lsns = append(lsns, r.Entry.LSN)
				}
			}
			if fmt.Sprint(lsns) != fmt.Sprint([]uint64{1, 2, 3, 4}) {
				t.Fatalf("LSNs %v, want 1 to 4 in order, none for the refused delete", lsns)
			}
			if ts.applied.Load() != 7 {
				t.Fatalf("applied index %d, want 7", ts.applied.Load())
			}
			res, err := resultsOf(f.ApplyBatch(logs[1:2])[0], 3)
			if err != nil || !errors.Is(res[0].Err, errReplayed) {
				t.Fatalf("the batch entry replayed: %v %v", res, err)
			}
			for _, k := range []string{"first", "a", "b", "last"} {
				if _, err := ts.get("default", k); err != nil {
					t.Errorf("%s: %v", k, err)
				}
			}
		})
	}
}
