package devctl

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
)

// fakeController is a hand-written Controller: edges by id, each action
// answered with the error set for it, or applied to the edge's state.
type fakeController struct {
	mu    sync.Mutex
	edges []EdgeStatus
	errs  map[Action]error
	acts  []string
	// ctxErr is the error of the context the last Act got.
	ctxErr error
}

func (f *fakeController) Edges(context.Context) ([]EdgeStatus, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]EdgeStatus(nil), f.edges...), nil
}

func (f *fakeController) Act(ctx context.Context, id string, a Action) (EdgeStatus, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.acts = append(f.acts, string(a)+" "+id)
	f.ctxErr = ctx.Err()
	if err := f.errs[a]; err != nil {
		return EdgeStatus{}, err
	}
	for i := range f.edges {
		e := &f.edges[i]
		if e.ID != id {
			continue
		}
		switch a {
		case ActionKill:
			e.State = StateKilled
		case ActionPause:
			e.State = StatePaused
		case ActionResume:
			e.State = StateRunning
		case ActionRestart:
			e.State, e.PID, e.Restarts = StateRunning, e.PID+1, e.Restarts+1
		}
		return *e, nil
	}
	return EdgeStatus{}, fmt.Errorf("%w %q", ErrUnknownEdge, id)
}

func newFake() *fakeController {
	return &fakeController{edges: []EdgeStatus{
		{ID: "lhr", PID: 100, State: StateRunning, HTTP: "127.0.0.1:1"},
		{ID: "nrt", PID: 200, State: StateRunning, HTTP: "127.0.0.1:2"},
	}}
}

func TestClientActions(t *testing.T) {
	f := newFake()
	srv := httptest.NewServer(Handler(f, "s3cret"))
	defer srv.Close()
	// A bare host:port, as the dev ready file names it, is taken as http.
	c := &Client{URL: strings.TrimPrefix(srv.URL, "http://"), Token: "s3cret", HTTP: srv.Client()}
	ctx := context.Background()

	for _, tc := range []struct {
		name string
		do   func() error
		want State
	}{
		{"pause", func() error { return c.Pause(ctx, "lhr") }, StatePaused},
		{"resume", func() error { return c.Resume(ctx, "lhr") }, StateRunning},
		{"kill", func() error { return c.Kill(ctx, "lhr") }, StateKilled},
		{"restart", func() error { return c.Restart(ctx, "lhr") }, StateRunning},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.do(); err != nil {
				t.Fatal(err)
			}
			e, err := c.Edge(ctx, "lhr")
			if err != nil {
				t.Fatal(err)
			}
			if e.State != tc.want {
				t.Errorf("state after %s: got %s, want %s", tc.name, e.State, tc.want)
			}
		})
	}
	st, err := c.Do(ctx, "nrt", ActionRestart)
	if err != nil {
		t.Fatal(err)
	}
	if st.ID != "nrt" || st.PID != 201 || st.Restarts != 1 {
		t.Errorf("restart nrt answered %+v, want id nrt, pid 201, 1 restart", st)
	}
	edges, err := c.Edges(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(edges) != 2 || edges[0].ID != "lhr" || edges[0].Restarts != 1 || edges[1].PID != 201 {
		t.Errorf("edges: got %+v, want lhr restarted once and nrt at pid 201", edges)
	}
	if got, want := strings.Join(f.acts, ","), "pause lhr,resume lhr,kill lhr,restart lhr,restart nrt"; got != want {
		t.Errorf("actions: got %s, want %s", got, want)
	}
	// An action runs to its end whatever the caller does: the
	// controller's context is never cancelled with the request.
	if f.ctxErr != nil {
		t.Errorf("controller's context: %v, want one not cancelled", f.ctxErr)
	}
}

func TestClientErrors(t *testing.T) {
	f := newFake()
	f.errs = map[Action]error{
		ActionKill:   fmt.Errorf("kill lhr: %w: it is killed", ErrWrongState),
		ActionPause:  fmt.Errorf("pause lhr: %w", ErrStopping),
		ActionResume: errors.New("something broke"),
	}
	srv := httptest.NewServer(Handler(f, "s3cret"))
	defer srv.Close()
	good := &Client{URL: srv.URL, Token: "s3cret", HTTP: srv.Client()}
	bad := &Client{URL: srv.URL, Token: "wrong", HTTP: srv.Client()}
	ctx := context.Background()

	for _, tc := range []struct {
		name       string
		err        error
		wantStatus int
		want       error // nil: no sentinel
	}{
		{"wrong state", good.Kill(ctx, "lhr"), http.StatusConflict, ErrWrongState},
		{"stopping", good.Pause(ctx, "lhr"), http.StatusServiceUnavailable, ErrStopping},
		{"internal", good.Resume(ctx, "lhr"), http.StatusInternalServerError, nil},
		{"unknown edge", good.Restart(ctx, "nope"), http.StatusNotFound, ErrUnknownEdge},
		{"unknown edge get", func() error { _, err := good.Edge(ctx, "nope"); return err }(), http.StatusNotFound, ErrUnknownEdge},
		{"unknown action", func() error { _, err := good.Do(ctx, "lhr", "explode"); return err }(), http.StatusNotFound, ErrUnknownAction},
		{"wrong token", bad.Restart(ctx, "lhr"), http.StatusUnauthorized, ErrUnauthorized},
		{"wrong token list", func() error { _, err := bad.Edges(ctx); return err }(), http.StatusUnauthorized, ErrUnauthorized},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var ae *APIError
			if !errors.As(tc.err, &ae) {
				t.Fatalf("got %v, want an *APIError", tc.err)
			}
			if ae.Status != tc.wantStatus {
				t.Errorf("status: got %d, want %d (%v)", ae.Status, tc.wantStatus, tc.err)
			}
			if tc.want != nil && !errors.Is(tc.err, tc.want) {
				t.Errorf("got %v, want it to match %v", tc.err, tc.want)
			}
			for _, s := range []error{ErrUnknownEdge, ErrUnknownAction, ErrWrongState, ErrUnauthorized, ErrStopping} {
				if s != tc.want && errors.Is(tc.err, s) {
					t.Errorf("got %v, which wrongly matches %v", tc.err, s)
				}
			}
		})
	}
	if got, want := strings.Join(f.acts, ","), "kill lhr,pause lhr,resume lhr,restart nope"; got != want {
		t.Errorf("actions the controller saw: got %s, want %s (none without the token)", got, want)
	}
}

// TestHandlerEmptyTokenRefusesAll: an API that kills processes never
// runs open, even by mistake.
func TestHandlerEmptyTokenRefusesAll(t *testing.T) {
	f := newFake()
	srv := httptest.NewServer(Handler(f, ""))
	defer srv.Close()
	for _, tok := range []string{"", "anything"} {
		c := &Client{URL: srv.URL, Token: tok, HTTP: srv.Client()}
		if err := c.Kill(context.Background(), "lhr"); !errors.Is(err, ErrUnauthorized) {
			t.Errorf("token %q: got %v, want %v", tok, err, ErrUnauthorized)
		}
	}
	if len(f.acts) != 0 {
		t.Errorf("the controller saw %v, want nothing", f.acts)
	}
}

func TestHandlerMethods(t *testing.T) {
	srv := httptest.NewServer(Handler(newFake(), "s3cret"))
	defer srv.Close()
	for _, tc := range []struct {
		method, path string
		want         int
	}{
		{http.MethodGet, EdgesPath, http.StatusOK},
		{http.MethodGet, EdgesPath + "/lhr", http.StatusOK},
		{http.MethodPost, EdgesPath + "/lhr/pause", http.StatusOK},
		{http.MethodGet, EdgesPath + "/lhr/pause", http.StatusMethodNotAllowed},
		{http.MethodPost, EdgesPath, http.StatusMethodNotAllowed},
		{http.MethodGet, "/v1/other", http.StatusNotFound},
	} {
		req, _ := http.NewRequest(tc.method, srv.URL+tc.path, nil)
		req.Header.Set("Authorization", "Bearer s3cret")
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.want {
			t.Errorf("%s %s: got %d, want %d", tc.method, tc.path, resp.StatusCode, tc.want)
		}
	}
}
