//go:build !unix

package tlscert

import "io/fs"

// fileID returns zeros: FileInfo carries no file identity here, and
// modification time and size suffice.
func fileID(fs.FileInfo) (dev, ino uint64) { return 0, 0 }
