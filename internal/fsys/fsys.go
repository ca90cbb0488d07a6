// Package fsys is the filesystem seam under the origin's blob store: the
// real filesystem (OS) for production, and CrashFS, an in-memory filesystem
// that forgets, on a simulated power loss, everything that was not made
// durable.
//
// The contract both honour is the POSIX one that crash-safe code must be
// written against: file data is durable only after File.Sync, and a
// directory entry (a create, rename or remove of a name, including a
// directory made by MkdirAll) is durable only after SyncDir of the directory
// that holds it. Killing a process proves nothing about this, because the
// page cache survives; CrashFS.Crash does not keep it.
package fsys

import (
	"fmt"
	"io"
	"io/fs"
	"os"
)

// File is an open file. *os.File implements it, so callers may type-assert
// a File from OS to *os.File (for http.ServeContent's sendfile path).
type File interface {
	io.Reader
	io.ReaderAt
	io.Writer
	io.Seeker
	io.Closer
	// Sync makes the file's data durable (fsync).
	Sync() error
	Stat() (fs.FileInfo, error)
	// Name returns the name the file was opened with.
	Name() string
}

// FS is the set of filesystem operations the blob store needs. Paths use
// the host's separator for OS and are cleaned and slash-separated for
// CrashFS. Implementations are safe for concurrent use.
type FS interface {
	OpenFile(name string, flag int, perm fs.FileMode) (File, error)
	Rename(oldpath, newpath string) error
	Remove(name string) error
	MkdirAll(path string, perm fs.FileMode) error
	// SyncDir makes the creates, renames and removes of names in dir
	// durable (fsync of the directory).
	SyncDir(dir string) error
	Stat(name string) (fs.FileInfo, error)
	// ReadDir returns the entries of the directory sorted by name.
	ReadDir(name string) ([]fs.DirEntry, error)
}

// OS returns the real filesystem.
func OS() FS { return osFS{} }

type osFS struct{}

var (
	_ FS   = osFS{}
	_ File = (*os.File)(nil)
)

func (osFS) OpenFile(name string, flag int, perm fs.FileMode) (File, error) {
	f, err := os.OpenFile(name, flag, perm)
	if err != nil {
		// Return an untyped nil: a nil *os.File in a File is not == nil.
		return nil, err
	}
	return f, nil
}

func (osFS) Rename(oldpath, newpath string) error         { return os.Rename(oldpath, newpath) }
func (osFS) Remove(name string) error                     { return os.Remove(name) }
func (osFS) MkdirAll(path string, perm fs.FileMode) error { return os.MkdirAll(path, perm) }
func (osFS) Stat(name string) (fs.FileInfo, error)        { return os.Stat(name) }
func (osFS) ReadDir(name string) ([]fs.DirEntry, error)   { return os.ReadDir(name) }

func (osFS) SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("sync dir: %w", err)
	}
	if err := d.Sync(); err != nil {
		d.Close()
		return fmt.Errorf("sync dir %s: %w", dir, err)
	}
	if err := d.Close(); err != nil {
		return fmt.Errorf("sync dir: %w", err)
	}
	return nil
}
