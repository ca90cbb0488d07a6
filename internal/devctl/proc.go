package devctl

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/geocdn/geocdn/internal/ready"
)

// ProcConfig describes one supervised child process: a geocdn node that
// takes --ready-file.
type ProcConfig struct {
	// Name names the process in logs and errors ("origin", "lhr").
	// Required.
	Name string
	// Path is the binary. Required.
	Path string
	// Args returns the arguments of the next start, without
	// --ready-file, which Proc adds. prev is the ready file of the
	// previous run (zero before the first), so that a restart can bind
	// the addresses the first run was given. Required.
	Args func(prev ready.File) []string
	// Env is the process's environment; nil means the supervisor's.
	Env []string
	// ReadyFile is where the process reports what it bound. Required.
	ReadyFile string
	// LogFile receives the process's stdout and stderr, appended to
	// across restarts; each start writes a "==== " header line first.
	// Empty discards them.
	LogFile string
	// ReadyTimeout bounds a start: the wait for the ready file,
	// including tries again while an address is still in use. Default
	// 1m.
	ReadyTimeout time.Duration
	// StopTimeout is how long a stop waits after SIGTERM before it sends
	// SIGKILL, and how long Pause waits for the process to stop. Default
	// 15s.
	StopTimeout time.Duration
	// Logger reports processes that end by themselves. Default
	// slog.Default().
	Logger *slog.Logger
}

// Proc supervises one child process: it starts it, signals it and
// notices when it ends, but never restarts it unasked.
//
// Its methods are safe for concurrent use. Start, Kill, Pause, Resume,
// Restart and Stop run one at a time, each to its end; Status never
// waits for them.
type Proc struct {
	cfg ProcConfig
	log *slog.Logger

	// ops is held for the whole of an action.
	ops sync.Mutex

	mu       sync.Mutex
	cur      *run // latest run; nil before the first start
	state    State
	starts   int
	restarts int
	ready    ready.File // the latest ready file
	exit     string     // how the latest run to end ended
	closed   bool       // Stop was called: nothing starts any more
}

// run is one process of a Proc.
type run struct {
	done chan struct{} // closed once the process is reaped

	// Guarded by Proc.mu.
	proc     *os.Process
	pid      int
	exit     string // set before done is closed
	expected bool   // its end was asked for: kill, restart or stop
	starting bool   // its ready file is not there yet
}

// ProcStatus is a snapshot of a Proc.
type ProcStatus struct {
	Name  string
	PID   int // the current process, or the last one; 0 before a start
	State State
	// Restarts counts the restarts that brought it up again.
	Restarts int
	// Ready is the latest ready file the process wrote.
	Ready ready.File
	// Exit is how the latest process to end ended ("signal: killed");
	// empty until one has.
	Exit string
	Log  string
}

// NewProc returns a supervisor for cfg's process; Start starts it.
func NewProc(cfg ProcConfig) (*Proc, error) {
	switch {
	case cfg.Name == "":
		return nil, errors.New("devctl: ProcConfig.Name is required")
	case cfg.Path == "" || cfg.Args == nil || cfg.ReadyFile == "":
		return nil, fmt.Errorf("devctl: %s: ProcConfig.Path, Args and ReadyFile are required", cfg.Name)
	case cfg.ReadyTimeout < 0 || cfg.StopTimeout < 0:
		return nil, fmt.Errorf("devctl: %s: timeouts must not be negative", cfg.Name)
	}
	if cfg.ReadyTimeout == 0 {
		cfg.ReadyTimeout = time.Minute
	}
	if cfg.StopTimeout == 0 {
		cfg.StopTimeout = 15 * time.Second
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	return &Proc{cfg: cfg, log: log.With("process", cfg.Name)}, nil
}

// Status returns what the process is doing now.
func (p *Proc) Status() ProcStatus {
	p.mu.Lock()
	defer p.mu.Unlock()
	st := ProcStatus{Name: p.cfg.Name, State: p.state, Restarts: p.restarts, Ready: p.ready, Exit: p.exit, Log: p.cfg.LogFile}
	if p.cur != nil {
		st.PID = p.cur.pid
	}
	return st
}

// Start starts the process and returns its ready file once it wrote it.
// A process that ends first, or does not write it within ReadyTimeout
// (it is then killed), is an error naming the end of its log.
func (p *Proc) Start(ctx context.Context) (ready.File, error) {
	p.ops.Lock()
	defer p.ops.Unlock()
	p.mu.Lock()
	err := p.refuse("start", StateExited, StateKilled, "")
	p.mu.Unlock()
	if err != nil {
		return ready.File{}, err
	}
	return p.start(ctx, StateStarting)
}

// Kill sends SIGKILL and returns once the process is reaped. It stays
// down until restarted.
func (p *Proc) Kill(ctx context.Context) error {
	p.ops.Lock()
	defer p.ops.Unlock()
	p.mu.Lock()
	if err := p.refuse("kill", StateRunning, StatePaused); err != nil {
		p.mu.Unlock()
		return err
	}
	r := p.cur
	r.expected = true
	p.state = StateKilled
	p.mu.Unlock()
	send(r, syscall.SIGKILL)
	return p.await(ctx, r, "kill")
}

// Pause sends SIGSTOP and returns once the process is stopped (on Linux,
// where /proc tells; elsewhere once the signal is sent).
func (p *Proc) Pause(ctx context.Context) error {
	p.ops.Lock()
	defer p.ops.Unlock()
	p.mu.Lock()
	if err := p.refuse("pause", StateRunning); err != nil {
		p.mu.Unlock()
		return err
	}
	r := p.cur
	p.state = StatePaused
	p.mu.Unlock()
	send(r, syscall.SIGSTOP)
	// SIGSTOP takes effect when each thread next handles signals, not
	// when it is sent: wait, so that "paused" means serving nothing.
	ctx, cancel := context.WithTimeout(ctx, p.cfg.StopTimeout)
	defer cancel()
	t := time.NewTicker(5 * time.Millisecond)
	defer t.Stop()
	for {
		stopped, err := processStopped(r.pid)
		if stopped {
			return nil
		}
		select {
		case <-r.done:
			return fmt.Errorf("devctl: pause %s: it ended (%s)", p.cfg.Name, r.exit)
		case <-ctx.Done():
			return fmt.Errorf("devctl: pause %s (pid %d): not seen stopped (%v): %w", p.cfg.Name, r.pid, err, ctx.Err())
		case <-t.C:
		}
	}
}

// Resume sends SIGCONT to a paused process. The kernel wakes it as the
// signal is sent, so there is nothing to wait for.
func (p *Proc) Resume(ctx context.Context) error {
	p.ops.Lock()
	defer p.ops.Unlock()
	p.mu.Lock()
	if err := p.refuse("resume", StatePaused); err != nil {
		p.mu.Unlock()
		return err
	}
	r := p.cur
	p.state = StateRunning
	p.mu.Unlock()
	send(r, syscall.SIGCONT)
	return nil
}

// Restart stops the process if it runs or is paused (SIGTERM, SIGKILL
// after StopTimeout), starts it again and returns the new ready file. A
// killed or exited process is just started.
func (p *Proc) Restart(ctx context.Context) (ready.File, error) {
	p.ops.Lock()
	defer p.ops.Unlock()
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return ready.File{}, fmt.Errorf("devctl: restart %s: %w", p.cfg.Name, ErrStopping)
	}
	r, was := p.cur, p.state
	if was.live() {
		r.expected = true
	}
	p.state = StateRestarting
	p.mu.Unlock()
	if was.live() {
		if err := p.stop(ctx, r, was == StatePaused); err != nil {
			return ready.File{}, fmt.Errorf("devctl: restart %s: %w", p.cfg.Name, err)
		}
	}
	f, err := p.start(ctx, StateRestarting)
	if err != nil {
		return ready.File{}, err
	}
	p.mu.Lock()
	p.restarts++
	p.mu.Unlock()
	return f, nil
}

// Stop stops the process if it runs or is paused, as Restart does, and
// refuses every start after it.
func (p *Proc) Stop(ctx context.Context) error {
	p.ops.Lock()
	defer p.ops.Unlock()
	p.mu.Lock()
	p.closed = true
	r, was := p.cur, p.state
	if !was.live() {
		p.mu.Unlock()
		return nil
	}
	r.expected = true
	p.state = StateExited
	p.mu.Unlock()
	if err := p.stop(ctx, r, was == StatePaused); err != nil {
		return fmt.Errorf("devctl: stop %s: %w", p.cfg.Name, err)
	}
	return nil
}

// refuse returns the error of op in the current state unless it is one
// of ok ("" standing for never started). p.mu is held.
func (p *Proc) refuse(op string, ok ...State) error {
	if p.closed {
		return fmt.Errorf("devctl: %s %s: %w", op, p.cfg.Name, ErrStopping)
	}
	for _, s := range ok {
		if p.state == s {
			return nil
		}
	}
	return fmt.Errorf("devctl: %s %s: %w: it is %s", op, p.cfg.Name, ErrWrongState, p.state)
}

// send sends sig to r's process. One that has ended meanwhile is no
// error: its waiter reports the end.
func send(r *run, sig syscall.Signal) {
	r.proc.Signal(sig)
}

// await waits up to StopTimeout for r to be reaped.
func (p *Proc) await(ctx context.Context, r *run, op string) error {
	t := time.NewTimer(p.cfg.StopTimeout)
	defer t.Stop()
	select {
	case <-r.done:
		return nil
	case <-t.C:
		return fmt.Errorf("devctl: %s %s (pid %d): still not reaped after %v", op, p.cfg.Name, r.pid, p.cfg.StopTimeout)
	case <-ctx.Done():
		return fmt.Errorf("devctl: %s %s: %w", op, p.cfg.Name, ctx.Err())
	}
}

// stop ends r: SIGTERM (with SIGCONT after it if paused, or the signal
// would wait for a resume), then SIGKILL if it is still there after
// StopTimeout. r.expected is set.
func (p *Proc) stop(ctx context.Context, r *run, paused bool) error {
	send(r, syscall.SIGTERM)
	if paused {
		send(r, syscall.SIGCONT)
	}
	t := time.NewTimer(p.cfg.StopTimeout)
	defer t.Stop()
	select {
	case <-r.done:
		return nil
	case <-ctx.Done():
	case <-t.C:
	}
	p.log.Warn("no exit after SIGTERM; sending SIGKILL", "pid", r.pid, "waited", p.cfg.StopTimeout)
	send(r, syscall.SIGKILL)
	return p.await(context.WithoutCancel(ctx), r, "stop")
}

// start starts a process in state transient until it is ready, trying
// again while its listener's address is still taken: a restart binds the
// ports of the first run, and the kernel may have lent one to an
// outgoing connection meanwhile. ops is held.
func (p *Proc) start(ctx context.Context, transient State) (ready.File, error) {
	ctx, cancel := context.WithTimeout(ctx, p.cfg.ReadyTimeout)
	defer cancel()
	for {
		f, inUse, err := p.startOnce(ctx, transient)
		if !inUse {
			return f, err
		}
		p.log.Info("an address is still in use; trying again", "err", err)
		select {
		case <-ctx.Done():
			return ready.File{}, err
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// startOnce starts one process and waits for its ready file. inUse
// reports that it ended at start because an address was in use.
func (p *Proc) startOnce(ctx context.Context, transient State) (f ready.File, inUse bool, err error) {
	p.mu.Lock()
	prev := p.ready
	p.starts++
	n := p.starts
	p.mu.Unlock()
	args := append(p.cfg.Args(prev), "--ready-file", p.cfg.ReadyFile)
	// A file a killed run left names a pid that is gone; Wait would skip
	// it, but removing it keeps what is on disk truthful.
	if err := os.Remove(p.cfg.ReadyFile); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return ready.File{}, false, p.failStart(err)
	}
	cmd := exec.Command(p.cfg.Path, args...)
	cmd.Env = p.cfg.Env
	cmd.SysProcAttr = sysProcAttr()
	if p.cfg.LogFile != "" {
		out, err := os.OpenFile(p.cfg.LogFile, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
		if err != nil {
			return ready.File{}, false, p.failStart(err)
		}
		// The child writes to the file itself (an *os.File is handed
		// over as is, with no copying goroutine), so its log survives
		// this process; our copy is closed once it has started.
		defer out.Close()
		fmt.Fprintf(out, "==== start %d at %s: %s %s\n", n, time.Now().Format(time.RFC3339), p.cfg.Path, strings.Join(args, " "))
		cmd.Stdout, cmd.Stderr = out, out
	}

	r := &run{done: make(chan struct{}), starting: true}
	p.mu.Lock()
	p.cur, p.state = r, transient
	p.mu.Unlock()
	started := make(chan error, 1)
	go p.spawn(cmd, r, started)
	if err := <-started; err != nil {
		close(r.done)
		return ready.File{}, false, p.failStart(err)
	}

	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-r.done:
			cancel()
		case <-wctx.Done():
		}
	}()
	f, err = ready.Wait(wctx, p.cfg.ReadyFile, r.pid)
	if err == nil {
		p.mu.Lock()
		r.starting = false
		p.state, p.ready = StateRunning, f
		p.mu.Unlock()
		return f, false, nil
	}
	select {
	case <-r.done:
		tail := p.logTail()
		return ready.File{}, strings.Contains(tail, "address already in use"),
			fmt.Errorf("devctl: %s (pid %d) ended at start (%s); log %s ends:\n%s", p.cfg.Name, r.pid, r.exit, p.cfg.LogFile, tail)
	default:
	}
	// Not ready in time: a process nobody knows the addresses of must
	// not linger.
	p.mu.Lock()
	r.expected = true
	p.state = StateExited
	p.mu.Unlock()
	send(r, syscall.SIGKILL)
	<-r.done
	return ready.File{}, false, fmt.Errorf("devctl: start %s (pid %d): %w", p.cfg.Name, r.pid, err)
}

// failStart records a start that failed before a process ran.
func (p *Proc) failStart(err error) error {
	p.mu.Lock()
	p.state, p.exit = StateExited, err.Error()
	p.mu.Unlock()
	return fmt.Errorf("devctl: start %s: %w", p.cfg.Name, err)
}

// spawn starts cmd and waits for it, on one locked OS thread for the
// process's whole life. Pdeathsig is sent when the thread that forked the
// child ends, not when the process does, and a thread ends when a
// goroutine locked to it exits: an unlocked start could run on a thread
// that some other goroutine later locks and ends with, killing the child
// with nobody gone. Holding the thread until the child is reaped leaves
// only the supervisor's own death to send it.
func (p *Proc) spawn(cmd *exec.Cmd, r *run, started chan<- error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if err := cmd.Start(); err != nil {
		started <- err
		return
	}
	p.mu.Lock()
	r.proc, r.pid = cmd.Process, cmd.Process.Pid
	p.mu.Unlock()
	started <- nil
	werr := cmd.Wait()
	exit := werr
	if cmd.ProcessState != nil {
		exit = errors.New(cmd.ProcessState.String())
	}
	p.reaped(r, exit.Error())
}

// reaped records that r's process ended. An end nobody asked for (a
// crash, or a signal from outside) is logged and leaves the process
// exited: nothing restarts it unasked.
func (p *Proc) reaped(r *run, exit string) {
	p.mu.Lock()
	r.exit = exit
	unasked, starting := !r.expected, r.starting
	if p.cur == r {
		p.exit = exit
		if unasked {
			p.state = StateExited
		}
	}
	p.mu.Unlock()
	close(r.done)
	if unasked && !starting {
		p.log.Error("process ended unasked; it stays down until restarted", "pid", r.pid, "exit", exit, "log", p.cfg.LogFile)
	}
}

// logTail is the end of the log since the latest start's header, for
// errors.
func (p *Proc) logTail() string {
	const tailMax = 4 << 10
	f, err := os.Open(p.cfg.LogFile)
	if err != nil {
		return "(no log)"
	}
	defer f.Close()
	if fi, err := f.Stat(); err == nil && fi.Size() > tailMax {
		f.Seek(fi.Size()-tailMax, io.SeekStart)
	}
	b, _ := io.ReadAll(f)
	if i := bytes.LastIndex(b, []byte("==== start ")); i >= 0 {
		if j := bytes.IndexByte(b[i:], '\n'); j >= 0 {
			b = b[i+j+1:]
		}
	}
	return strings.TrimSpace(string(b))
}
