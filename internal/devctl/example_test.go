package devctl_test

import (
	"context"
	"errors"
	"fmt"
	"net/http/httptest"

	"github.com/geocdn/geocdn/internal/devctl"
)

// oneEdge is a Controller with a single edge that only records state.
type oneEdge struct{ st devctl.EdgeStatus }

func (o *oneEdge) Edges(context.Context) ([]devctl.EdgeStatus, error) {
	return []devctl.EdgeStatus{o.st}, nil
}

func (o *oneEdge) Act(_ context.Context, id string, a devctl.Action) (devctl.EdgeStatus, error) {
	if id != o.st.ID {
		return devctl.EdgeStatus{}, fmt.Errorf("%w %q", devctl.ErrUnknownEdge, id)
	}
	switch {
	case a == devctl.ActionKill && o.st.State == devctl.StateKilled:
		return devctl.EdgeStatus{}, fmt.Errorf("%w: %s is killed", devctl.ErrWrongState, id)
	case a == devctl.ActionKill:
		o.st.State = devctl.StateKilled
	case a == devctl.ActionRestart:
		o.st.State, o.st.PID, o.st.Restarts = devctl.StateRunning, o.st.PID+1, o.st.Restarts+1
	}
	return o.st, nil
}

// A load tester kills an edge, then brings it back. Against a real
// cluster, URL is "http://" + the dev ready file's "control" and Token
// the content of its "token_file".
func Example() {
	srv := httptest.NewServer(devctl.Handler(&oneEdge{st: devctl.EdgeStatus{ID: "lhr", PID: 4242, State: devctl.StateRunning}}, "tok"))
	defer srv.Close()
	c := &devctl.Client{URL: srv.URL, Token: "tok"}
	ctx := context.Background()

	if err := c.Kill(ctx, "lhr"); err != nil {
		fmt.Println(err)
	}
	if err := c.Kill(ctx, "lhr"); errors.Is(err, devctl.ErrWrongState) {
		fmt.Println("already killed")
	}
	st, err := c.Do(ctx, "lhr", devctl.ActionRestart)
	if err != nil {
		fmt.Println(err)
	}
	fmt.Println(st.ID, st.State, st.PID, st.Restarts)
	// Output:
	// already killed
	// lhr running 4243 1
}
