package origin

import (
	"context"
	"io"
	"io/fs"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/geocdn/geocdn/internal/fsys"
	"github.com/geocdn/geocdn/internal/pki"
	"github.com/geocdn/geocdn/internal/wire"
)

// openHookFS is the real filesystem with a hook run once, before the
// first read-only open of one file.
type openHookFS struct {
	fsys.FS
	mu   sync.Mutex
	path string
	hook func()
}

func (h *openHookFS) OpenFile(name string, flag int, perm fs.FileMode) (fsys.File, error) {
	h.mu.Lock()
	var hook func()
	if name == h.path && flag == os.O_RDONLY {
		hook, h.hook = h.hook, nil
	}
	h.mu.Unlock()
	if hook != nil {
		hook()
	}
	return h.FS.OpenFile(name, flag, perm)
}

// rawFill asks to's data connection, as an edge would, for the current
// version of ns/key, and returns the answer and its body.
func rawFill(t *testing.T, to *testOrigin, ns, key string) (wire.FillResponse, []byte) {
	t.Helper()
	c := newRawClient(t, to)
	conn := c.mustDial(t, to.issue(t, pki.RoleEdge, "raw"))
	if _, f, err := exchange(t, conn, wire.AppendFrame(nil, hello(wire.ConnData, "raw")), false); err != nil {
		t.Fatalf("hello: %v", err)
	} else if _, ok := f.(wire.Welcome); !ok {
		t.Fatalf("hello answered with %T %+v, want a welcome", f, f)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	st, err := conn.OpenStreamSync(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer st.CancelRead(0)
	st.SetDeadline(time.Now().Add(20 * time.Second))
	if err := wire.WriteFrame(st, wire.FillRequest{Namespace: ns, Key: key}); err != nil {
		t.Fatal(err)
	}
	st.Close()
	f, err := wire.ReadFrame(st)
	if err != nil {
		t.Fatal(err)
	}
	resp, ok := f.(wire.FillResponse)
	if !ok {
		t.Fatalf("fill answered with %T %+v", f, f)
	}
	body, err := io.ReadAll(st)
	if err != nil {
		t.Fatal(err)
	}
	return resp, body
}

// TestFillWhileTheVersionIsReplaced puts a commit of the key between a
// fill's catalog read and its open of the blob: the commit collects the
// blob, and the fill must answer the new version, not "not found". The
// real-process histories saw an edge answer 404 for a key that existed
// when this happened.
func TestFillWhileTheVersionIsReplaced(t *testing.T) {
	hfs := &openHookFS{FS: fsys.OS()}
	to := startTestOrigin(t, func(c *Config) { c.FS = hfs })
	o := to.Origin
	const ns, key = "default", "replaced"
	put := func(body string) wire.LogEntry {
		t.Helper()
		ent, err := o.store.put(context.Background(), ns, key, strings.NewReader(body), 1<<20, PutMeta{ModTime: time.Now()})
		if err != nil {
			t.Fatal(err)
		}
		return ent
	}
	v1 := put("first")
	hfs.mu.Lock()
	hfs.path = o.store.blobPath(v1.Digest)
	hfs.hook = func() { put("second") }
	hfs.mu.Unlock()

	resp, body := rawFill(t, to, ns, key)
	if resp.Status != wire.FillOK {
		t.Fatalf("fill with the version replaced under it: %+v, want the new version", resp)
	}
	if string(body) != "second" {
		t.Errorf("fill answered %q, want %q", body, "second")
	}
	hfs.mu.Lock()
	defer hfs.mu.Unlock()
	if hfs.hook != nil {
		t.Error("the fill never opened the first version's blob: the test did not put the commit where it meant to")
	}
}

// TestAdminGetWhileTheVersionIsReplaced is the same race on the admin
// API's GET, which answered 500.
func TestAdminGetWhileTheVersionIsReplaced(t *testing.T) {
	hfs := &openHookFS{FS: fsys.OS()}
	to := startTestOrigin(t, func(c *Config) { c.FS = hfs })
	o := to.Origin
	v1, err := o.store.put(context.Background(), "default", "replaced", strings.NewReader("first"), 1<<20, PutMeta{ModTime: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	hfs.mu.Lock()
	hfs.path = o.store.blobPath(v1.Digest)
	hfs.hook = func() {
		if _, err := o.store.put(context.Background(), "default", "replaced", strings.NewReader("second"), 1<<20, PutMeta{ModTime: time.Now()}); err != nil {
			t.Error(err)
		}
	}
	hfs.mu.Unlock()
	code, body := rawRequest(t, to.HTTPAddr().String(), "GET", "/v1/objects/replaced", map[string]string{"Authorization": "Bearer " + to.token}, "")
	if code != 200 || body != "second" {
		t.Errorf("GET with the version replaced under it: %d %q, want 200 %q", code, body, "second")
	}
}
