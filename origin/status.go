package origin

import (
	"context"
	"net/http"
	"time"
)

// Status is the body of GET /v1/status: the origin's own state, then the
// edges as GET /v1/edges lists them.
type Status struct {
	ID      string       `json:"id"`
	LastLSN uint64       `json:"last_lsn"`
	Scrub   ScrubStatus  `json:"scrub"`
	Edges   []EdgeStatus `json:"edges"`
	// Cluster lists the origins of the cluster and what each said of
	// itself.
	Cluster ClusterStatus `json:"cluster"`
}

// Status reports the origin's state.
func (o *Origin) Status() Status {
	return Status{
		ID:      o.cfg.ID,
		LastLSN: o.store.lastLSN(),
		Scrub:   o.ScrubStatus(),
		Edges:   o.edgeList(),
	}
}

// memberStatusWait bounds the wait for the other origins' answers in a
// status: one that has not answered by then is listed with the error.
// Shorter than statusForwardWait, so a leader answering a forwarded
// status is not cut off for a member of its own that does not answer.
const memberStatusWait = 2 * time.Second

func (o *Origin) handleStatus(w http.ResponseWriter, r *http.Request) {
	st := o.Status()
	ctx, cancel := context.WithTimeout(r.Context(), memberStatusWait)
	defer cancel()
	st.Cluster = o.clusterStatus(ctx)
	writeJSON(w, http.StatusOK, st)
}

// handleScrub starts a scrub pass (POST /v1/scrub, no body), at once or
// right after the running one, and answers 202 with the scrub status as
// it was. Progress is then read from GET /v1/status.
func (o *Origin) handleScrub(w http.ResponseWriter, r *http.Request) {
	if r.ContentLength != 0 {
		writeError(w, http.StatusUnsupportedMediaType, "POST /v1/scrub takes no body")
		return
	}
	o.ScrubNow()
	writeJSON(w, http.StatusAccepted, o.ScrubStatus())
}
