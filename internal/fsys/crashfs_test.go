package fsys

import (
	"errors"
	"io"
	"io/fs"
	"os"
	"sync"
	"testing"
)

// writeFile creates name with data; syncData and syncDir choose which of
// the two durability steps to take.
func writeFile(t *testing.T, fsys FS, name, data string, syncData, syncDir bool) {
	t.Helper()
	f, err := fsys.OpenFile(name, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.WriteString(f, data); err != nil {
		t.Fatal(err)
	}
	if syncData {
		if err := f.Sync(); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if syncDir {
		if err := fsys.SyncDir(dirOf(name)); err != nil {
			t.Fatal(err)
		}
	}
}

func dirOf(name string) string {
	parts := split(name)
	if len(parts) <= 1 {
		return "/"
	}
	dir := ""
	for _, p := range parts[:len(parts)-1] {
		dir += "/" + p
	}
	return dir
}

// content returns the file's content, or ok=false if it does not exist.
func content(t *testing.T, fsys FS, name string) (data string, ok bool) {
	t.Helper()
	f, err := fsys.OpenFile(name, os.O_RDONLY, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return "", false
	}
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b, err := io.ReadAll(f)
	if err != nil {
		t.Fatal(err)
	}
	return string(b), true
}

func wantContent(t *testing.T, fsys FS, name, want string) {
	t.Helper()
	got, ok := content(t, fsys, name)
	if !ok {
		t.Fatalf("%s: missing, want %q", name, want)
	}
	if got != want {
		t.Fatalf("%s: got %q, want %q", name, got, want)
	}
}

func wantMissing(t *testing.T, fsys FS, name string) {
	t.Helper()
	if got, ok := content(t, fsys, name); ok {
		t.Fatalf("%s: exists with %q, want missing", name, got)
	}
}

func TestCrashUnsyncedWriteLost(t *testing.T) {
	c := NewCrashFS()
	writeFile(t, c, "/a", "hello", false, true)
	wantContent(t, c, "/a", "hello")
	c.Crash()
	wantContent(t, c, "/a", "")
}

func TestCrashSyncedWriteKept(t *testing.T) {
	c := NewCrashFS()
	writeFile(t, c, "/a", "hello", true, true)
	c.Crash()
	wantContent(t, c, "/a", "hello")
}

func TestCrashKeepsLastSyncedVersion(t *testing.T) {
	c := NewCrashFS()
	writeFile(t, c, "/a", "one", true, true)
	f, err := c.OpenFile("/a", os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.WriteString(f, "two"); err != nil {
		t.Fatal(err)
	}
	c.Crash()
	wantContent(t, c, "/a", "one")
}

func TestCrashCreateWithoutSyncDirLost(t *testing.T) {
	c := NewCrashFS()
	// Syncing the file makes its data durable but not its name.
	writeFile(t, c, "/a", "hello", true, false)
	c.Crash()
	wantMissing(t, c, "/a")
}

func TestCrashMkdirNeedsParentSync(t *testing.T) {
	c := NewCrashFS()
	if err := c.MkdirAll("/d/e", 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, c, "/d/e/f", "x", true, true)
	c.Crash()
	if _, err := c.Stat("/d"); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("stat /d after crash: got %v, want not exist", err)
	}

	if err := c.MkdirAll("/d/e", 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, c, "/d/e/f", "x", true, true)
	for _, dir := range []string{"/d", "/"} {
		if err := c.SyncDir(dir); err != nil {
			t.Fatal(err)
		}
	}
	c.Crash()
	wantContent(t, c, "/d/e/f", "x")
}

func TestCrashRename(t *testing.T) {
	for _, synced := range []bool{false, true} {
		c := NewCrashFS()
		writeFile(t, c, "/old", "data", true, true)
		if err := c.Rename("/old", "/new"); err != nil {
			t.Fatal(err)
		}
		if synced {
			if err := c.SyncDir("/"); err != nil {
				t.Fatal(err)
			}
		}
		c.Crash()
		if synced {
			wantContent(t, c, "/new", "data")
			wantMissing(t, c, "/old")
		} else {
			wantContent(t, c, "/old", "data")
			wantMissing(t, c, "/new")
		}
	}
}

func TestCrashRenameOverExisting(t *testing.T) {
	c := NewCrashFS()
	writeFile(t, c, "/b", "old", true, true)
	writeFile(t, c, "/a", "new", true, false)
	if err := c.Rename("/a", "/b"); err != nil {
		t.Fatal(err)
	}
	wantContent(t, c, "/b", "new")
	c.Crash()
	wantContent(t, c, "/b", "old")
	wantMissing(t, c, "/a")
}

func TestCrashRenameAcrossDirectories(t *testing.T) {
	c := NewCrashFS()
	for _, d := range []string{"/src", "/dst"} {
		if err := c.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.SyncDir("/"); err != nil {
		t.Fatal(err)
	}
	writeFile(t, c, "/src/f", "data", true, true)
	if err := c.Rename("/src/f", "/dst/f"); err != nil {
		t.Fatal(err)
	}
	// Only the target directory is synced: the source still holds the
	// old name after a crash, so the file shows under both names.
	if err := c.SyncDir("/dst"); err != nil {
		t.Fatal(err)
	}
	c.Crash()
	wantContent(t, c, "/src/f", "data")
	wantContent(t, c, "/dst/f", "data")
}

func TestCrashRemove(t *testing.T) {
	for _, synced := range []bool{false, true} {
		c := NewCrashFS()
		writeFile(t, c, "/a", "data", true, true)
		if err := c.Remove("/a"); err != nil {
			t.Fatal(err)
		}
		wantMissing(t, c, "/a")
		if synced {
			if err := c.SyncDir("/"); err != nil {
				t.Fatal(err)
			}
		}
		c.Crash()
		if synced {
			wantMissing(t, c, "/a")
		} else {
			wantContent(t, c, "/a", "data")
		}
	}
}

func TestCrashInvalidatesHandles(t *testing.T) {
	c := NewCrashFS()
	f, err := c.OpenFile("/a", os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	c.Crash()
	if _, err := f.Write([]byte("x")); !errors.Is(err, ErrCrashed) {
		t.Fatalf("write after crash: got %v, want ErrCrashed", err)
	}
	if _, err := f.Read(make([]byte, 1)); !errors.Is(err, ErrCrashed) {
		t.Fatalf("read after crash: got %v, want ErrCrashed", err)
	}
	if err := f.Sync(); !errors.Is(err, ErrCrashed) {
		t.Fatalf("sync after crash: got %v, want ErrCrashed", err)
	}
	// The machine rebooted: the CrashFS itself works again.
	writeFile(t, c, "/b", "ok", true, true)
	wantContent(t, c, "/b", "ok")
}

func TestBootViewFencedByCrash(t *testing.T) {
	c := NewCrashFS()
	v := c.Boot()
	writeFile(t, v, "/a", "data", true, true)
	c.Crash()
	if err := v.Rename("/a", "/b"); !errors.Is(err, ErrCrashed) {
		t.Fatalf("rename through old boot: got %v, want ErrCrashed", err)
	}
	if _, err := v.Stat("/a"); !errors.Is(err, ErrCrashed) {
		t.Fatalf("stat through old boot: got %v, want ErrCrashed", err)
	}
	wantContent(t, c.Boot(), "/a", "data")
}

func TestCrashFSConcurrent(t *testing.T) {
	c := NewCrashFS()
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			name := "/f" + string(rune('a'+i))
			for range 50 {
				f, err := c.OpenFile(name, os.O_CREATE|os.O_RDWR, 0o644)
				if err != nil {
					t.Error(err)
					return
				}
				// A concurrent Crash may invalidate the handle at any point.
				if _, err := f.Write([]byte(name)); err != nil && !errors.Is(err, ErrCrashed) {
					t.Error(err)
				}
				if err := f.Sync(); err != nil && !errors.Is(err, ErrCrashed) {
					t.Error(err)
				}
				f.Close()
				if err := c.SyncDir("/"); err != nil {
					t.Error(err)
				}
				if _, err := c.ReadDir("/"); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Go(func() {
		for range 10 {
			c.Crash()
		}
	})
	wg.Wait()
}

// TestFSBasics runs the same operations against the real filesystem and
// CrashFS, so the fake stays faithful to what callers see from OS.
func TestFSBasics(t *testing.T) {
	for _, tc := range []struct {
		name string
		fsys FS
		root string
	}{
		{"os", OS(), t.TempDir()},
		{"crash", NewCrashFS(), "/root"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fsys, root := tc.fsys, tc.root
			p := func(s string) string { return root + "/" + s }
			if err := fsys.MkdirAll(p("d/e"), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := fsys.MkdirAll(p("d/e"), 0o755); err != nil {
				t.Fatalf("MkdirAll of an existing dir: %v", err)
			}
			f, err := fsys.OpenFile(p("d/e/f"), os.O_CREATE|os.O_EXCL|os.O_RDWR, 0o644)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := io.WriteString(f, "hello world"); err != nil {
				t.Fatal(err)
			}
			buf := make([]byte, 5)
			if n, err := f.ReadAt(buf, 6); err != nil || string(buf[:n]) != "world" {
				t.Fatalf("ReadAt: got %q, %v; want %q", buf[:n], err, "world")
			}
			if n, err := f.ReadAt(buf, 8); !errors.Is(err, io.EOF) || n != 3 {
				t.Fatalf("ReadAt past end: got %d, %v; want 3, EOF", n, err)
			}
			if _, err := f.Seek(0, io.SeekStart); err != nil {
				t.Fatal(err)
			}
			if b, err := io.ReadAll(f); err != nil || string(b) != "hello world" {
				t.Fatalf("ReadAll: got %q, %v", b, err)
			}
			if err := f.Sync(); err != nil {
				t.Fatal(err)
			}
			if fi, err := f.Stat(); err != nil || fi.Size() != 11 || fi.Name() != "f" || fi.IsDir() {
				t.Fatalf("Stat: got %+v, %v", fi, err)
			}
			if f.Name() != p("d/e/f") {
				t.Fatalf("Name: got %q, want %q", f.Name(), p("d/e/f"))
			}
			if err := f.Close(); err != nil {
				t.Fatal(err)
			}
			if _, err := fsys.OpenFile(p("d/e/f"), os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644); !errors.Is(err, fs.ErrExist) {
				t.Fatalf("O_EXCL on existing file: got %v, want ErrExist", err)
			}
			if _, err := fsys.OpenFile(p("d/nope/f"), os.O_CREATE|os.O_WRONLY, 0o644); !errors.Is(err, fs.ErrNotExist) {
				t.Fatalf("create in missing dir: got %v, want ErrNotExist", err)
			}
			writeFile(t, fsys, p("d/e/a"), "A", true, false)
			if err := fsys.SyncDir(p("d/e")); err != nil {
				t.Fatal(err)
			}
			ents, err := fsys.ReadDir(p("d/e"))
			if err != nil {
				t.Fatal(err)
			}
			if len(ents) != 2 || ents[0].Name() != "a" || ents[1].Name() != "f" {
				t.Fatalf("ReadDir: got %v, want [a f]", ents)
			}
			if err := fsys.Rename(p("d/e/a"), p("d/e/f")); err != nil {
				t.Fatal(err)
			}
			wantContent(t, fsys, p("d/e/f"), "A")
			if _, err := fsys.Stat(p("d/e/a")); !errors.Is(err, fs.ErrNotExist) {
				t.Fatalf("Stat of renamed-away name: got %v, want ErrNotExist", err)
			}
			if err := fsys.Remove(p("d/e")); err == nil {
				t.Fatal("Remove of a non-empty dir succeeded")
			}
			// An open handle outlives the removal of its name.
			g, err := fsys.OpenFile(p("d/e/f"), os.O_RDONLY, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer g.Close()
			if err := fsys.Remove(p("d/e/f")); err != nil {
				t.Fatal(err)
			}
			if b, err := io.ReadAll(g); err != nil || string(b) != "A" {
				t.Fatalf("read of removed file: got %q, %v", b, err)
			}
			if err := fsys.Remove(p("d/e/f")); !errors.Is(err, fs.ErrNotExist) {
				t.Fatalf("second Remove: got %v, want ErrNotExist", err)
			}
			if fi, err := fsys.Stat(p("d")); err != nil || !fi.IsDir() {
				t.Fatalf("Stat dir: got %v, %v", fi, err)
			}
		})
	}
}

func TestOSReturnsOSFile(t *testing.T) {
	f, err := OS().OpenFile(t.TempDir()+"/x", os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, ok := f.(*os.File); !ok {
		t.Fatalf("OS().OpenFile returned %T, want *os.File", f)
	}
	if _, err := OS().OpenFile(t.TempDir()+"/missing", os.O_RDONLY, 0); err == nil {
		t.Fatal("open of a missing file succeeded")
	}
}
