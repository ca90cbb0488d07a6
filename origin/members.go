package origin

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/raft"

	"github.com/geocdn/geocdn/internal/pki"
)

// ClusterStatus is the cluster section of GET /v1/status: every member as
// the raft configuration lists it, with what each said of itself.
type ClusterStatus struct {
	Leader  string         `json:"leader"`
	Members []MemberStatus `json:"members"`
}

// MemberStatus is one origin of the cluster. Error is set, and the rest
// of what the member says of itself left out, when it did not answer.
type MemberStatus struct {
	ID           string `json:"id"`
	Raft         string `json:"raft"`
	Voter        bool   `json:"voter"`
	State        string `json:"state,omitempty"`
	Term         uint64 `json:"term,omitempty"`
	AppliedIndex uint64 `json:"applied_index"`
	CommitIndex  uint64 `json:"commit_index"`
	LSN          uint64 `json:"lsn"`
	MissingBlobs int    `json:"missing_blobs"`
	HTTP         string `json:"http,omitempty"`
	QUIC         string `json:"quic,omitempty"`
	Error        string `json:"error,omitempty"`
}

// clusterStatus asks every member what it is, at once.
func (o *Origin) clusterStatus(ctx context.Context) ClusterStatus {
	var cs ClusterStatus
	if _, lid := o.raft.r.LeaderWithID(); lid != "" {
		cs.Leader = string(lid)
	}
	servers, err := o.members()
	if err != nil {
		return cs
	}
	cs.Members = make([]MemberStatus, len(servers))
	var wg sync.WaitGroup
	for i, s := range servers {
		m := &cs.Members[i]
		m.ID, m.Raft, m.Voter = string(s.ID), string(s.Address), s.Suffrage == raft.Voter
		wg.Go(func() {
			si := o.self()
			if m.ID != o.cfg.ID {
				var err error
				if si, err = o.peerSelf(ctx, m.ID); err != nil {
					m.Error = err.Error()
					return
				}
			}
			m.State, m.Term, m.AppliedIndex, m.CommitIndex = si.Raft.State, si.Raft.Term, si.Raft.AppliedIndex, si.Raft.CommitIndex
			m.LSN, m.MissingBlobs, m.HTTP, m.QUIC = si.LSN, si.Missing, si.HTTP, si.QUIC
		})
	}
	wg.Wait()
	return cs
}

// memberRequest is the body of POST /v1/cluster/members.
type memberRequest struct {
	ID   string `json:"id"`
	Raft string `json:"raft"`
	// Voter false adds the origin as a non-voter, which receives the log
	// but does not count towards a quorum.
	Voter *bool `json:"voter,omitempty"`
}

// handleMemberAdd adds an origin to the cluster (the leader's job; others
// forward it). The new origin is started first, with --raft and no
// --peers, and receives the log, a snapshot first when needed.
func (o *Origin) handleMemberAdd(w http.ResponseWriter, r *http.Request) {
	if !requireJSON(w, r) {
		return
	}
	var req memberRequest
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 4<<10))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		writeError(w, http.StatusBadRequest, "member: "+err.Error())
		return
	}
	if err := pki.ValidID(req.ID); err != nil {
		writeError(w, http.StatusBadRequest, "member id: "+err.Error())
		return
	}
	if _, _, err := net.SplitHostPort(req.Raft); err != nil {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("member %s: raft address %q: %v", req.ID, req.Raft, err))
		return
	}
	if o.cnet == nil {
		writeError(w, http.StatusConflict, "this origin has no cluster port (--raft): it cannot take members")
		return
	}
	o.peers.set(Peer{ID: req.ID, Raft: req.Raft})
	var f raft.IndexFuture
	if req.Voter != nil && !*req.Voter {
		f = o.raft.r.AddNonvoter(raft.ServerID(req.ID), raft.ServerAddress(req.Raft), 0, o.cfg.PublishTimeout)
	} else {
		f = o.raft.r.AddVoter(raft.ServerID(req.ID), raft.ServerAddress(req.Raft), 0, o.cfg.PublishTimeout)
	}
	if !o.membershipDone(w, f) {
		return
	}
	o.log.Info("origin added to the cluster", "member", req.ID, "raft", req.Raft)
	writeJSON(w, http.StatusOK, o.clusterStatus(r.Context()))
}

// handleMemberRemove removes an origin from the cluster. Removing the
// leader itself is allowed: it steps down once the change commits.
func (o *Origin) handleMemberRemove(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	servers, err := o.members()
	if err != nil {
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	found := false
	for _, s := range servers {
		found = found || string(s.ID) == id
	}
	if !found {
		writeError(w, http.StatusNotFound, fmt.Sprintf("origin %q is not a member", id))
		return
	}
	if len(servers) == 1 {
		writeError(w, http.StatusConflict, "cannot remove the last member of the cluster")
		return
	}
	if !o.membershipDone(w, o.raft.r.RemoveServer(raft.ServerID(id), 0, o.cfg.PublishTimeout)) {
		return
	}
	o.log.Info("origin removed from the cluster", "member", id)
	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
	defer cancel()
	writeJSON(w, http.StatusOK, o.clusterStatus(ctx))
}

// membershipDone waits for a configuration change and answers its failure.
func (o *Origin) membershipDone(w http.ResponseWriter, f raft.IndexFuture) bool {
	err := f.Error()
	switch {
	case err == nil:
		return true
	case errors.Is(err, raft.ErrNotLeader), errors.Is(err, raft.ErrLeadershipLost):
		o.writeRefused(w, &errNotLeader{}, PublishResult{})
	default:
		writeError(w, http.StatusServiceUnavailable, "membership change: "+err.Error())
	}
	return false
}

// joinLoop asks the cluster at Config.Join to add this origin, until it
// has or the origin stops. An origin already a member is added again
// harmlessly (raft keeps one entry per id).
func (o *Origin) joinLoop(ctx context.Context) {
	if o.cfg.Join == "" {
		return
	}
	body, _ := json.Marshal(memberRequest{ID: o.cfg.ID, Raft: o.clusterAddr()})
	backoff := 100 * time.Millisecond
	for {
		if servers, err := o.members(); err == nil {
			for _, s := range servers {
				if string(s.ID) == o.cfg.ID {
					return // a member already
				}
			}
		}
		err := o.askToJoin(ctx, body)
		if err == nil {
			o.log.Info("joined the origin cluster", "via", o.cfg.Join)
			return
		}
		o.log.Warn("joining the origin cluster", "via", o.cfg.Join, "err", err, "retry_in", backoff)
		t := o.clk.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C():
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

func (o *Origin) askToJoin(ctx context.Context, body []byte) error {
	ctx, cancel := context.WithTimeout(ctx, o.cfg.PublishTimeout+5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimSuffix(o.cfg.Join, "/")+"/v1/cluster/members", bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+o.cfg.Token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return fmt.Errorf("%s: %s", resp.Status, strings.TrimSpace(string(b)))
	}
	return nil
}
