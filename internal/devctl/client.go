package devctl

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
)

// Client calls the control API of `geocdn dev --processes`. Its zero
// value needs URL and Token set; it is safe for concurrent use.
type Client struct {
	// URL is the API's base, http://host:port; a bare host:port, as the
	// dev ready file's "control" names it, is taken as http.
	URL string
	// Token is the dev cluster's admin token (its token file).
	Token string
	// HTTP sends the requests; nil means http.DefaultClient. An action
	// waits for its process (a restart for a stop and a start), so a
	// timeout here should allow tens of seconds.
	HTTP *http.Client
}

// APIError is an answer other than 200. It matches (errors.Is) the
// package's sentinel error of its code, such as ErrWrongState for a kill
// of a killed edge.
type APIError struct {
	// Op is what was asked, e.g. "kill lhr" or "list edges".
	Op     string
	Status int
	// Message is the server's explanation.
	Message string
	err     error
}

func (e *APIError) Error() string {
	return fmt.Sprintf("devctl: %s: %d %s: %s", e.Op, e.Status, http.StatusText(e.Status), e.Message)
}

// Unwrap returns the sentinel error of the answer's code, if any.
func (e *APIError) Unwrap() error { return e.err }

// Edges lists every edge.
func (c *Client) Edges(ctx context.Context) ([]EdgeStatus, error) {
	var out []EdgeStatus
	err := c.call(ctx, "list edges", http.MethodGet, EdgesPath, &out)
	return out, err
}

// Edge returns one edge's status.
func (c *Client) Edge(ctx context.Context, id string) (EdgeStatus, error) {
	var out EdgeStatus
	err := c.call(ctx, "get "+id, http.MethodGet, EdgesPath+"/"+url.PathEscape(id), &out)
	return out, err
}

// Do applies a to edge id and returns the edge's status after it: after
// a restart, its new PID.
func (c *Client) Do(ctx context.Context, id string, a Action) (EdgeStatus, error) {
	var out EdgeStatus
	err := c.call(ctx, string(a)+" "+id, http.MethodPost,
		EdgesPath+"/"+url.PathEscape(id)+"/"+url.PathEscape(string(a)), &out)
	return out, err
}

// Kill sends SIGKILL to edge id and returns once the process is gone.
func (c *Client) Kill(ctx context.Context, id string) error {
	_, err := c.Do(ctx, id, ActionKill)
	return err
}

// Pause sends SIGSTOP to edge id and returns once the process is stopped.
func (c *Client) Pause(ctx context.Context, id string) error {
	_, err := c.Do(ctx, id, ActionPause)
	return err
}

// Resume sends SIGCONT to paused edge id.
func (c *Client) Resume(ctx context.Context, id string) error {
	_, err := c.Do(ctx, id, ActionResume)
	return err
}

// Restart stops edge id if it runs and starts it again; it returns once
// the new process serves. Do(ctx, id, ActionRestart) also gives its PID.
func (c *Client) Restart(ctx context.Context, id string) error {
	_, err := c.Do(ctx, id, ActionRestart)
	return err
}

func (c *Client) call(ctx context.Context, op, method, path string, out any) error {
	base := strings.TrimSuffix(c.URL, "/")
	if !strings.Contains(base, "://") {
		base = "http://" + base
	}
	req, err := http.NewRequestWithContext(ctx, method, base+path, nil)
	if err != nil {
		return fmt.Errorf("devctl: %s: %w", op, err)
	}
	req.Header.Set("Authorization", "Bearer "+c.Token)
	hc := c.HTTP
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("devctl: %s: %w", op, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return fmt.Errorf("devctl: %s: %w", op, err)
	}
	if resp.StatusCode != http.StatusOK {
		var ea errorAnswer
		if json.Unmarshal(body, &ea) != nil || ea.Error == "" {
			ea.Error = strings.TrimSpace(string(body))
		}
		return &APIError{Op: op, Status: resp.StatusCode, Message: ea.Error, err: errorOf(ea.Code)}
	}
	if err := json.Unmarshal(body, out); err != nil {
		return fmt.Errorf("devctl: %s: answer: %w", op, err)
	}
	return nil
}
