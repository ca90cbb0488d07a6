package origin

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"github.com/geocdn/geocdn/internal/objkey"
	"github.com/geocdn/geocdn/internal/wire"
)

// PurgeRequest is the body of POST /v1/purge.
type PurgeRequest struct {
	Keys     []string `json:"keys"`
	Prefixes []string `json:"prefixes"`
	Tags     []string `json:"tags"`
}

// PurgeResult is the answer to POST /v1/purge.
type PurgeResult struct {
	LSN uint64 `json:"lsn"`
	// Edges are the edges the purge is settled with: every edge the
	// origin knows, down ones included (one whose lease has run out
	// counts as expired at once).
	Edges []string `json:"edges"`
	// Acked are the edges whose log has reached the purge.
	Acked []string `json:"acked"`
	// Expired are edges that lost their lease instead of acking
	// (wait=true only): they will not serve the purged objects unchecked.
	Expired []string `json:"expired,omitempty"`
	TookMS  int64    `json:"took_ms"`
	Error   string   `json:"error,omitempty"`
}

// maxPurgeBody bounds a purge request body.
const maxPurgeBody = 1 << 20

// handlePurge commits a purge to the log; edges evict (or, with soft=true,
// mark stale) the matching objects when they apply it. With wait=true it
// answers once every edge has acknowledged the purge or lost its
// lease, and, after an origin start, not before one lease term plus margin
// has passed, since leases granted before the restart may still run.
func (o *Origin) handlePurge(w http.ResponseWriter, r *http.Request) {
	start := o.clk.Now()
	q := r.URL.Query()
	wait, soft := q.Get("wait") == "true", q.Get("soft") == "true"
	ns := q.Get("namespace")
	if ns == "" {
		ns = objkey.DefaultNamespace
	} else if err := objkey.ValidNamespace(ns); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	if !requireJSON(w, r) {
		return
	}
	var req PurgeRequest
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxPurgeBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("purge body exceeds %d bytes", maxPurgeBody))
			return
		}
		writeError(w, http.StatusBadRequest, "purge body: "+err.Error())
		return
	}
	if dec.More() {
		writeError(w, http.StatusBadRequest, "purge body: trailing data after the JSON object")
		return
	}
	if len(req.Keys)+len(req.Prefixes)+len(req.Tags) == 0 {
		writeError(w, http.StatusBadRequest, `purge body names nothing: give "keys", "prefixes" or "tags"`)
		return
	}
	_, pulls := o.ups.forNamespace(ns)
	for i, k := range req.Keys {
		var err error
		if pulls {
			// Keyed by request target: "/", "/blog/", "/search?q=cdn",
			// as a browser shows them (escaped), with or without the
			// leading slash.
			path, query, _ := strings.Cut(k, "?")
			k, err = objkey.FromTarget("/"+strings.TrimLeft(path, "/"), query)
		} else {
			k = strings.TrimLeft(k, "/")
			err = objkey.Validate(k)
		}
		if err != nil {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("keys[%d]: %v", i, err))
			return
		}
		req.Keys[i] = k
	}
	for i, p := range req.Prefixes {
		req.Prefixes[i] = strings.TrimLeft(p, "/")
	}
	if pulls {
		// A pulled key's Vary variants go with it, as a prefix each.
		req.Prefixes = append(req.Prefixes, variantPrefixes(req.Keys)...)
		if len(req.Prefixes) > wire.MaxPurgeSelectors {
			writeError(w, http.StatusBadRequest, fmt.Sprintf(
				"purge names too much: in a namespace with an upstream each key also purges its Vary variants, counted as a prefix; keys and prefixes together may be at most %d here", wire.MaxPurgeSelectors))
			return
		}
	}
	if o.isClosing() {
		writeError(w, http.StatusServiceUnavailable, "origin shutting down")
		return
	}
	now := o.clk.Now()
	ent, err := o.propose(r.Context(), &command{ID: requestIDFrom(r), Entry: wire.LogEntry{
		Op: wire.OpPurge, Namespace: ns, PurgeKeys: req.Keys, PurgePrefixes: req.Prefixes, PurgeTags: req.Tags,
		Soft: soft, ModTime: now,
	}})
	if errors.Is(err, wire.ErrMalformed) {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	} else if o.writeRefused(w, err, PublishResult{Namespace: ns}) {
		return
	} else if err != nil {
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	res := PurgeResult{LSN: ent.LSN, Edges: o.edgeIDs()}
	status := http.StatusOK
	if wait {
		var ok bool
		res.Acked, res.Expired, ok = o.awaitSettled(res.LSN, o.clk.Now().Add(o.cfg.PublishTimeout), r.Context().Done())
		if !ok {
			status = http.StatusGatewayTimeout
			res.Error = fmt.Sprintf("not every edge acknowledged the purge or lost its lease within %v; the purge is committed", o.cfg.PublishTimeout)
		}
	} else {
		res.Acked, _, _ = o.grantor.Settled(res.LSN, res.Edges, o.leaseOf, o.clk.Now())
	}
	if res.Edges == nil {
		res.Edges = []string{}
	}
	if res.Acked == nil {
		res.Acked = []string{}
	}
	res.TookMS = o.clk.Since(start).Milliseconds()
	w.Header().Set(HeaderLSN, strconv.FormatUint(ent.LSN, 10))
	writeJSON(w, status, res)
}
