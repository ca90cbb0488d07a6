package origin

import (
	"bytes"
	"errors"
	"io/fs"
	"time"
)

// memBlob is content the catalog holds inline, opened for reading: an
// fsys.File over a copy of its bytes.
type memBlob struct {
	*bytes.Reader
	name string
	size int64
}

func newMemBlob(name string, b []byte) *memBlob {
	return &memBlob{Reader: bytes.NewReader(b), name: name, size: int64(len(b))}
}

var errReadOnly = errors.New("blob held in the catalog is read-only")

func (m *memBlob) Write([]byte) (int, error)  { return 0, errReadOnly }
func (m *memBlob) Close() error               { return nil }
func (m *memBlob) Sync() error                { return nil }
func (m *memBlob) Name() string               { return m.name }
func (m *memBlob) Stat() (fs.FileInfo, error) { return memBlobInfo{m}, nil }

// memBlobInfo describes a memBlob as a regular, read-only file.
type memBlobInfo struct{ m *memBlob }

func (i memBlobInfo) Name() string       { return i.m.name }
func (i memBlobInfo) Size() int64        { return i.m.size }
func (i memBlobInfo) Mode() fs.FileMode  { return 0o444 }
func (i memBlobInfo) ModTime() time.Time { return time.Time{} }
func (i memBlobInfo) IsDir() bool        { return false }
func (i memBlobInfo) Sys() any           { return nil }
