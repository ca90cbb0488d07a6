package origin

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/geocdn/geocdn/internal/wire"
)

func TestCommandRoundTrip(t *testing.T) {
	for _, c := range []*command{
		{Entry: wire.LogEntry{Op: wire.OpPurge, Namespace: "default", PurgePrefixes: []string{"a/"}}},
		{ID: requestIDOf("k"), Entry: wire.LogEntry{Op: wire.OpPut, Namespace: "n", Key: "x", Size: 3}, Inline: []byte("abc")},
		{Entry: wire.LogEntry{Op: wire.OpPut, Namespace: "n", Key: "y", Size: 1 << 20}, Stage: "ABCDEF0123"},
		{Entry: wire.LogEntry{Op: wire.OpPut, Namespace: "n", Key: "empty"}, Inline: []byte{}},
	} {
		got, err := decodeCommand(c.encode())
		if err != nil {
			t.Fatalf("%+v: %v", c, err)
		}
		if got.ID != c.ID || got.Stage != c.Stage || !bytes.Equal(got.Inline, c.Inline) || (got.Inline == nil) != (c.Inline == nil) || got.Entry.Key != c.Entry.Key || got.Entry.Op != c.Entry.Op {
			t.Errorf("round trip of %+v gave %+v", c, got)
		}
	}
	good := (&command{Entry: wire.LogEntry{Op: wire.OpPut, Key: "k"}, Stage: "s", Inline: []byte("x")}).encode()
	for name, b := range map[string][]byte{
		"empty":          nil,
		"version":        append([]byte{9}, good[1:]...),
		"truncated":      good[:len(good)-1],
		"trailing":       append(bytes.Clone(good), 0),
		"entry too long": append(append([]byte{commandVersion}, make([]byte, 17)...), 0xff, 0xff, 0xff, 0xff, 0x0f),
		"unknown flag":   append(append(append([]byte{commandVersion}, make([]byte, 16)...), 2), good[18:]...),
	} {
		if _, err := decodeCommand(b); !errors.Is(err, errBadCommand) {
			t.Errorf("%s: %v, want errBadCommand", name, err)
		}
	}
}

func TestValidStageName(t *testing.T) {
	for name, want := range map[string]bool{
		"ABC123xyz": true, "": false, "../x": false, "a/b": false, "a.b": false, strings.Repeat("a", maxStageName+1): false,
	} {
		if validStageName(name) != want {
			t.Errorf("validStageName(%q) = %v", name, !want)
		}
	}
}

// TestPublishInlineAndStaged: small content rides in the raft entry and
// large content is staged; both are stored, readable and durable, and the
// staged file leaves the stage directory.
func TestPublishInlineAndStaged(t *testing.T) {
	to := startTestOrigin(t, nil)
	small := bytes.Repeat([]byte("s"), 1000)
	large := bytes.Repeat([]byte("L"), maxInline+1)
	for key, body := range map[string][]byte{"small": small, "large": large, "empty": {}} {
		code, res := to.publish(t, key, body, "")
		if code != http.StatusCreated {
			t.Fatalf("publish %s: %d %+v", key, code, res)
		}
		f, err := to.store.openBlob(wire.Digest(sha256.Sum256(body))) // a file or the catalog
		if err != nil {
			t.Fatalf("%s: %v", key, err)
		}
		got, _ := io.ReadAll(f)
		f.Close()
		if !bytes.Equal(got, body) {
			t.Errorf("%s: stored %d bytes, want %d", key, len(got), len(body))
		}
	}
	if ents, err := os.ReadDir(to.store.stageDir); err != nil || len(ents) != 0 {
		t.Errorf("stage dir after the publishes: %d entries, %v", len(ents), err)
	}
	// The raft log holds the small body, and names the large one.
	var inline, staged int
	last, _ := to.raft.logs.LastIndex()
	for i := uint64(1); i <= last; i++ {
		var l raft.Log
		if to.raft.logs.GetLog(i, &l) != nil || l.Type != raft.LogCommand {
			continue
		}
		c, err := decodeCommand(l.Data)
		if err != nil {
			t.Fatal(err)
		}
		switch {
		case c.Inline != nil:
			inline++
		case c.Stage != "":
			staged++
		}
	}
	if inline != 2 || staged != 1 {
		t.Errorf("raft log: %d inline and %d staged puts, want 2 and 1", inline, staged)
	}
}

// TestIdempotencyKey: a write repeated with the same key is committed
// once and answered with the first commit's LSN.
func TestIdempotencyKey(t *testing.T) {
	to := startTestOrigin(t, nil)
	do := func(method, path string, body []byte, key string) (int, uint64) {
		t.Helper()
		req, _ := http.NewRequest(method, "http://"+to.HTTPAddr().String()+path, bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+to.token)
		if method == http.MethodPost {
			req.Header.Set("Content-Type", "application/json")
		}
		req.Header.Set(HeaderIdempotencyKey, key)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		var lsn uint64
		fmt.Sscan(resp.Header.Get(HeaderLSN), &lsn)
		return resp.StatusCode, lsn
	}
	c1, l1 := do(http.MethodPut, objectsPrefix+"k", []byte("one"), "req-1")
	c2, l2 := do(http.MethodPut, objectsPrefix+"k", []byte("one"), "req-1")
	if c1 != http.StatusCreated || c2 != http.StatusCreated || l1 == 0 || l1 != l2 {
		t.Fatalf("publish twice with one key: %d lsn %d, then %d lsn %d", c1, l1, c2, l2)
	}
	_, l3 := do(http.MethodPut, objectsPrefix+"k", []byte("two"), "req-2")
	if l3 != l1+1 || to.LastLSN() != l3 {
		t.Fatalf("another key: lsn %d (last %d), want %d", l3, to.LastLSN(), l1+1)
	}
	p1, pl1 := do(http.MethodPost, "/v1/purge", []byte(`{"keys":["k"]}`), "purge-1")
	p2, pl2 := do(http.MethodPost, "/v1/purge", []byte(`{"keys":["k"]}`), "purge-1")
	if p1 != http.StatusOK || p2 != http.StatusOK || pl1 != pl2 || to.LastLSN() != pl1 {
		t.Fatalf("purge twice with one key: %d lsn %d, then %d lsn %d (last %d)", p1, pl1, p2, pl2, to.LastLSN())
	}
}

// TestFirstLeaderHasNoGrace: a brand-new cluster's first leader has no
// earlier leases to wait out; a restarted one does (see
// TestStrongFillsRefusedInRestartGrace).
func TestFirstLeaderHasNoGrace(t *testing.T) {
	to := startTestOrigin(t, func(c *Config) { c.LeaseTerm = time.Minute })
	if lead, _, _ := to.awaitLeader(context.Background(), to.requestWait()); !lead {
		t.Fatal("a single origin does not lead")
	}
	if to.grantor.InGrace(to.clk.Now()) {
		t.Fatalf("the first leader of a new cluster is in a grace period until %v", to.grantor.GraceEnds())
	}
}

// TestGroupCommit: concurrent publishes share raft log writes and catalog
// transactions, so there are fewer of them than publishes.
func TestGroupCommit(t *testing.T) {
	to := startTestOrigin(t, nil)
	var batches, entries int
	var mu sync.Mutex
	prev := to.raft.fsm.applied
	to.raft.fsm.applied = func(commands int) {
		mu.Lock()
		batches++
		entries += commands
		mu.Unlock()
		prev(commands)
	}
	const n = 200
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() {
			if code, res, err := to.tryPublish(fmt.Sprintf("g/%d", i), []byte(fmt.Sprint(i)), ""); err != nil || code != http.StatusCreated {
				errs <- fmt.Errorf("publish %d: %d %+v %v", i, code, res, err)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if entries != n || batches >= n {
		t.Fatalf("%d publishes applied in %d batches: want %d in fewer", entries, batches, n)
	}
	t.Logf("%d concurrent publishes applied in %d catalog transactions", n, batches)
}

// TestInlineContentInTheCatalog: content carried inside a command is kept
// in the catalog by the transaction that names it, not as a file; it is
// read back after a reopen, shared by the keys that name it, and goes with
// the last of them.
func TestInlineContentInTheCatalog(t *testing.T) {
	ts := newTestStore(t)
	body := []byte("inline content")
	d := wire.Digest(sha256.Sum256(body))
	put := func(index uint64, key string) {
		t.Helper()
		c := &command{Entry: wire.LogEntry{Op: wire.OpPut, Namespace: "default", Key: key, Digest: d, Size: uint64(len(body))}, Inline: body}
		if res, err := ts.apply(index, []*command{c}); err != nil || res[0].Err != nil {
			t.Fatalf("apply: %v %v", err, res)
		}
	}
	put(7, "a")
	put(8, "b")
	if _, err := os.Stat(ts.blobPath(d)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("inline content has a file: %v", err)
	}
	ts.reopen(t)
	if ts.applied.Load() != 8 {
		t.Fatalf("applied index after reopen %d, want 8", ts.applied.Load())
	}
	if !ts.holds(d) {
		t.Fatal("inline content not read back after a reopen")
	}
	ts.del(t, "a")
	if !ts.holds(d) {
		t.Fatal("inline content gone while b still names it")
	}
	ts.del(t, "b")
	if ts.holds(d) {
		t.Fatal("inline content kept after the last key naming it went")
	}
}

// TestApplyMissingContent: a put whose staged content this node never
// received commits all the same and is recorded as missing; fetching it
// from a peer clears the record.
func TestApplyMissingContent(t *testing.T) {
	ts := newTestStore(t)
	body := []byte("content this node missed")
	d := wire.Digest(sha256.Sum256(body))
	c := &command{Entry: wire.LogEntry{Op: wire.OpPut, Namespace: "default", Key: "k", Digest: d, Size: uint64(len(body))}, Stage: "NeverArrived"}
	res, err := ts.apply(3, []*command{c})
	if err != nil || res[0].Err != nil {
		t.Fatalf("apply: %v %v", err, res)
	}
	missing, err := ts.missingBlobs()
	if err != nil || len(missing) != 1 || missing[0].digest != d || missing[0].size != uint64(len(body)) {
		t.Fatalf("missing %+v, %v", missing, err)
	}
	bad := func(context.Context, wire.Digest) (io.ReadCloser, error) {
		return io.NopCloser(strings.NewReader("something else entirely")), nil
	}
	if err := ts.fetchBlob(context.Background(), bad, d, uint64(len(body))); err == nil {
		t.Fatal("fetched content that does not hash to its digest")
	}
	good := func(context.Context, wire.Digest) (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(body)), nil
	}
	if err := ts.fetchBlob(context.Background(), good, d, uint64(len(body))); err != nil {
		t.Fatal(err)
	}
	if missing, _ := ts.missingBlobs(); len(missing) != 0 {
		t.Fatalf("still missing after the fetch: %+v", missing)
	}
	if !ts.holds(d) {
		t.Fatal("fetched content not in place")
	}
}

// TestSnapshotRestore: a catalog snapshot restored on an empty node gives
// the same catalog, log and LSNs, and brings the blobs it names from a
// peer.
func TestSnapshotRestore(t *testing.T) {
	src := newTestStore(t)

	for i := range 20 {
		src.put(t, fmt.Sprintf("k%d", i%15), strings.Repeat(fmt.Sprint(i), 100+i))
	}
	src.del(t, "k3")
	f := &fsm{s: src.store}
	snap, err := f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	sink := &memSink{}
	if err := snap.Persist(sink); err != nil {
		t.Fatal(err)
	}
	snap.Release()

	dst := newTestStore(t)
	var fetches atomic.Int64
	fetch := func(_ context.Context, d wire.Digest) (io.ReadCloser, error) {
		fetches.Add(1)
		return src.openBlob(d)
	}
	if err := dst.restore(bytes.NewReader(sink.Bytes()), fetch, slog.New(slog.DiscardHandler)); err != nil {
		t.Fatal(err)
	}
	if dst.lastLSN() != src.lastLSN() {
		t.Fatalf("restored last LSN %d, want %d", dst.lastLSN(), src.lastLSN())
	}
	var srcObjs, dstObjs []wire.LogEntry
	src.forEachObject(func(e wire.LogEntry) error { srcObjs = append(srcObjs, e); return nil })
	dst.forEachObject(func(e wire.LogEntry) error { dstObjs = append(dstObjs, e); return nil })
	if len(srcObjs) != 14 || len(dstObjs) != len(srcObjs) {
		t.Fatalf("restored %d objects, source has %d (want 14)", len(dstObjs), len(srcObjs))
	}
	for i := range srcObjs {
		if srcObjs[i].LSN != dstObjs[i].LSN || srcObjs[i].Digest != dstObjs[i].Digest {
			t.Errorf("object %d: restored %+v, want %+v", i, dstObjs[i], srcObjs[i])
		}
		if !dst.holds(dstObjs[i].Digest) {
			t.Errorf("object %s: blob not brought", dstObjs[i].Key)
		}
	}
	if int(fetches.Load()) != len(srcObjs) {
		t.Errorf("%d fetches, want one per blob (%d)", fetches.Load(), len(srcObjs))
	}
	if dst.tree.Root() != src.tree.Root() {
		t.Error("restored hash tree differs from the source's")
	}
	// The restored store takes new writes after the snapshot's LSN.
	if e := dst.put(t, "after", "x"); e.LSN != src.lastLSN()+1 {
		t.Fatalf("first write after the restore got LSN %d, want %d", e.LSN, src.lastLSN()+1)
	}
}

// memSink is a raft.SnapshotSink in memory.
type memSink struct {
	bytes.Buffer
	cancelled bool
}

func (m *memSink) ID() string    { return "mem" }
func (m *memSink) Cancel() error { m.cancelled = true; return nil }
func (m *memSink) Close() error  { return nil }

// TestSweepStage: staged content no command named goes once it is older
// than stageKeep; fresh staged content stays.
func TestSweepStage(t *testing.T) {
	ts := newTestStore(t)
	old, err := ts.stage(context.Background(), strings.NewReader("proposed by a leader that died"), -1)
	if err != nil {
		t.Fatal(err)
	}
	fresh, err := ts.stage(context.Background(), strings.NewReader("about to be proposed"), -1)
	if err != nil {
		t.Fatal(err)
	}
	past := time.Now().Add(-stageKeep - time.Minute)
	if err := os.Chtimes(ts.stagePath(old.name), past, past); err != nil {
		t.Fatal(err)
	}
	if err := ts.sweepStage(time.Now().Add(-stageKeep)); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(ts.stagePath(old.name)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("old staged content kept: %v", err)
	}
	if _, err := os.Stat(ts.stagePath(fresh.name)); err != nil {
		t.Errorf("fresh staged content swept: %v", err)
	}
}

// TestNoGroupCommit: with group commit off (the measuring knob), every
// publish of a concurrent burst still commits once, under its own LSN.
func TestNoGroupCommit(t *testing.T) {
	to := startTestOrigin(t, func(c *Config) { c.NoGroupCommit = true })
	const n = 60
	lsns := make(chan uint64, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			code, res, err := to.tryPublish(fmt.Sprintf("one/%d", i), []byte(fmt.Sprint(i)), "")
			if err != nil || code != http.StatusCreated {
				t.Errorf("publish %d: %d %+v %v", i, code, res, err)
				return
			}
			lsns <- res.LSN
		})
	}
	wg.Wait()
	close(lsns)
	seen := map[uint64]bool{}
	for l := range lsns {
		if seen[l] {
			t.Fatalf("LSN %d answered twice", l)
		}
		seen[l] = true
	}
	if len(seen) != n || to.LastLSN() != n {
		t.Fatalf("%d distinct LSNs, last %d: want %d", len(seen), to.LastLSN(), n)
	}
	if got, want := to.store.applied.Load(), to.raft.r.AppliedIndex(); got != want {
		t.Fatalf("catalog applied raft index %d, raft %d", got, want)
	}
}
