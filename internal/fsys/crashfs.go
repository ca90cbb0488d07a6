package fsys

import (
	"errors"
	"io"
	"io/fs"
	"maps"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"
)

// ErrCrashed is returned by operations on a file handle opened before the
// last CrashFS.Crash, and by every operation through a Boot view after the
// crash that ended its boot.
var ErrCrashed = errors.New("filesystem crashed")

// CrashFS is an in-memory FS that models what survives a power loss.
//
// Every inode keeps two states: the volatile one that reads and writes
// see, and the durable one that survives Crash. For a file the state is
// its data; File.Sync copies volatile to durable. For a directory the
// state is its table of names → inodes; SyncDir copies it. A name therefore
// survives a crash only if every directory on its path has been synced since
// the entry was made, and its content is whatever was last synced.
//
// Directories are not special: a directory made by MkdirAll is an entry in
// its parent and vanishes in a crash unless the parent is synced. Only the
// root always exists. Metadata other than names (mode, size through
// truncation) follows the data: it is what the last Sync saw. Modification
// times are not modelled (always the zero time) so runs are reproducible.
//
// CrashFS is safe for concurrent use; one lock serialises every operation,
// which is fine for a test double.
type CrashFS struct {
	mu   sync.Mutex
	root *inode
	boot uint64 // incremented by Crash; handles and Boot views remember theirs
}

type inode struct {
	dir  bool
	mode fs.FileMode

	data    []byte // file content as reads see it
	durable []byte // file content as of the last Sync

	entries        map[string]*inode // directory table as lookups see it
	durableEntries map[string]*inode // directory table as of the last SyncDir
}

func newDir(perm fs.FileMode) *inode {
	return &inode{dir: true, mode: fs.ModeDir | perm.Perm(), entries: map[string]*inode{}, durableEntries: map[string]*inode{}}
}

// NewCrashFS returns an empty CrashFS holding only the root directory "/".
func NewCrashFS() *CrashFS {
	return &CrashFS{root: newDir(0o755)}
}

var _ FS = (*CrashFS)(nil)

// Crash simulates a power loss and the reboot after it. Every file's
// content reverts to what it was at its last Sync (empty if never synced),
// and every directory's table reverts to what it was at its last SyncDir: an
// unsynced create disappears, an unsynced remove comes back, an unsynced
// rename reverts to the old name (or, across directories where only one side
// was synced, shows the file under both names or none, as on a real disk).
// Handles opened before the crash fail with ErrCrashed afterwards. The
// CrashFS itself stays usable and shows the state after the reboot.
func (c *CrashFS) Crash() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.boot++
	// Only inodes reachable through durable entries exist after the reboot;
	// the rest are garbage, reachable at most from the now-dead handles.
	seen := map[*inode]bool{}
	var revert func(n *inode)
	revert = func(n *inode) {
		if seen[n] {
			return
		}
		seen[n] = true
		if !n.dir {
			n.data = slices.Clone(n.durable)
			return
		}
		n.entries = maps.Clone(n.durableEntries)
		for _, child := range n.durableEntries {
			revert(child)
		}
	}
	revert(c.root)
}

// Boot returns a view of c for the current boot of the simulated machine:
// once Crash is called, every operation through the view fails with
// ErrCrashed, as a process does not outlive a power loss. Give the code
// under test a Boot view so that work it would do after the crash point
// cannot change what survived it; reopen it on a fresh Boot view.
func (c *CrashFS) Boot() FS {
	c.mu.Lock()
	defer c.mu.Unlock()
	return &crashView{c: c, boot: c.boot, fenced: true}
}

// The FS methods of CrashFS itself always act on the current boot.

func (c *CrashFS) OpenFile(name string, flag int, perm fs.FileMode) (File, error) {
	return (&crashView{c: c}).OpenFile(name, flag, perm)
}
func (c *CrashFS) Rename(oldpath, newpath string) error {
	return (&crashView{c: c}).Rename(oldpath, newpath)
}
func (c *CrashFS) Remove(name string) error { return (&crashView{c: c}).Remove(name) }
func (c *CrashFS) MkdirAll(path string, perm fs.FileMode) error {
	return (&crashView{c: c}).MkdirAll(path, perm)
}
func (c *CrashFS) SyncDir(dir string) error { return (&crashView{c: c}).SyncDir(dir) }
func (c *CrashFS) Stat(name string) (fs.FileInfo, error) {
	return (&crashView{c: c}).Stat(name)
}
func (c *CrashFS) ReadDir(name string) ([]fs.DirEntry, error) {
	return (&crashView{c: c}).ReadDir(name)
}

// crashView performs the operations; fenced views refuse to act after the
// boot they belong to has ended.
type crashView struct {
	c      *CrashFS
	boot   uint64
	fenced bool
}

// lock takes the CrashFS lock (the caller releases it) and reports
// whether the view may act.
func (v *crashView) lock() bool {
	v.c.mu.Lock()
	return !v.fenced || v.boot == v.c.boot
}

func (v *crashView) unlock() { v.c.mu.Unlock() }

func pathErr(op, name string, err error) error { return &fs.PathError{Op: op, Path: name, Err: err} }

// split cleans name into slash-separated components below the root.
func split(name string) []string {
	p := path.Clean("/" + filepath.ToSlash(name))
	if p == "/" {
		return nil
	}
	return strings.Split(p[1:], "/")
}

// lookup walks the volatile tree. It returns the inode (nil if the last
// component is missing) and its parent directory.
func (c *CrashFS) lookup(parts []string) (n, parent *inode, err error) {
	n = c.root
	for i, p := range parts {
		if !n.dir {
			return nil, nil, syscall.ENOTDIR
		}
		parent = n
		n = n.entries[p]
		if n == nil {
			if i == len(parts)-1 {
				return nil, parent, nil
			}
			return nil, nil, fs.ErrNotExist
		}
	}
	return n, parent, nil
}

func (v *crashView) OpenFile(name string, flag int, perm fs.FileMode) (File, error) {
	ok := v.lock()
	defer v.unlock()
	if !ok {
		return nil, pathErr("open", name, ErrCrashed)
	}
	parts := split(name)
	n, parent, err := v.c.lookup(parts)
	if err != nil {
		return nil, pathErr("open", name, err)
	}
	write := flag&(os.O_WRONLY|os.O_RDWR) != 0
	switch {
	case n == nil && flag&os.O_CREATE == 0:
		return nil, pathErr("open", name, fs.ErrNotExist)
	case n == nil:
		n = &inode{mode: perm.Perm()}
		parent.entries[parts[len(parts)-1]] = n
	case flag&(os.O_CREATE|os.O_EXCL) == os.O_CREATE|os.O_EXCL:
		return nil, pathErr("open", name, fs.ErrExist)
	case n.dir && write:
		return nil, pathErr("open", name, syscall.EISDIR)
	}
	if flag&os.O_TRUNC != 0 && write && !n.dir {
		n.data = nil
	}
	return &crashFile{
		c:      v.c,
		n:      n,
		name:   name,
		boot:   v.c.boot,
		read:   flag&os.O_WRONLY == 0,
		write:  write,
		append: flag&os.O_APPEND != 0,
	}, nil
}

func (v *crashView) Rename(oldpath, newpath string) error {
	ok := v.lock()
	defer v.unlock()
	if !ok {
		return &os.LinkError{Op: "rename", Old: oldpath, New: newpath, Err: ErrCrashed}
	}
	linkErr := func(err error) error {
		return &os.LinkError{Op: "rename", Old: oldpath, New: newpath, Err: err}
	}
	op, np := split(oldpath), split(newpath)
	if len(op) == 0 || len(np) == 0 {
		return linkErr(syscall.EBUSY)
	}
	n, oldParent, err := v.c.lookup(op)
	if err == nil && n == nil {
		err = fs.ErrNotExist
	}
	if err != nil {
		return linkErr(err)
	}
	target, newParent, err := v.c.lookup(np)
	if err != nil {
		return linkErr(err)
	}
	if target == n {
		return nil
	}
	if n.dir && len(np) > len(op) && slices.Equal(np[:len(op)], op) {
		return linkErr(syscall.EINVAL) // into its own subtree
	}
	if target != nil {
		switch {
		case target.dir && !n.dir:
			return linkErr(syscall.EISDIR)
		case !target.dir && n.dir:
			return linkErr(syscall.ENOTDIR)
		case target.dir && len(target.entries) > 0:
			return linkErr(syscall.ENOTEMPTY)
		}
	}
	delete(oldParent.entries, op[len(op)-1])
	newParent.entries[np[len(np)-1]] = n
	return nil
}

func (v *crashView) Remove(name string) error {
	ok := v.lock()
	defer v.unlock()
	if !ok {
		return pathErr("remove", name, ErrCrashed)
	}
	parts := split(name)
	if len(parts) == 0 {
		return pathErr("remove", name, syscall.EBUSY)
	}
	n, parent, err := v.c.lookup(parts)
	if err == nil && n == nil {
		err = fs.ErrNotExist
	}
	if err != nil {
		return pathErr("remove", name, err)
	}
	if n.dir && len(n.entries) > 0 {
		return pathErr("remove", name, syscall.ENOTEMPTY)
	}
	delete(parent.entries, parts[len(parts)-1])
	return nil
}

func (v *crashView) MkdirAll(name string, perm fs.FileMode) error {
	ok := v.lock()
	defer v.unlock()
	if !ok {
		return pathErr("mkdir", name, ErrCrashed)
	}
	n := v.c.root
	for _, p := range split(name) {
		child := n.entries[p]
		if child == nil {
			child = newDir(perm)
			n.entries[p] = child
		} else if !child.dir {
			return pathErr("mkdir", name, syscall.ENOTDIR)
		}
		n = child
	}
	return nil
}

func (v *crashView) SyncDir(dir string) error {
	ok := v.lock()
	defer v.unlock()
	if !ok {
		return pathErr("sync", dir, ErrCrashed)
	}
	n, _, err := v.c.lookup(split(dir))
	if err == nil && n == nil {
		err = fs.ErrNotExist
	}
	if err != nil {
		return pathErr("sync", dir, err)
	}
	if !n.dir {
		return pathErr("sync", dir, syscall.ENOTDIR)
	}
	n.durableEntries = maps.Clone(n.entries)
	return nil
}

func (v *crashView) Stat(name string) (fs.FileInfo, error) {
	ok := v.lock()
	defer v.unlock()
	if !ok {
		return nil, pathErr("stat", name, ErrCrashed)
	}
	parts := split(name)
	n, _, err := v.c.lookup(parts)
	if err == nil && n == nil {
		err = fs.ErrNotExist
	}
	if err != nil {
		return nil, pathErr("stat", name, err)
	}
	return n.info(baseName(parts)), nil
}

func (v *crashView) ReadDir(name string) ([]fs.DirEntry, error) {
	ok := v.lock()
	defer v.unlock()
	if !ok {
		return nil, pathErr("readdir", name, ErrCrashed)
	}
	n, _, err := v.c.lookup(split(name))
	if err == nil && n == nil {
		err = fs.ErrNotExist
	}
	if err != nil {
		return nil, pathErr("readdir", name, err)
	}
	if !n.dir {
		return nil, pathErr("readdir", name, syscall.ENOTDIR)
	}
	names := slices.Sorted(maps.Keys(n.entries))
	out := make([]fs.DirEntry, len(names))
	for i, nm := range names {
		out[i] = fs.FileInfoToDirEntry(n.entries[nm].info(nm))
	}
	return out, nil
}

func baseName(parts []string) string {
	if len(parts) == 0 {
		return "/"
	}
	return parts[len(parts)-1]
}

func (n *inode) info(name string) fs.FileInfo {
	return fileInfo{name: name, size: int64(len(n.data)), mode: n.mode}
}

type fileInfo struct {
	name string
	size int64
	mode fs.FileMode
}

func (fi fileInfo) Name() string       { return fi.name }
func (fi fileInfo) Size() int64        { return fi.size }
func (fi fileInfo) Mode() fs.FileMode  { return fi.mode }
func (fi fileInfo) ModTime() time.Time { return time.Time{} }
func (fi fileInfo) IsDir() bool        { return fi.mode.IsDir() }
func (fi fileInfo) Sys() any           { return nil }

// crashFile is an open handle. Like a Unix file descriptor it keeps
// referring to its inode after the name is removed or renamed.
type crashFile struct {
	c      *CrashFS
	n      *inode
	name   string
	boot   uint64
	read   bool
	write  bool
	append bool
	off    int64 // guarded by c.mu
	closed bool  // guarded by c.mu
}

// lock takes the CrashFS lock (the caller releases it) and checks that
// the handle is usable.
func (f *crashFile) lock(op string) error {
	f.c.mu.Lock()
	switch {
	case f.closed:
		return pathErr(op, f.name, fs.ErrClosed)
	case f.boot != f.c.boot:
		return pathErr(op, f.name, ErrCrashed)
	}
	return nil
}

func (f *crashFile) Name() string { return f.name }

func (f *crashFile) Read(p []byte) (int, error) {
	err := f.lock("read")
	defer f.c.mu.Unlock()
	if err != nil {
		return 0, err
	}
	if err := f.readable("read"); err != nil {
		return 0, err
	}
	if f.off >= int64(len(f.n.data)) {
		if len(p) == 0 {
			return 0, nil
		}
		return 0, io.EOF
	}
	n := copy(p, f.n.data[f.off:])
	f.off += int64(n)
	return n, nil
}

func (f *crashFile) ReadAt(p []byte, off int64) (int, error) {
	err := f.lock("read")
	defer f.c.mu.Unlock()
	if err != nil {
		return 0, err
	}
	if err := f.readable("read"); err != nil {
		return 0, err
	}
	if off < 0 {
		return 0, pathErr("readat", f.name, syscall.EINVAL)
	}
	if off >= int64(len(f.n.data)) {
		return 0, io.EOF
	}
	n := copy(p, f.n.data[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

func (f *crashFile) readable(op string) error {
	switch {
	case f.n.dir:
		return pathErr(op, f.name, syscall.EISDIR)
	case !f.read:
		return pathErr(op, f.name, syscall.EBADF)
	}
	return nil
}

func (f *crashFile) Write(p []byte) (int, error) {
	err := f.lock("write")
	defer f.c.mu.Unlock()
	if err != nil {
		return 0, err
	}
	if !f.write {
		return 0, pathErr("write", f.name, syscall.EBADF)
	}
	if f.append {
		f.off = int64(len(f.n.data))
	}
	end := f.off + int64(len(p))
	if end > int64(len(f.n.data)) {
		// Grow with zeros, as a write past EOF leaves a hole.
		f.n.data = slices.Grow(f.n.data, int(end)-len(f.n.data))[:end]
	}
	copy(f.n.data[f.off:end], p)
	f.off = end
	return len(p), nil
}

func (f *crashFile) Seek(offset int64, whence int) (int64, error) {
	err := f.lock("seek")
	defer f.c.mu.Unlock()
	if err != nil {
		return 0, err
	}
	switch whence {
	case io.SeekCurrent:
		offset += f.off
	case io.SeekEnd:
		offset += int64(len(f.n.data))
	case io.SeekStart:
	default:
		return 0, pathErr("seek", f.name, syscall.EINVAL)
	}
	if offset < 0 {
		return 0, pathErr("seek", f.name, syscall.EINVAL)
	}
	f.off = offset
	return offset, nil
}

func (f *crashFile) Sync() error {
	err := f.lock("sync")
	defer f.c.mu.Unlock()
	if err != nil {
		return err
	}
	if f.n.dir {
		f.n.durableEntries = maps.Clone(f.n.entries)
	} else {
		f.n.durable = slices.Clone(f.n.data)
	}
	return nil
}

func (f *crashFile) Stat() (fs.FileInfo, error) {
	err := f.lock("stat")
	defer f.c.mu.Unlock()
	if err != nil {
		return nil, err
	}
	return f.n.info(path.Base(filepath.ToSlash(f.name))), nil
}

func (f *crashFile) Close() error {
	err := f.lock("close")
	defer f.c.mu.Unlock()
	f.closed = true
	return err
}
