package agentstore

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha512"
	"encoding/base64"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/keystone-agent/keystone/internal/agents"
)

type entry struct {
	name, body string
	mode       int64
	typ        byte
}

func tarball(t *testing.T, entries ...entry) []byte {
	t.Helper()
	var b bytes.Buffer
	zw := gzip.NewWriter(&b)
	tw := tar.NewWriter(zw)
	for _, e := range entries {
		typ := e.typ
		if typ == 0 {
			typ = tar.TypeReg
		}
		hdr := &tar.Header{Name: e.name, Mode: e.mode, Size: int64(len(e.body)), Typeflag: typ, Linkname: "/etc/passwd"}
		if typ != tar.TypeReg {
			hdr.Size = 0
		}
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatal(err)
		}
		if typ == tar.TypeReg {
			tw.Write([]byte(e.body))
		}
	}
	tw.Close()
	zw.Close()
	return b.Bytes()
}

func sri(b []byte) string {
	s := sha512.Sum512(b)
	return "sha512-" + base64.StdEncoding.EncodeToString(s[:])
}

// registry serves tarballs by path and counts requests.
type registry struct {
	*httptest.Server
	files    map[string][]byte
	requests atomic.Int32
}

func newRegistry(t *testing.T, files map[string][]byte) *registry {
	r := &registry{files: files}
	r.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		r.requests.Add(1)
		b, ok := r.files[req.URL.Path]
		if !ok {
			http.NotFound(w, req)
			return
		}
		w.Write(b)
	}))
	t.Cleanup(r.Close)
	return r
}

func manifest(reg *registry, integrity map[string]string) *agents.Manifest {
	return &agents.Manifest{
		Packages: map[string]agents.Package{
			"tool": {NPM: "tool", Version: "1", URL: reg.URL + "/tool.tgz", Integrity: integrity["tool"],
				Bin: map[string]string{"tool": "bin/tool", "tool-helper": "lib/helper.js"}},
			"runtime": {NPM: "runtime", Version: "2", URL: reg.URL + "/runtime.tgz", Integrity: integrity["runtime"],
				Bin: map[string]string{"runtime": "runtime"}},
		},
		Agents: map[string]agents.Agent{"tool": {Package: "tool", Command: "tool"}},
	}
}

func goodFiles(t *testing.T) map[string][]byte {
	return map[string][]byte{
		"/tool.tgz": tarball(t,
			entry{name: "package/bin/tool", body: "#!/bin/sh\necho tool\n", mode: 0o755},
			entry{name: "package/lib/helper.js", body: "#!/usr/bin/env runtime\n", mode: 0o644},
			entry{name: "package/README.md", body: "hi", mode: 0o644}),
		"/runtime.tgz": tarball(t, entry{name: "package/runtime", body: "\x7fELF", mode: 0o755}),
	}
}

func TestEnsure(t *testing.T) {
	files := goodFiles(t)
	reg := newRegistry(t, files)
	m := manifest(reg, map[string]string{"tool": sri(files["/tool.tgz"]), "runtime": sri(files["/runtime.tgz"])})
	cache := t.TempDir()
	var progress []string
	dir, err := Ensure(context.Background(), m, Options{CacheDir: cache, Step: func(s string) { progress = append(progress, s) }})
	if err != nil {
		t.Fatal(err)
	}
	if dir != filepath.Join(cache, Key(m)) {
		t.Errorf("tree at %q; want it named by the key", dir)
	}
	if len(progress) != 2 || !strings.HasPrefix(progress[1], "downloading tool 1") {
		t.Errorf("progress: %q; want a step per download", progress)
	}
	for name, want := range map[string]string{"tool": "#!/bin/sh\necho tool\n", "tool-helper": "#!/usr/bin/env runtime\n", "runtime": "\x7fELF"} {
		p := filepath.Join(dir, BinDir, name)
		got, err := os.ReadFile(p)
		if err != nil || string(got) != want {
			t.Errorf("%s: got %q, %v; want %q", name, got, err, want)
		}
		if target, _ := os.Readlink(p); filepath.IsAbs(target) {
			t.Errorf("%s links to an absolute path %q: the tree must work where the guest mounts it", name, target)
		}
		if fi, _ := os.Stat(p); fi.Mode().Perm() != 0o555 {
			t.Errorf("%s: mode %v; want r-xr-xr-x", name, fi.Mode().Perm())
		}
	}
	if fi, _ := os.Stat(filepath.Join(dir, PkgDir, "tool", "README.md")); fi == nil || fi.Mode().Perm() != 0o444 {
		t.Errorf("README.md: %v; want read-only", fi)
	}
	// A warm cache downloads nothing.
	n := reg.requests.Load()
	if again, err := Ensure(context.Background(), m, Options{CacheDir: cache}); err != nil || again != dir {
		t.Fatalf("second Ensure: %q, %v", again, err)
	}
	if reg.requests.Load() != n {
		t.Error("a cached tree was downloaded again")
	}
}

func TestEnsureConcurrent(t *testing.T) {
	files := goodFiles(t)
	reg := newRegistry(t, files)
	m := manifest(reg, map[string]string{"tool": sri(files["/tool.tgz"]), "runtime": sri(files["/runtime.tgz"])})
	cache := t.TempDir()
	var wg sync.WaitGroup
	errs := make([]error, 4)
	for i := range errs {
		wg.Add(1)
		go func() { defer wg.Done(); _, errs[i] = Ensure(context.Background(), m, Options{CacheDir: cache}) }()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if got := reg.requests.Load(); got != 2 {
		t.Errorf("%d downloads; want each tarball once", got)
	}
}

func TestEnsureRefuses(t *testing.T) {
	for name, tc := range map[string]struct {
		tool []byte
		want string
	}{
		"traversal":       {tarball(t, entry{name: "package/../../escape", body: "x"}), "leaves the package"},
		"absolute":        {tarball(t, entry{name: "/etc/passwd", body: "x"}), "leaves the package"},
		"symlink":         {tarball(t, entry{name: "package/bin/tool", typ: tar.TypeSymlink}), "not a regular file"},
		"missing program": {tarball(t, entry{name: "package/bin/other", body: "x"}), `no program "tool"`},
		"not gzip":        {[]byte("<html>"), "not a gzip tarball"},
	} {
		t.Run(name, func(t *testing.T) {
			files := goodFiles(t)
			files["/tool.tgz"] = tc.tool
			reg := newRegistry(t, files)
			m := manifest(reg, map[string]string{"tool": sri(tc.tool), "runtime": sri(files["/runtime.tgz"])})
			cache := t.TempDir()
			_, err := Ensure(context.Background(), m, Options{CacheDir: cache})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v; want an error containing %q", err, tc.want)
			}
			assertEmptyCache(t, cache)
		})
	}
}

func TestEnsureIntegrity(t *testing.T) {
	files := goodFiles(t)
	reg := newRegistry(t, files)
	// The registry serves other bytes than the manifest pinned.
	m := manifest(reg, map[string]string{"tool": sri([]byte("other")), "runtime": sri(files["/runtime.tgz"])})
	cache := t.TempDir()
	_, err := Ensure(context.Background(), m, Options{CacheDir: cache})
	var ie *IntegrityError
	if !errors.As(err, &ie) {
		t.Fatalf("got %v; want an IntegrityError", err)
	}
	assertEmptyCache(t, cache)

	delete(reg.files, "/runtime.tgz")
	m = manifest(reg, map[string]string{"tool": sri(files["/tool.tgz"]), "runtime": sri(files["/runtime.tgz"])})
	if _, err := Ensure(context.Background(), m, Options{CacheDir: cache}); err == nil || !strings.Contains(err.Error(), "404") {
		t.Fatalf("got %v; want the HTTP status", err)
	}
	assertEmptyCache(t, cache)
}

// assertEmptyCache: a failed build leaves nothing but the lock file.
func assertEmptyCache(t *testing.T, cache string) {
	t.Helper()
	entries, _ := os.ReadDir(cache)
	for _, e := range entries {
		if e.Name() != ".lock" {
			t.Errorf("a failed build left %q in the cache", e.Name())
		}
	}
}

func TestKeyFollowsTheManifest(t *testing.T) {
	m := manifest(&registry{Server: &httptest.Server{URL: "http://x"}}, map[string]string{"tool": "a", "runtime": "b"})
	k := Key(m)
	p := m.Packages["tool"]
	p.Integrity = "c"
	m.Packages["tool"] = p
	if Key(m) == k {
		t.Error("a new integrity hash kept the key")
	}
	p.Bin = map[string]string{"tool": "other/tool"}
	m.Packages["tool"] = p
	k2 := Key(m)
	p.Bin = map[string]string{"tool": "other/tool"}
	if Key(m) != k2 {
		t.Error("the key is not stable")
	}
}
