package devctl

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
)

// Handler serves the control API over ctl to requests that carry token
// as a bearer token:
//
//	GET  /v1/dev/edges                 every edge ([]EdgeStatus)
//	GET  /v1/dev/edges/{id}            one edge (EdgeStatus)
//	POST /v1/dev/edges/{id}/{action}   kill, pause, resume or restart it;
//	                                   answers its EdgeStatus after that
//
// Errors answer {"error": message, "code": code} with the status of
// errorCodes. An empty token refuses every request: the API can kill
// processes, so it never runs open.
func Handler(ctl Controller, token string) http.Handler {
	h := &handler{ctl: ctl, tokenSum: sha256.Sum256([]byte(token)), open: token != ""}
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+EdgesPath, h.list)
	mux.HandleFunc("GET "+EdgesPath+"/{id}", h.one)
	mux.HandleFunc("POST "+EdgesPath+"/{id}/{action}", h.act)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !h.authorized(r) {
			w.Header().Set("WWW-Authenticate", `Bearer realm="geocdn dev"`)
			writeError(w, ErrUnauthorized)
			return
		}
		mux.ServeHTTP(w, r)
	})
}

type handler struct {
	ctl      Controller
	tokenSum [32]byte
	open     bool
}

// authorized compares the bearer token in constant time; hashing both
// sides first makes the time independent of the token's length too.
func (h *handler) authorized(r *http.Request) bool {
	scheme, tok, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !h.open || !ok || !strings.EqualFold(scheme, "Bearer") {
		return false
	}
	got := sha256.Sum256([]byte(strings.TrimSpace(tok)))
	return subtle.ConstantTimeCompare(got[:], h.tokenSum[:]) == 1
}

func (h *handler) list(w http.ResponseWriter, r *http.Request) {
	edges, err := h.ctl.Edges(r.Context())
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, edges)
}

func (h *handler) one(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	edges, err := h.ctl.Edges(r.Context())
	if err != nil {
		writeError(w, err)
		return
	}
	for _, e := range edges {
		if e.ID == id {
			writeJSON(w, http.StatusOK, e)
			return
		}
	}
	writeError(w, fmt.Errorf("%w %q", ErrUnknownEdge, id))
}

func (h *handler) act(w http.ResponseWriter, r *http.Request) {
	id, a := r.PathValue("id"), Action(r.PathValue("action"))
	if !a.valid() {
		writeError(w, fmt.Errorf("%w %q: want kill, pause, resume or restart", ErrUnknownAction, a))
		return
	}
	// An action runs to its end even if the caller goes away: a restart
	// abandoned between its stop and its start would leave the edge down
	// with nobody told. The controller bounds its own waits.
	st, err := h.ctl.Act(context.WithoutCancel(r.Context()), id, a)
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, st)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, err error) {
	status, body := answerFor(err)
	writeJSON(w, status, body)
}
