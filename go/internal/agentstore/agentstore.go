// Package agentstore builds the agent tree of the Debian test guest: the
// pinned npm tarballs of package agents, downloaded once, verified against
// their integrity hashes before anything is unpacked, and unpacked into a
// read-only directory named by a hash of what the manifest pins. The runner
// shares that directory into the guest over 9p, read-only, so the agents'
// hundreds of megabytes never go into the initramfs.
//
// It never runs what it unpacks and never writes outside the cache.
package agentstore

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"

	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"time"

	"github.com/gofrs/flock"

	"github.com/keystone-agent/keystone/internal/agents"
)

// version changes whenever the tree's layout changes for the same manifest.
const version = "keystone-agentstore-1"

// Tree layout, relative to the tree's directory.
const (
	// PkgDir holds one directory per package: the tarball's package/ contents.
	PkgDir = "pkg"
	// BinDir holds one relative symlink per program, into PkgDir.
	BinDir = "bin"
	// markerFile holds the key; a tree without it is incomplete.
	markerFile = ".keystone-agents"
)

// Options configures Ensure.
type Options struct {
	// CacheDir holds one tree per key, as CacheDir/<key>.
	CacheDir string
	// Client downloads the tarballs; nil means http.DefaultClient (which
	// honours HTTPS_PROXY).
	Client *http.Client
	// Step, when set, is told of each download as it begins (a progress
	// line); a tree found in the cache reports none.
	Step func(phase string)
}

// Key names the tree of m: it covers every package's integrity hash and
// program paths, so a bumped manifest gets a new tree and an unchanged one
// is never downloaded again.
func Key(m *agents.Manifest) string {
	h := sha256.New()
	fmt.Fprintf(h, "%s\n", version)
	for _, id := range m.PackageIDs() {
		p := m.Packages[id]
		fmt.Fprintf(h, "package %s %s\n", id, p.Integrity)
		names := make([]string, 0, len(p.Bin))
		for n := range p.Bin {
			names = append(names, n)
		}
		sort.Strings(names)
		for _, n := range names {
			fmt.Fprintf(h, "bin %s %s\n", n, p.Bin[n])
		}
	}
	return hex.EncodeToString(h.Sum(nil))[:32]
}

// Ensure returns the tree for m under opts.CacheDir, building it when it is
// missing. Concurrent callers wait for one build.
func Ensure(ctx context.Context, m *agents.Manifest, opts Options) (string, error) {
	key := Key(m)
	dir := filepath.Join(opts.CacheDir, key)
	if complete(dir) {
		return dir, nil
	}
	if err := os.MkdirAll(opts.CacheDir, 0o755); err != nil {
		return "", fmt.Errorf("failed to create the agent cache: %w", err)
	}
	lk := flock.New(filepath.Join(opts.CacheDir, ".lock"))
	if ok, err := lk.TryLockContext(ctx, 200*time.Millisecond); err != nil || !ok {
		return "", fmt.Errorf("failed to lock the agent cache %q: %w", opts.CacheDir, errors.Join(err, ctx.Err()))
	}
	defer lk.Unlock()
	if complete(dir) { // another process built it while we waited
		return dir, nil
	}
	if err := build(ctx, m, opts, key, dir); err != nil {
		return "", err
	}
	return dir, nil
}

func complete(dir string) bool {
	_, err := os.Stat(filepath.Join(dir, markerFile))
	return err == nil
}

// build unpacks every package into a temporary directory beside dir and
// renames it into place, so a tree in the cache is always whole.
func build(ctx context.Context, m *agents.Manifest, opts Options, key, dir string) (err error) {
	tmp, err := os.MkdirTemp(opts.CacheDir, ".build-")
	if err != nil {
		return fmt.Errorf("failed to create the agent cache: %w", err)
	}
	defer func() {
		if err != nil {
			os.RemoveAll(tmp)
		}
	}()
	client := opts.Client
	if client == nil {
		client = http.DefaultClient
	}
	for _, id := range m.PackageIDs() {
		p := m.Packages[id]
		if opts.Step != nil {
			opts.Step(fmt.Sprintf("downloading %s %s (once; cached in %s)", p.NPM, p.Version, opts.CacheDir))
		}
		if err := fetch(ctx, client, p, filepath.Join(tmp, PkgDir, id), tmp); err != nil {
			return fmt.Errorf("agent package %s %s: %w", p.NPM, p.Version, err)
		}
	}
	if err := linkPrograms(m, tmp); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(tmp, markerFile), []byte(key+"\n"), 0o444); err != nil {
		return err
	}
	if err := os.Chmod(tmp, 0o755); err != nil { // MkdirTemp made it private
		return err
	}
	if err := os.Rename(tmp, dir); err != nil {
		return fmt.Errorf("failed to store the agents in the cache: %w", err)
	}
	return nil
}

// linkPrograms makes bin/<name> a relative link to each program, so the
// tree works wherever it is mounted.
func linkPrograms(m *agents.Manifest, tree string) error {
	if err := os.MkdirAll(filepath.Join(tree, BinDir), 0o755); err != nil {
		return err
	}
	for _, id := range m.PackageIDs() {
		bin := m.Packages[id].Bin
		for _, name := range slices.Sorted(maps.Keys(bin)) { // the same error every run
			rel := bin[name]
			target := filepath.Join(tree, PkgDir, id, rel)
			fi, err := os.Stat(target)
			if err != nil || !fi.Mode().IsRegular() {
				return fmt.Errorf("agent package %q has no program %q at %q", id, name, rel)
			}
			// Scripts run through their #! line: they must be executable.
			if err := os.Chmod(target, 0o555); err != nil {
				return err
			}
			if err := os.Symlink(filepath.Join("..", PkgDir, id, rel), filepath.Join(tree, BinDir, name)); err != nil {
				return err
			}
		}
	}
	return nil
}
