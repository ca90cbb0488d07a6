package origin

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/raft"

	"github.com/geocdn/geocdn/internal/clusternet"
	"github.com/geocdn/geocdn/internal/wire"
)

// Traffic between the origins of a cluster, all of it on the cluster port
// (internal/clusternet): raft's RPCs, and HTTP for the rest, authenticated
// by the cluster CA rather than the admin token:
//
//	GET /v1/cluster/self     this origin's addresses and raft state
//	PUT /v1/cluster/edges    the edges the leader knows, for the next one
//	PUT /v1/stage/{name}     content the leader stages before proposing it
//	GET /v1/blobs/{digest}   content, for a member that lacks it
//	anything else            the admin API (token required), for requests
//	                         another origin forwards to the leader

// HeaderForwardedBy marks an admin request an origin forwarded to the
// leader; an origin that is not the leader (any more) answers it 503
// instead of forwarding it again.
const HeaderForwardedBy = "GeoCDN-Forwarded-By"

// openCluster opens the cluster port, when the origin has one.
func (o *Origin) openCluster() error {
	if !o.cfg.clustered() {
		return nil
	}
	ln := o.cfg.RaftListener
	if ln == nil {
		var err error
		if ln, err = net.Listen("tcp", o.cfg.RaftAddr); err != nil {
			return fmt.Errorf("listen raft %s: %w", o.cfg.RaftAddr, err)
		}
	}
	n, err := clusternet.New(clusternet.Config{
		ID: o.cfg.ID, CA: o.cfg.CA, Cert: o.cfg.Cert, Listener: ln,
		Logger: o.log.With("component", "clusternet"), Now: o.clk.Now,
	})
	if err != nil {
		return fmt.Errorf("cluster port: %w", err)
	}
	o.cnet = n
	for _, p := range o.cfg.Peers {
		o.peers.set(p)
	}
	o.clusterClient = &http.Client{Transport: &http.Transport{
		DialContext:         o.dialPeerHTTP,
		MaxIdleConnsPerHost: 16,
		IdleConnTimeout:     time.Minute,
	}}
	o.clusterSrv = &http.Server{
		Handler:           o.clusterHandler(),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(o.log.Handler(), slog.LevelWarn),
	}
	return nil
}

// clusterAddr is this origin's cluster address, "" without a port.
func (o *Origin) clusterAddr() string {
	if o.cnet == nil {
		return ""
	}
	return o.cnet.Addr().String()
}

// peerHost is the host name under which the cluster HTTP client reaches
// origin id; dialPeerHTTP maps it back.
func peerHost(id string) string { return "origin." + id }

// dialPeerHTTP dials the cluster port of the origin a cluster request is
// addressed to (see peerHost), insisting on its identity.
func (o *Origin) dialPeerHTTP(ctx context.Context, _, addr string) (net.Conn, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		host = addr
	}
	id, ok := strings.CutPrefix(host, "origin.")
	if !ok {
		return nil, fmt.Errorf("cluster request to %q: not an origin", addr)
	}
	p, ok := o.peers.get(id)
	if !ok || p.Raft == "" {
		return nil, fmt.Errorf("cluster request to origin %s: its address is not known", id)
	}
	c, err := o.cnet.Dial(ctx, p.Raft, clusternet.KindHTTP, id)
	if err != nil {
		return nil, &dialError{err}
	}
	return plainConn{c}, nil
}

// dialError is a cluster request that never reached its origin: nothing
// of it was sent.
type dialError struct{ err error }

func (e *dialError) Error() string { return e.err.Error() }
func (e *dialError) Unwrap() error { return e.err }

// plainConn hides that a cluster connection is a *tls.Conn from net/http,
// which would otherwise look up its ALPN protocol (geocdn/1) among the
// HTTP/2 upgrades and drop the connection when it finds none. TLS is
// clusternet's business here, done before net/http sees the connection.
type plainConn struct{ net.Conn }

// plainListener yields plainConns.
type plainListener struct{ net.Listener }

func (l plainListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return plainConn{c}, nil
}

// peerURL is the URL of path on origin id's cluster port.
func peerURL(id, path string) string { return "http://" + peerHost(id) + path }

// selfInfo is what GET /v1/cluster/self answers.
type selfInfo struct {
	Peer
	Raft    raftStats `json:"raft_state"`
	LSN     uint64    `json:"lsn"`
	Missing int       `json:"missing_blobs"`
}

func (o *Origin) self() selfInfo {
	missing, _ := o.store.missingBlobs()
	return selfInfo{
		Peer: Peer{ID: o.cfg.ID, Raft: o.clusterAddr(), QUIC: o.QUICAddr().String(), HTTP: o.HTTPAddr().String()},
		Raft: o.raftStats(), LSN: o.store.lastLSN(), Missing: len(missing),
	}
}

// clusterHandler serves the cluster port's HTTP.
func (o *Origin) clusterHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/cluster/self", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, o.self())
	})
	mux.HandleFunc("PUT /v1/cluster/edges", o.handleEdgesIn)
	mux.HandleFunc("PUT /v1/stage/{name}", o.handleStageIn)
	mux.HandleFunc("GET /v1/blobs/{digest}", o.handleBlobOut)
	mux.Handle("/", o.adminHandler())
	return mux
}

// peerSelf asks origin id what it is.
func (o *Origin) peerSelf(ctx context.Context, id string) (selfInfo, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, peerURL(id, "/v1/cluster/self"), nil)
	resp, err := o.clusterClient.Do(req)
	if err != nil {
		return selfInfo{}, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return selfInfo{}, fmt.Errorf("origin %s: %s", id, resp.Status)
	}
	var si selfInfo
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&si); err != nil {
		return selfInfo{}, fmt.Errorf("origin %s: %w", id, err)
	}
	return si, nil
}

// members is the raft configuration: every origin of the cluster.
func (o *Origin) members() ([]raft.Server, error) {
	f := o.raft.r.GetConfiguration()
	if err := f.Error(); err != nil {
		return nil, err
	}
	return f.Configuration().Servers, nil
}

// refreshPeers keeps the peer book in step with the raft configuration and
// learns each member's edge and admin addresses from the member itself,
// so that a follower can point edges and publishers at the leader.
func (o *Origin) refreshPeers(ctx context.Context) {
	if o.cnet == nil {
		return
	}
	for {
		if servers, err := o.members(); err == nil {
			for _, s := range servers {
				id := string(s.ID)
				p, _ := o.peers.get(id)
				p.ID, p.Raft = id, string(s.Address)
				if id == o.cfg.ID {
					p = o.self().Peer
				} else if p.QUIC == "" || p.HTTP == "" {
					if si, err := o.peerSelf(ctx, id); err == nil {
						p.QUIC, p.HTTP = si.QUIC, si.HTTP
					}
				}
				o.peers.set(p)
			}
		}
		t := o.clk.NewTimer(2 * time.Second)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-o.leaderChanged.C():
			t.Stop()
		case <-t.C():
		}
	}
}

// servedLocally reports whether any origin answers r from its own state:
// reads of the catalog (unless the client asks for consistent=true),
// health and metrics. Everything else is the leader's.
func servedLocally(r *http.Request) bool {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		return false
	}
	p := r.URL.Path
	switch {
	case strings.HasPrefix(r.URL.EscapedPath(), objectsPrefix):
		return r.URL.Query().Get("consistent") != "true"
	case p == "/healthz", p == "/metrics", strings.HasPrefix(p, "/v1/cluster"):
		return true
	}
	return false
}

// toLeader serves r here if this origin leads (waiting briefly for an
// election), and otherwise forwards it to the leader over the cluster
// port. Without a leader, or for a request already forwarded once, the
// answer is 503 naming the leader when it is known; nothing was written.
func (o *Origin) toLeader(w http.ResponseWriter, r *http.Request, next http.Handler) {
	lead, laddr, lid := o.awaitLeader(r.Context(), o.requestWait())
	if lead {
		next.ServeHTTP(w, r)
		return
	}
	if p, _ := o.peers.get(string(lid)); lid != "" && p.Raft == "" {
		o.peers.set(Peer{ID: string(lid), Raft: string(laddr)})
	}
	if lid == "" || o.cnet == nil || r.Header.Get(HeaderForwardedBy) != "" {
		if lid != "" {
			if h := o.peerHTTP(lid); h != "" {
				w.Header().Set(HeaderLeader, h)
			}
		}
		w.Header().Set("Retry-After", "1")
		writeJSON(w, http.StatusServiceUnavailable, PublishResult{Error: (&errNotLeader{leader: o.peerHTTP(lid)}).Error()})
		return
	}
	// The leader enforces its own limits on the request; here it only
	// streams through.
	rc := http.NewResponseController(w)
	rc.SetReadDeadline(time.Time{})
	rc.SetWriteDeadline(time.Time{})
	// A read this origin can answer by itself, if less fully (the status:
	// edges connect to the leader), is not left waiting on a leader that
	// accepts connections but does not answer (stopped, or cut off after
	// the dial): after statusForwardWait it is answered here.
	local := r.Method == http.MethodGet && r.URL.Path == "/v1/status"
	if local {
		ctx, cancel := context.WithTimeout(r.Context(), statusForwardWait)
		defer cancel()
		r = r.WithContext(ctx)
	}
	proxy := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(&url.URL{Scheme: "http", Host: peerHost(string(lid))})
			pr.Out.Header.Set(HeaderForwardedBy, o.cfg.ID)
		},
		Transport: o.clusterClient.Transport,
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			o.log.Warn("forward to the leader", "leader", lid, "method", r.Method, "path", r.URL.Path, "err", err)
			if local {
				next.ServeHTTP(w, r.WithContext(context.WithoutCancel(r.Context())))
				return
			}
			if errors.As(err, new(*dialError)) {
				// The request never reached the leader: nothing was
				// written.
				if h := o.peerHTTP(lid); h != "" {
					w.Header().Set(HeaderLeader, h)
				}
				w.Header().Set("Retry-After", "1")
				writeJSON(w, http.StatusServiceUnavailable, PublishResult{
					Error: fmt.Sprintf("the leader %s cannot be reached: %v; nothing was written", lid, err)})
				return
			}
			writeError(w, http.StatusBadGateway, fmt.Sprintf("forwarding to the leader %s failed: %v; the outcome of a write is unknown", lid, err))
		},
	}
	proxy.ServeHTTP(w, r)
}

// statusForwardWait bounds the wait for the leader's answer to a status
// request forwarded to it; then the origin answers with its own.
const statusForwardWait = 3 * time.Second

// verifyRead makes a consistent=true read linearizable: this origin must
// still lead (a round of heartbeats to a quorum), and have applied every
// entry committed before the read.
func (o *Origin) verifyRead(ctx context.Context) error {
	if err := o.raft.r.VerifyLeader().Error(); err != nil {
		return &errNotLeader{}
	}
	commit := o.raft.r.CommitIndex()
	for o.raft.r.AppliedIndex() < commit || !o.raft.fsm.settled() {
		t := o.clk.NewTimer(time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C():
		}
	}
	return nil
}

// handleStageIn stores content the leader stages before proposing the
// command that names it (see replicateStage): it is written, checked
// against its digest and size, fsynced, and kept in the stage directory.
func (o *Origin) handleStageIn(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	d, err := wire.ParseDigest(r.URL.Query().Get("digest"))
	size, serr := strconv.ParseInt(r.URL.Query().Get("size"), 10, 64)
	if !validStageName(name) || err != nil || serr != nil || size < 0 || size > o.cfg.MaxObjectSize {
		writeError(w, http.StatusBadRequest, "stage: bad name, digest or size")
		return
	}
	rc := http.NewResponseController(w)
	rc.SetReadDeadline(o.clk.Now().Add(fetchTimeout(uint64(size))))
	st, err := o.store.stageAs(r.Context(), name, io.LimitReader(r.Body, size+1), size)
	if err != nil {
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	if st.digest != d || st.size != size {
		o.store.unstage(name)
		writeError(w, http.StatusBadRequest, fmt.Sprintf("stage: %d bytes hashing to %s, want %d bytes of %s", st.size, st.digest, size, d))
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// handleBlobOut serves content this origin holds to another member.
func (o *Origin) handleBlobOut(w http.ResponseWriter, r *http.Request) {
	d, err := wire.ParseDigest(r.PathValue("digest"))
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	f, err := o.store.openBlob(d)
	if errors.Is(err, os.ErrNotExist) {
		writeError(w, http.StatusNotFound, "no such blob here")
		return
	} else if err != nil {
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	http.NewResponseController(w).SetWriteDeadline(o.clk.Now().Add(fetchTimeout(uint64(fi.Size()))))
	w.Header().Set("Content-Length", strconv.FormatInt(fi.Size(), 10))
	io.Copy(w, f)
}

// replicateStage streams staged content to the other voters and returns
// once a quorum of the cluster, this origin included, holds it durably:
// the command naming it may then be proposed, and its content survives the
// loss of any minority. Streams to the rest go on in the background.
func (o *Origin) replicateStage(ctx context.Context, st staged) error {
	if o.cnet == nil {
		return nil
	}
	servers, err := o.members()
	if err != nil {
		return fmt.Errorf("cluster members: %w", err)
	}
	var others []string
	voters := 0
	for _, s := range servers {
		if s.Suffrage != raft.Voter {
			continue
		}
		voters++
		if string(s.ID) != o.cfg.ID {
			others = append(others, string(s.ID))
		}
	}
	need := voters/2 + 1 - 1 // this origin holds it already
	if need <= 0 {
		return nil
	}
	results := make(chan error, len(others))
	bg, cancel := context.WithTimeout(context.WithoutCancel(ctx), fetchTimeout(uint64(st.size)))
	var wg sync.WaitGroup
	for _, id := range others {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results <- o.sendStage(bg, id, st)
		}()
	}
	go func() {
		wg.Wait()
		cancel()
	}()
	var errs []error
	for range others {
		select {
		case err := <-results:
			if err == nil {
				if need--; need == 0 {
					return nil
				}
			} else {
				errs = append(errs, err)
			}
		case <-ctx.Done():
			return ctx.Err()
		}
		if len(others)-len(errs) < need {
			break
		}
	}
	return fmt.Errorf("content reached too few origins for a quorum: %w", errors.Join(errs...))
}

func (o *Origin) sendStage(ctx context.Context, id string, st staged) error {
	f, err := o.store.fs.OpenFile(o.store.stagePath(st.name), os.O_RDONLY, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	q := url.Values{"digest": {st.digest.String()}, "size": {strconv.FormatInt(st.size, 10)}}
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, peerURL(id, "/v1/stage/"+st.name+"?"+q.Encode()), io.NopCloser(f))
	if err != nil {
		return err
	}
	req.ContentLength = st.size
	resp, err := o.clusterClient.Do(req)
	if err != nil {
		return fmt.Errorf("stage on %s: %w", id, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
		return fmt.Errorf("stage on %s: %s: %s", id, resp.Status, strings.TrimSpace(string(b)))
	}
	return nil
}

// fetchFromPeers opens content d on the first member that has it: the
// leader first, then the others.
func (o *Origin) fetchFromPeers(ctx context.Context, d wire.Digest) (io.ReadCloser, error) {
	if o.cnet == nil {
		return nil, errors.New("no other origin to fetch from")
	}
	var ids []string
	_, lid := o.raft.r.LeaderWithID()
	if lid != "" && string(lid) != o.cfg.ID {
		ids = append(ids, string(lid))
	}
	if servers, err := o.members(); err == nil {
		for _, s := range servers {
			if s.ID != lid && string(s.ID) != o.cfg.ID {
				ids = append(ids, string(s.ID))
			}
		}
	}
	var errs []error
	for _, id := range ids {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, peerURL(id, "/v1/blobs/"+d.String()), nil)
		resp, err := o.clusterClient.Do(req)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if resp.StatusCode == http.StatusOK {
			return resp.Body, nil
		}
		resp.Body.Close()
		errs = append(errs, fmt.Errorf("origin %s: %s", id, resp.Status))
	}
	return nil, fmt.Errorf("blob %s: no origin gave it: %w", d, errors.Join(errs...))
}

// fetchMissingLoop brings the content this origin's catalog names but it
// lacks (it missed the leader's stream, or a snapshot named it) from the
// other members, until none is missing.
func (o *Origin) fetchMissingLoop(ctx context.Context) {
	if o.cnet == nil {
		return
	}
	for {
		missing, err := o.store.missingBlobs()
		if err != nil {
			o.log.Error("list missing blobs", "err", err)
		}
		for _, b := range missing {
			fctx, cancel := context.WithTimeout(ctx, fetchTimeout(b.size))
			if err := o.store.fetchBlob(fctx, o.fetchFromPeers, b.digest, b.size); err != nil && ctx.Err() == nil {
				o.log.Warn("missing blob not fetched yet", "digest", b.digest.String(), "err", err)
			}
			cancel()
		}
		t := o.clk.NewTimer(2 * time.Second)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C():
		}
	}
}

// RaftAddr is the bound address of the cluster port, nil without one.
func (o *Origin) RaftAddr() net.Addr {
	if o.cnet == nil {
		return nil
	}
	return o.cnet.Addr()
}

// handleEdgesIn merges the edges the leader knows into this origin's
// registry: a new leader must know every edge at once, or a w=quorum or
// w=all publish right after a failover would count too few.
func (o *Origin) handleEdgesIn(w http.ResponseWriter, r *http.Request) {
	var infos []edgeInfo
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 16<<20)).Decode(&infos); err != nil {
		writeError(w, http.StatusBadRequest, "edges: "+err.Error())
		return
	}
	if err := o.edges.merge(infos); err != nil {
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// shareEdgesLoop has the leader send the edges it knows to the other
// members every few seconds and whenever an edge announces itself anew.
func (o *Origin) shareEdgesLoop(ctx context.Context) {
	if o.cnet == nil {
		return
	}
	for {
		if o.isLeader() {
			o.shareEdges(ctx)
		}
		t := o.clk.NewTimer(2 * time.Second)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-o.edgesChanged.C():
			t.Stop()
		case <-t.C():
		}
	}
}

func (o *Origin) shareEdges(ctx context.Context) {
	body, err := json.Marshal(o.edges.infos())
	if err != nil {
		return
	}
	servers, err := o.members()
	if err != nil {
		return
	}
	var wg sync.WaitGroup
	for _, s := range servers {
		if string(s.ID) == o.cfg.ID {
			continue
		}
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			defer cancel()
			req, _ := http.NewRequestWithContext(ctx, http.MethodPut, peerURL(string(s.ID), "/v1/cluster/edges"), bytes.NewReader(body))
			req.Header.Set("Content-Type", "application/json")
			if resp, err := o.clusterClient.Do(req); err == nil {
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		})
	}
	wg.Wait()
}
