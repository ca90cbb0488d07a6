package ready

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"sync"
	"testing"
)

func devFile(pid int) File {
	return File{
		Role: "dev", PID: pid, TokenFile: "/tmp/dev/token",
		Origin: &File{Role: "origin", ID: "origin-1", PID: pid, HTTP: "127.0.0.1:8080", QUIC: "127.0.0.1:8080"},
		Router: &File{Role: "router", PID: pid, HTTP: "127.0.0.1:8180"},
		Edges: []File{
			{Role: "edge", ID: "iad", PID: pid, HTTP: "127.0.0.1:8081", Admin: "127.0.0.1:9081", QUIC: "127.0.0.1:41234"},
			{Role: "edge", ID: "lhr", PID: pid, HTTP: "[::1]:8083", QUIC: "[::1]:41236"},
		},
	}
}

func TestWriteReadRoundTrip(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name string
		f    File
	}{
		{"origin", File{Role: "origin", ID: "origin-1", PID: 42, HTTP: "127.0.0.1:34567", QUIC: "127.0.0.1:45678"}},
		{"edge without admin", File{Role: "edge", ID: "lhr", PID: 43, HTTP: "127.0.0.1:1", QUIC: "127.0.0.1:2"}},
		{"router", File{Role: "router", PID: 44, HTTP: "[::1]:8180"}},
		{"dev", devFile(45)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(dir, tc.name+".json")
			if err := Write(path, tc.f); err != nil {
				t.Fatal(err)
			}
			got, err := Read(path)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.f) {
				t.Errorf("Read after Write:\n got %+v\nwant %+v", got, tc.f)
			}
			fi, err := os.Stat(path)
			if err != nil {
				t.Fatal(err)
			}
			if got, want := fi.Mode().Perm(), fs.FileMode(0o644); got != want {
				t.Errorf("mode %v, want %v", got, want)
			}
		})
	}
	// Nothing but the ready files themselves is left in the directory.
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := len(ents), 4; got != want {
		t.Errorf("%d files in the directory, want %d: %v", got, want, ents)
	}
}

// TestWriteIsAtomic: readers racing a writer that keeps replacing the file
// see one whole version or the other, never a torn or empty one.
func TestWriteIsAtomic(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ready.json")
	a, b := devFile(1), devFile(2)
	b.Edges = append(b.Edges, b.Edges...) // a different length too
	if err := Write(path, a); err != nil {
		t.Fatal(err)
	}
	const writes = 200
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				got, err := Read(path)
				if err != nil {
					t.Errorf("Read during writes: %v", err)
					return
				}
				if !reflect.DeepEqual(got, a) && !reflect.DeepEqual(got, b) {
					t.Errorf("Read during writes: %+v, want one of the two written", got)
					return
				}
			}
		}()
	}
	for i := range writes {
		f := a
		if i%2 == 0 {
			f = b
		}
		if err := Write(path, f); err != nil {
			t.Fatal(err)
		}
	}
	close(stop)
	wg.Wait()
}

func TestReadMissingAndBroken(t *testing.T) {
	dir := t.TempDir()
	if _, err := Read(filepath.Join(dir, "none.json")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Read of a missing file: %v, want fs.ErrNotExist", err)
	}
	broken := filepath.Join(dir, "broken.json")
	if err := os.WriteFile(broken, []byte(`{"role":`), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Read(broken); err == nil {
		t.Errorf("Read of broken JSON succeeded, want an error")
	}
}

// TestWaitSkipsAnotherProcesssFile: a file a killed process left behind is
// not taken for the new process's.
func TestWaitSkipsAnotherProcesssFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ready.json")
	stale := File{Role: "edge", ID: "lhr", PID: 100, HTTP: "127.0.0.1:1"}
	if err := Write(path, stale); err != nil {
		t.Fatal(err)
	}
	// The stale file alone never satisfies Wait.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Wait(ctx, path, 101); !errors.Is(err, context.Canceled) {
		t.Fatalf("Wait for pid 101 with only pid 100's file: %v, want context.Canceled", err)
	}
	if got, err := Wait(context.Background(), path, 0); err != nil || !reflect.DeepEqual(got, stale) {
		t.Fatalf("Wait for any pid: %+v, %v; want %+v", got, err, stale)
	}

	want := File{Role: "edge", ID: "lhr", PID: 101, HTTP: "127.0.0.1:2"}
	type result struct {
		f   File
		err error
	}
	done := make(chan result, 1)
	go func() {
		f, err := Wait(context.Background(), path, 101)
		done <- result{f, err}
	}()
	if err := Write(path, want); err != nil {
		t.Fatal(err)
	}
	if r := <-done; r.err != nil || !reflect.DeepEqual(r.f, want) {
		t.Fatalf("Wait for pid 101: %+v, %v; want %+v", r.f, r.err, want)
	}
}

func TestWaitForAFileNotYetWritten(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ready.json")
	want := File{Role: "router", PID: 7, HTTP: "127.0.0.1:3"}
	done := make(chan File, 1)
	go func() {
		f, err := Wait(context.Background(), path, 7)
		if err != nil {
			t.Error(err)
		}
		done <- f
	}()
	if err := Write(path, want); err != nil {
		t.Fatal(err)
	}
	if got := <-done; !reflect.DeepEqual(got, want) {
		t.Fatalf("Wait: %+v, want %+v", got, want)
	}
}

func TestRemoveOnlyItsOwn(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ready.json")
	if err := Write(path, File{Role: "origin", PID: 5}); err != nil {
		t.Fatal(err)
	}
	if err := Remove(path, 4); err != nil {
		t.Fatal(err)
	}
	if _, err := Read(path); err != nil {
		t.Fatalf("Remove by another pid deleted the file: %v", err)
	}
	if err := Remove(path, 5); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("after Remove by its writer: %v, want the file gone", err)
	}
	if err := Remove(path, 5); err != nil {
		t.Errorf("Remove of a missing file: %v, want nil", err)
	}
}

// TestServe: the file is there, stamped with this pid, while run runs, and
// gone when it returns; run's error is passed through.
func TestServe(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ready.json")
	runErr := errors.New("run failed")
	running := make(chan struct{})
	release := make(chan struct{})
	errc := make(chan error, 1)
	go func() {
		errc <- Serve(context.Background(), path, File{Role: "router", HTTP: "127.0.0.1:9"}, func(context.Context) error {
			close(running)
			<-release
			return runErr
		})
	}()
	<-running
	got, err := Wait(context.Background(), path, os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if want := (File{Role: "router", PID: os.Getpid(), HTTP: "127.0.0.1:9"}); !reflect.DeepEqual(got, want) {
		t.Errorf("ready file while serving: %+v, want %+v", got, want)
	}
	close(release)
	if err := <-errc; !errors.Is(err, runErr) {
		t.Errorf("Serve: %v, want run's error", err)
	}
	if _, err := os.Stat(path); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("after run returned: %v, want the file gone", err)
	}

	// A file that cannot be written stops run and is the error.
	bad := filepath.Join(t.TempDir(), "missing-dir", "ready.json")
	err = Serve(context.Background(), bad, File{Role: "router"}, func(ctx context.Context) error {
		<-ctx.Done()
		return nil
	})
	if err == nil {
		t.Errorf("Serve into a missing directory: nil error, want one")
	}
}
