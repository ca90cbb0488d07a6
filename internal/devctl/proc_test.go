package devctl

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/geocdn/geocdn/internal/ready"
)

// helperEnv selects what the test binary does when a Proc runs it as its
// child: a stand-in for a geocdn node that takes --ready-file.
const helperEnv = "DEVCTL_TEST_HELPER"

func TestMain(m *testing.M) {
	if mode := os.Getenv(helperEnv); mode != "" {
		os.Exit(helper(mode))
	}
	os.Exit(m.Run())
}

// helper is the child's main. Modes:
//
//	serve     write the ready file, exit 0 on SIGTERM (removing it)
//	fail      print an error and exit 3 without a ready file
//	crash     serve until FILE.crash appears, then exit 2
//	stubborn  serve, ignoring SIGTERM
//	silent    never write the ready file
//	inuse     fail as a taken address would the first two times
//	          (counted in FILE.tries), then serve
func helper(mode string) int {
	var path string
	for i, a := range os.Args {
		if a == "--ready-file" && i+1 < len(os.Args) {
			path = os.Args[i+1]
		}
	}
	term := make(chan os.Signal, 1)
	signal.Notify(term, syscall.SIGTERM)
	switch mode {
	case "fail":
		fmt.Println("listen tcp 127.0.0.1:1: bind: permission denied")
		return 3
	case "silent":
		<-term
		return 0
	case "stubborn":
		signal.Ignore(syscall.SIGTERM)
	case "inuse":
		b, _ := os.ReadFile(path + ".tries")
		n, _ := strconv.Atoi(string(b))
		if n < 2 {
			os.WriteFile(path+".tries", []byte(strconv.Itoa(n+1)), 0o644)
			fmt.Println("listen tcp 127.0.0.1:8081: bind: address already in use")
			return 1
		}
	}
	f := ready.File{Role: "helper", PID: os.Getpid(), HTTP: "127.0.0.1:1"}
	if err := ready.Write(path, f); err != nil {
		fmt.Println(err)
		return 1
	}
	if mode == "crash" {
		for {
			if _, err := os.Stat(path + ".crash"); err == nil {
				return 2
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	<-term
	ready.Remove(path, f.PID)
	return 0
}

// logBuffer collects a Proc's log lines; safe for concurrent use.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

type testProc struct {
	*Proc
	dir     string
	logs    *logBuffer
	readyAt string
}

// newTestProc supervises the test binary in helper mode. Whatever runs
// when the test ends is stopped.
func newTestProc(t *testing.T, mode string, tweak func(*ProcConfig)) *testProc {
	t.Helper()
	dir := t.TempDir()
	logs := &logBuffer{}
	cfg := ProcConfig{
		Name: "helper-" + mode, Path: os.Args[0],
		Args: func(ready.File) []string { return []string{"-test.run=^$"} },
		// A race-enabled child would wait a second at exit for late
		// reports; every stop would pay it.
		Env:       append(os.Environ(), helperEnv+"="+mode, "GORACE=atexit_sleep_ms=0"),
		ReadyFile: filepath.Join(dir, "ready.json"),
		LogFile:   filepath.Join(dir, "out.log"),
		Logger:    slog.New(slog.NewTextHandler(logs, nil)),
	}
	if tweak != nil {
		tweak(&cfg)
	}
	p, err := NewProc(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := p.Stop(context.Background()); err != nil {
			t.Errorf("stop: %v", err)
		}
		if t.Failed() {
			b, _ := os.ReadFile(cfg.LogFile)
			t.Logf("---- child output ----\n%s\n---- supervisor log ----\n%s", b, logs.String())
		}
	})
	return &testProc{Proc: p, dir: dir, logs: logs, readyAt: cfg.ReadyFile}
}

// alive reports whether pid names a process that has not ended (a
// zombie has).
func alive(pid int) bool {
	if syscall.Kill(pid, 0) != nil {
		return false
	}
	if runtime.GOOS != "linux" {
		return true
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	i := bytes.LastIndexByte(b, ')')
	return i < 0 || i+2 >= len(b) || b[i+2] != 'Z'
}

// waitState polls p's status until cond holds; the deadline only guards
// a hang.
func waitState(t *testing.T, p *Proc, what string, cond func(ProcStatus) bool) ProcStatus {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		st := p.Status()
		if cond(st) {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s; status %+v", what, st)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func checkStatus(t *testing.T, p *Proc, state State, restarts int) ProcStatus {
	t.Helper()
	st := p.Status()
	if st.State != state || st.Restarts != restarts {
		t.Fatalf("status %+v, want state %s and %d restarts", st, state, restarts)
	}
	return st
}

func TestProcLifecycle(t *testing.T) {
	p := newTestProc(t, "serve", nil)
	ctx := context.Background()
	f, err := p.Start(ctx)
	if err != nil {
		t.Fatal(err)
	}
	st := checkStatus(t, p.Proc, StateRunning, 0)
	if f.PID != st.PID || st.Ready.PID != f.PID || !alive(f.PID) || f.PID == os.Getpid() {
		t.Fatalf("started: ready file %+v, status %+v, want the same live child pid", f, st)
	}
	pid := f.PID
	if _, err := p.Start(ctx); !errors.Is(err, ErrWrongState) {
		t.Errorf("second start: got %v, want %v", err, ErrWrongState)
	}

	if err := p.Pause(ctx); err != nil {
		t.Fatal(err)
	}
	checkStatus(t, p.Proc, StatePaused, 0)
	if stopped, err := processStopped(pid); !stopped {
		t.Errorf("after Pause: process not stopped (%v)", err)
	}
	if err := p.Pause(ctx); !errors.Is(err, ErrWrongState) {
		t.Errorf("pause a paused process: got %v, want %v", err, ErrWrongState)
	}
	if err := p.Resume(ctx); err != nil {
		t.Fatal(err)
	}
	checkStatus(t, p.Proc, StateRunning, 0)
	if stopped, _ := processStopped(pid); stopped && runtime.GOOS == "linux" {
		t.Errorf("after Resume: process still stopped")
	}
	if err := p.Resume(ctx); !errors.Is(err, ErrWrongState) {
		t.Errorf("resume a running process: got %v, want %v", err, ErrWrongState)
	}

	// Restart of a running process: SIGTERM, a clean exit, a new process.
	f, err = p.Restart(ctx)
	if err != nil {
		t.Fatal(err)
	}
	st = checkStatus(t, p.Proc, StateRunning, 1)
	if f.PID == pid || st.PID != f.PID || alive(pid) || !alive(f.PID) {
		t.Fatalf("restart: new pid %d (status %d), old %d alive %v, want a new live process and the old one gone", f.PID, st.PID, pid, alive(pid))
	}
	if st.Exit != "exit status 0" {
		t.Errorf("exit of the restarted process: %q, want exit status 0 (SIGTERM handled)", st.Exit)
	}
	pid = f.PID

	if err := p.Kill(ctx); err != nil {
		t.Fatal(err)
	}
	st = checkStatus(t, p.Proc, StateKilled, 1)
	if alive(pid) || st.PID != pid || st.Exit != "signal: killed" {
		t.Errorf("after Kill: alive %v, status %+v, want pid %d gone by signal: killed", alive(pid), st, pid)
	}
	for name, err := range map[string]error{
		"kill a killed process":   p.Kill(ctx),
		"pause a killed process":  p.Pause(ctx),
		"resume a killed process": p.Resume(ctx),
	} {
		if !errors.Is(err, ErrWrongState) {
			t.Errorf("%s: got %v, want %v", name, err, ErrWrongState)
		}
	}
	if _, err := p.Start(ctx); err != nil {
		t.Errorf("start after kill: %v", err)
	}
	checkStatus(t, p.Proc, StateRunning, 1)

	// Restart of a paused process: SIGTERM waits for a SIGCONT.
	pid = p.Status().PID
	if err := p.Pause(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	st = checkStatus(t, p.Proc, StateRunning, 2)
	if alive(pid) || st.Exit != "exit status 0" {
		t.Errorf("restart of a paused process: old pid %d alive %v, exit %q, want it gone with exit status 0", pid, alive(pid), st.Exit)
	}
	pid = st.PID

	if err := p.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	checkStatus(t, p.Proc, StateExited, 2)
	if alive(pid) {
		t.Errorf("after Stop: pid %d alive", pid)
	}
	if _, err := os.Stat(p.readyAt); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("ready file after a clean stop: %v, want it removed by the child", err)
	}
	if _, err := p.Restart(ctx); !errors.Is(err, ErrStopping) {
		t.Errorf("restart after stop: got %v, want %v", err, ErrStopping)
	}
	if _, err := p.Start(ctx); !errors.Is(err, ErrStopping) {
		t.Errorf("start after stop: got %v, want %v", err, ErrStopping)
	}
	if s := p.logs.String(); strings.Contains(s, "unasked") {
		t.Errorf("supervisor logged an unasked end, but every end was asked for:\n%s", s)
	}
	log, _ := os.ReadFile(filepath.Join(p.dir, "out.log"))
	if n := strings.Count(string(log), "==== start "); n != 4 {
		t.Errorf("log has %d start headers, want 4 (start, restart, start, restart)", n)
	}
}

func TestProcEndsAtStart(t *testing.T) {
	p := newTestProc(t, "fail", nil)
	_, err := p.Start(context.Background())
	if err == nil || !strings.Contains(err.Error(), "permission denied") {
		t.Fatalf("start: got %v, want an error quoting the child's output", err)
	}
	st := checkStatus(t, p.Proc, StateExited, 0)
	if st.Exit != "exit status 3" {
		t.Errorf("exit: %q, want exit status 3", st.Exit)
	}
	if strings.Contains(p.logs.String(), "unasked") {
		t.Errorf("a failed start was also logged as an unasked end:\n%s", p.logs.String())
	}
}

func TestProcNoticesUnaskedEnd(t *testing.T) {
	p := newTestProc(t, "crash", nil)
	if _, err := p.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p.readyAt+".crash", nil, 0o644); err != nil {
		t.Fatal(err)
	}
	st := waitState(t, p.Proc, "the crash noticed", func(st ProcStatus) bool { return st.State == StateExited })
	if st.Exit != "exit status 2" || st.Restarts != 0 {
		t.Errorf("status %+v, want exit status 2 and no restart", st)
	}
	if !strings.Contains(p.logs.String(), "ended unasked") {
		t.Errorf("supervisor log %q, want the unasked end reported", p.logs.String())
	}
	// Nothing restarts it.
	if err := p.Kill(context.Background()); !errors.Is(err, ErrWrongState) {
		t.Errorf("kill an exited process: got %v, want %v", err, ErrWrongState)
	}
	if st := p.Status(); st.State != StateExited {
		t.Errorf("state %s, want it to stay exited", st.State)
	}
}

func TestProcStopSendsKillAfterTimeout(t *testing.T) {
	p := newTestProc(t, "stubborn", func(c *ProcConfig) { c.StopTimeout = 200 * time.Millisecond })
	f, err := p.Start(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Restart(context.Background()); err != nil {
		t.Fatal(err)
	}
	st := checkStatus(t, p.Proc, StateRunning, 1)
	if alive(f.PID) || st.Exit != "signal: killed" {
		t.Errorf("old pid %d alive %v, exit %q, want it killed after ignoring SIGTERM", f.PID, alive(f.PID), st.Exit)
	}
}

func TestProcReadyTimeoutKills(t *testing.T) {
	p := newTestProc(t, "silent", func(c *ProcConfig) { c.ReadyTimeout = 300 * time.Millisecond })
	if _, err := p.Start(context.Background()); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("start: got %v, want a timeout", err)
	}
	st := checkStatus(t, p.Proc, StateExited, 0)
	if st.PID == 0 || alive(st.PID) {
		t.Errorf("pid %d alive %v, want the silent child killed", st.PID, alive(st.PID))
	}
}

func TestProcRetriesAddressInUse(t *testing.T) {
	p := newTestProc(t, "inuse", nil)
	if _, err := p.Start(context.Background()); err != nil {
		t.Fatalf("start: %v, want it to succeed on the third try", err)
	}
	checkStatus(t, p.Proc, StateRunning, 0)
	b, _ := os.ReadFile(p.readyAt + ".tries")
	if string(b) != "2" {
		t.Errorf("failed tries: %q, want 2", b)
	}
}

func TestNewProcValidates(t *testing.T) {
	args := func(ready.File) []string { return nil }
	for _, tc := range []struct {
		name string
		cfg  ProcConfig
	}{
		{"no name", ProcConfig{Path: "x", Args: args, ReadyFile: "r"}},
		{"no path", ProcConfig{Name: "n", Args: args, ReadyFile: "r"}},
		{"no args", ProcConfig{Name: "n", Path: "x", ReadyFile: "r"}},
		{"no ready file", ProcConfig{Name: "n", Path: "x", Args: args}},
		{"negative timeout", ProcConfig{Name: "n", Path: "x", Args: args, ReadyFile: "r", StopTimeout: -1}},
	} {
		if _, err := NewProc(tc.cfg); err == nil {
			t.Errorf("%s: got no error", tc.name)
		}
	}
}
