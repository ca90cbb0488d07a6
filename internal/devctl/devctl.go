// Package devctl controls the processes of a local development cluster
// run by `geocdn dev --processes`: Proc supervises one child process,
// Handler serves the control API that kills, pauses, resumes and
// restarts edges, and Client calls that API (a load tester's faults).
//
// Key invariant: a child never outlives its supervisor and is never
// signalled once reaped. Children get SIGKILL when the supervisor dies
// (Pdeathsig, on Linux) and are stopped when it stops; every signal goes
// through the os.Process of the run it was started as, so a pid the
// kernel has handed to another process is never hit.
package devctl

import (
	"context"
	"errors"
	"net/http"
)

// API paths.
const (
	// EdgesPath lists the edges (GET); EdgesPath/{id} is one of them
	// (GET), EdgesPath/{id}/{action} acts on it (POST).
	EdgesPath = "/v1/dev/edges"
)

// State is what a supervised process is doing.
type State string

const (
	// StateStarting: started, its ready file not written yet.
	StateStarting State = "starting"
	// StateRunning: serving.
	StateRunning State = "running"
	// StatePaused: stopped by SIGSTOP until resumed.
	StatePaused State = "paused"
	// StateKilled: ended by Kill; it stays down until restarted.
	StateKilled State = "killed"
	// StateExited: it ended by itself (or failed to start), or was
	// stopped with the cluster. Nothing restarts it but Restart.
	StateExited State = "exited"
	// StateRestarting: between the stop and the new ready file of a
	// restart.
	StateRestarting State = "restarting"
)

// live reports whether a process of state s runs (or is paused): one a
// signal can reach.
func (s State) live() bool { return s == StateRunning || s == StatePaused }

// Action is what POST EdgesPath/{id}/{action} does to an edge.
type Action string

const (
	// ActionKill sends SIGKILL and waits until the process is gone. The
	// edge stays down until restarted.
	ActionKill Action = "kill"
	// ActionPause sends SIGSTOP and waits until the process is stopped.
	ActionPause Action = "pause"
	// ActionResume sends SIGCONT to a paused edge.
	ActionResume Action = "resume"
	// ActionRestart stops the edge if it runs (SIGTERM, then SIGKILL
	// after a timeout), starts it again with the same data directory and
	// addresses, and waits for its new ready file.
	ActionRestart Action = "restart"
)

func (a Action) valid() bool {
	switch a {
	case ActionKill, ActionPause, ActionResume, ActionRestart:
		return true
	}
	return false
}

// EdgeStatus is one edge as the control API reports it.
type EdgeStatus struct {
	ID string `json:"id"`
	// PID is the edge's current process, or its last one once it ended.
	PID   int   `json:"pid"`
	State State `json:"state"`
	// Restarts counts the restarts that brought the edge up again.
	Restarts int `json:"restarts"`
	// HTTP and Admin are the addresses (host:port) of its latest run; a
	// restart binds the same ones again.
	HTTP  string `json:"http,omitempty"`
	Admin string `json:"admin,omitempty"`
	// Exit is how its latest process to end ended ("signal: killed",
	// "exit status 1"); empty until one has.
	Exit string `json:"exit,omitempty"`
	// Log is the file its output goes to.
	Log string `json:"log,omitempty"`
}

// Errors a Controller returns and a Client gives back, each matched with
// errors.Is. They map to HTTP statuses and wire codes in one table,
// errorCodes.
var (
	// ErrUnknownEdge: no edge has that id (404).
	ErrUnknownEdge = errors.New("unknown edge")
	// ErrUnknownAction: not one of kill, pause, resume, restart (404).
	ErrUnknownAction = errors.New("unknown action")
	// ErrWrongState: the edge is not in a state the action applies to,
	// such as killing a killed edge or resuming a running one (409).
	ErrWrongState = errors.New("wrong state")
	// ErrUnauthorized: missing or wrong bearer token (401).
	ErrUnauthorized = errors.New("missing or wrong bearer token")
	// ErrStopping: the cluster is shutting down (503).
	ErrStopping = errors.New("dev cluster is stopping")
)

// errorCodes maps each error to its HTTP status and to the code an error
// answer carries ({"error": message, "code": code}): the handler answers
// with the first entry the error matches (500 and no code for none), the
// client wraps the error of the code it got.
var errorCodes = []struct {
	err    error
	status int
	code   string
}{
	{ErrUnknownEdge, http.StatusNotFound, "unknown_edge"},
	{ErrUnknownAction, http.StatusNotFound, "unknown_action"},
	{ErrWrongState, http.StatusConflict, "wrong_state"},
	{ErrUnauthorized, http.StatusUnauthorized, "unauthorized"},
	{ErrStopping, http.StatusServiceUnavailable, "stopping"},
}

// errorAnswer is the body of every answer that is not 200.
type errorAnswer struct {
	Error string `json:"error"`
	Code  string `json:"code,omitempty"`
}

func answerFor(err error) (int, errorAnswer) {
	for _, c := range errorCodes {
		if errors.Is(err, c.err) {
			return c.status, errorAnswer{Error: err.Error(), Code: c.code}
		}
	}
	return http.StatusInternalServerError, errorAnswer{Error: err.Error()}
}

// errorOf is the sentinel error of a wire code, nil for none.
func errorOf(code string) error {
	for _, c := range errorCodes {
		if c.code == code {
			return c.err
		}
	}
	return nil
}

// Controller is what Handler drives: the edges of one dev cluster.
//
// Both methods are called concurrently. Act on one edge runs its
// actions one after another, each to its end (a restart is never left
// half done), and may take as long as a stop plus a start; Edges must
// not wait for an action in progress.
type Controller interface {
	// Edges lists every edge, in the cluster's order.
	Edges(ctx context.Context) ([]EdgeStatus, error)
	// Act applies a to edge id and returns the edge's status after it.
	Act(ctx context.Context, id string, a Action) (EdgeStatus, error)
}
