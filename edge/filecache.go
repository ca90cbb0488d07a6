package edge

import (
	"container/list"
	"os"
	"sync"
	"syscall"

	"github.com/geocdn/geocdn/internal/wire"
)

// fileCache keeps the blob files the fast path sends open, as nginx's
// open_file_cache does: opening and closing a file costs more than sending
// a 64 KiB one by sendfile from the page cache. The fast path reads a
// shared file only through sendfile at an explicit offset, which never
// moves the file's own offset, so one open file serves any number of
// concurrent requests. Files are reference-counted: one evicted from the
// cache, or whose blob is removed, closes when its last reader is done.
type fileCache struct {
	max int
	// path names a blob's file; called only when the file is not cached.
	path  func(wire.Digest) string
	mu    sync.Mutex
	files map[wire.Digest]*sharedFile
	lru   list.List // of *sharedFile, most recently used first
	// forgets counts forget calls: a file opened while one ran may belong
	// to a blob just removed, and is then not cached (it would keep an
	// unlinked file's space in use).
	forgets uint64
}

// sharedFile is an open blob file. refs counts the cache's own reference
// (while cached) and each reader's; guarded by fileCache.mu.
type sharedFile struct {
	c    *fileCache
	f    *os.File
	d    wire.Digest
	refs int
	elem *list.Element // nil once out of the cache
}

// defaultOpenFiles is how many blob files the cache keeps open, lowered to
// a quarter of the process's file limit if that is smaller.
const defaultOpenFiles = 4096

func newFileCache(path func(wire.Digest) string) *fileCache {
	n := defaultOpenFiles
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err == nil && lim.Cur/4 < uint64(n) {
		n = max(int(lim.Cur/4), 16)
	}
	return &fileCache{max: n, path: path, files: map[wire.Digest]*sharedFile{}}
}

// acquire returns the open file of blob d, opening it if it is not
// cached. The caller must release it.
func (c *fileCache) acquire(d wire.Digest) (*sharedFile, error) {
	c.mu.Lock()
	if sf := c.files[d]; sf != nil {
		sf.refs++
		c.lru.MoveToFront(sf.elem)
		c.mu.Unlock()
		return sf, nil
	}
	forgets := c.forgets
	c.mu.Unlock()
	f, err := os.Open(c.path(d))
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	if c.forgets != forgets {
		c.mu.Unlock()
		return &sharedFile{c: c, f: f, d: d, refs: 1}, nil // not cached
	}
	if sf := c.files[d]; sf != nil {
		// Another request opened it meanwhile: use that one.
		sf.refs++
		c.lru.MoveToFront(sf.elem)
		c.mu.Unlock()
		f.Close()
		return sf, nil
	}
	sf := &sharedFile{c: c, f: f, d: d, refs: 2}
	sf.elem = c.lru.PushFront(sf)
	c.files[d] = sf
	var evicted []*os.File
	for c.lru.Len() > c.max {
		if f := c.dropLocked(c.lru.Back().Value.(*sharedFile)); f != nil {
			evicted = append(evicted, f)
		}
	}
	c.mu.Unlock()
	for _, f := range evicted {
		f.Close()
	}
	return sf, nil
}

// release gives back a file acquire returned.
func (sf *sharedFile) release() {
	c := sf.c
	c.mu.Lock()
	sf.refs--
	last := sf.refs == 0
	c.mu.Unlock()
	if last {
		sf.f.Close()
	}
}

// forget drops blob d's file from the cache once the blob is unlinked;
// readers holding it finish with the unlinked file.
func (c *fileCache) forget(d wire.Digest) {
	c.mu.Lock()
	c.forgets++
	var f *os.File
	if sf := c.files[d]; sf != nil {
		f = c.dropLocked(sf)
	}
	c.mu.Unlock()
	if f != nil {
		f.Close()
	}
}

// dropLocked removes sf from the cache and returns its file if that was
// the last reference, for the caller to close outside the lock.
func (c *fileCache) dropLocked(sf *sharedFile) *os.File {
	c.lru.Remove(sf.elem)
	sf.elem = nil
	delete(c.files, sf.d)
	sf.refs--
	if sf.refs == 0 {
		return sf.f
	}
	return nil
}

// closeAll closes every cached file no reader holds.
func (c *fileCache) closeAll() {
	c.mu.Lock()
	var files []*os.File
	for c.lru.Len() > 0 {
		if f := c.dropLocked(c.lru.Front().Value.(*sharedFile)); f != nil {
			files = append(files, f)
		}
	}
	c.mu.Unlock()
	for _, f := range files {
		f.Close()
	}
}
