// Package ready writes and reads a node's ready file: a small JSON
// document naming the addresses a geocdn process bound, written once it
// serves. It lets a test or a tool start a node on port 0 and learn which
// ports the kernel gave it, instead of picking a port beforehand and
// hoping nobody takes it before the node binds it.
//
// Key invariant: a reader never sees a partial or half-written file. Write
// fills a temporary file in the same directory and renames it over the
// path, which replaces the old file in one step.
package ready

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"
)

// File is the content of a ready file. Addresses are host:port as bound
// (never port 0); a listener the node does not have is left out.
type File struct {
	// Role is origin, edge, router or dev.
	Role string `json:"role"`
	// ID is the node's id (origin and edge).
	ID string `json:"id,omitempty"`
	// PID is the process that wrote the file. A file left behind by a
	// process that was killed names a process that is gone: compare it
	// with the one you started.
	PID int `json:"pid"`
	// HTTP is the origin's admin API, an edge's client listener or the
	// router's listener.
	HTTP string `json:"http,omitempty"`
	// HTTPS and HTTP3 are an edge's (or the router's) TLS listener and
	// its HTTP/3 UDP socket (the same port), when it serves TLS.
	HTTPS string `json:"https,omitempty"`
	HTTP3 string `json:"http3,omitempty"`
	// DNS is the router's DNS front end: its UDP and TCP sockets, which
	// share the port.
	DNS string `json:"dns,omitempty"`
	// Admin is an edge's admin listener (/metrics, /healthz).
	Admin string `json:"admin,omitempty"`
	// QUIC is the origin's listening UDP socket, or the local UDP socket
	// an edge dials the origin from.
	QUIC string `json:"quic,omitempty"`
	// Raft is an origin's cluster port (raft, content and forwarded admin
	// requests between origins), when it has one.
	Raft string `json:"raft,omitempty"`
	// Data and Log are the node's data directory and the file its output
	// goes to, where geocdn dev --processes started it; the node's own
	// file leaves them out.
	Data string `json:"data,omitempty"`
	Log  string `json:"log,omitempty"`

	// The rest is geocdn dev's: the nodes it runs, in its one process or,
	// with --processes, as child processes (each PID then its own).
	Origin *File  `json:"origin,omitempty"`
	Router *File  `json:"router,omitempty"`
	Edges  []File `json:"edges,omitempty"`
	// TokenFile holds the dev cluster's admin token.
	TokenFile string `json:"token_file,omitempty"`
	// Control is the host:port of the control API of geocdn dev
	// --processes (internal/devctl), which kills, pauses, resumes and
	// restarts edges; it takes the admin token. The in-process dev
	// cluster has none.
	Control string `json:"control,omitempty"`
}

// Write stores f as JSON at path, atomically: readers see the previous
// file or the new one, whole. The file is not fsynced: it describes a
// running process, and a machine crash makes it wrong anyway.
func Write(path string, f File) error {
	b, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return fmt.Errorf("ready file %s: %w", path, err)
	}
	b = append(b, '\n')
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	tmp, err := os.CreateTemp(dir, "."+base+".tmp*")
	if err != nil {
		return fmt.Errorf("ready file %s: %w", path, err)
	}
	_, err = tmp.Write(b)
	if err == nil {
		// CreateTemp makes it 0600; the file names addresses, no secret.
		err = tmp.Chmod(0o644)
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("ready file %s: %w", path, err)
	}
	return nil
}

// Read parses the ready file at path. A missing file is an error that
// matches fs.ErrNotExist.
func Read(path string) (File, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return File{}, fmt.Errorf("ready file %s: %w", path, err)
	}
	var f File
	if err := json.Unmarshal(b, &f); err != nil {
		return File{}, fmt.Errorf("ready file %s: %w", path, err)
	}
	return f, nil
}

// pollInterval is how often Wait looks for the file. Nodes are ready in
// milliseconds to seconds; a notification API would not be portable.
const pollInterval = 10 * time.Millisecond

// Wait polls path until it holds a ready file written by process pid (any
// process when pid is 0) and returns it. It gives up when ctx ends; cancel
// ctx when the process exits to fail at once rather than at a deadline.
func Wait(ctx context.Context, path string, pid int) (File, error) {
	t := time.NewTicker(pollInterval)
	defer t.Stop()
	for {
		f, err := Read(path)
		switch {
		case err == nil && (pid == 0 || f.PID == pid):
			return f, nil
		case err != nil && !errors.Is(err, fs.ErrNotExist):
			return File{}, err
		}
		select {
		case <-ctx.Done():
			return File{}, fmt.Errorf("waiting for ready file %s: %w", path, context.Cause(ctx))
		case <-t.C:
		}
	}
}

// Remove deletes the ready file at path if process pid wrote it, so a
// node stopping late cannot delete the file of the one that replaced it.
// A missing file is not an error.
func Remove(path string, pid int) error {
	f, err := Read(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if f.PID != pid {
		return nil
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("ready file %s: %w", path, err)
	}
	return nil
}

// Serve runs run(ctx) and reports it at path: f, stamped with this
// process's pid, is written as soon as run has been started, and removed
// when run returns. The nodes bind every listener in their constructor,
// before Run, so a client that connects once the file is there waits in
// the listen backlog until the serve loop accepts it. An empty path just
// runs run.
func Serve(ctx context.Context, path string, f File, run func(context.Context) error) error {
	if path == "" {
		return run(ctx)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errc := make(chan error, 1)
	go func() { errc <- run(ctx) }()
	f.PID = os.Getpid()
	if err := Write(path, f); err != nil {
		cancel()
		<-errc
		return err
	}
	err := <-errc
	if rerr := Remove(path, f.PID); rerr != nil && err == nil {
		err = rerr
	}
	return err
}
