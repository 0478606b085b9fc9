package gitsync

import (
	"github.com/go-git/go-billy/v5/osfs"
	"github.com/go-git/go-git/v5/plumbing/cache"
	"github.com/go-git/go-git/v5/storage/filesystem"
)

// storageOptions keep pack files open between reads (the caller closes the
// storage). No LargeObjectThreshold: go-git's streaming delta reader, used for
// objects above it, loses its place in the base after a backward copy and
// returns wrong content (a valid blob of nixpkgs.lib was called corrupt).
var storageOptions = filesystem.Options{KeepDescriptors: true, MaxOpenDescriptors: 64}

// openStorage opens a trusted git directory (the host's, or a workspace this
// process is creating) in-process.
func openStorage(dir string) *filesystem.Storage {
	return filesystem.NewStorageWithOptions(osfs.New(dir), cache.NewObjectLRUDefault(), storageOptions)
}
