package agentstore

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha512"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/keystone-agent/keystone/internal/agents"
)

// Limits on what a tarball may hold. The manifest pins the bytes, so these
// only guard against a manifest that names something other than an agent.
const (
	maxTarball  = 1 << 30 // compressed
	maxUnpacked = 4 << 30
	maxEntries  = 100000
)

// IntegrityError says a download does not match the manifest's hash.
type IntegrityError struct {
	URL       string
	Want, Got string
}

func (e *IntegrityError) Error() string {
	return fmt.Sprintf("%s does not match the manifest's integrity hash (got %s): nothing was unpacked", e.URL, e.Got)
}

// fetch downloads p into a temporary file in tmpDir, checks its integrity
// hash and only then unpacks it into dst.
func fetch(ctx context.Context, client *http.Client, p agents.Package, dst, tmpDir string) error {
	f, err := os.CreateTemp(tmpDir, ".download-")
	if err != nil {
		return err
	}
	defer func() {
		f.Close()
		os.Remove(f.Name())
	}()
	if err := download(ctx, client, p.URL, f); err != nil {
		return err
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return err
	}
	if err := verify(f, p.URL, p.Integrity); err != nil {
		return err
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return err
	}
	return unpack(f, dst)
}

func download(ctx context.Context, client *http.Client, url string, w io.Writer) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("failed to download: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("failed to download %s: %s", url, resp.Status)
	}
	n, err := io.Copy(w, io.LimitReader(resp.Body, maxTarball+1))
	if err != nil {
		return fmt.Errorf("failed to download %s: %w", url, err)
	}
	if n > maxTarball {
		return fmt.Errorf("%s is larger than %d bytes", url, maxTarball)
	}
	return nil
}

// verify checks r against an SRI hash "sha512-<base64>".
func verify(r io.Reader, url, integrity string) error {
	want, ok := strings.CutPrefix(integrity, "sha512-")
	if !ok {
		return fmt.Errorf("integrity %q is not sha512", integrity)
	}
	h := sha512.New()
	if _, err := io.Copy(h, r); err != nil {
		return err
	}
	if got := base64.StdEncoding.EncodeToString(h.Sum(nil)); got != want {
		return &IntegrityError{URL: url, Want: integrity, Got: "sha512-" + got}
	}
	return nil
}

// unpack writes the regular files of a gzipped npm tarball into dst,
// dropping the tarball's top directory ("package/"). Files are read-only,
// executable where the tarball says so; anything but a regular file or a
// directory, and any path leaving dst, is an error.
func unpack(r io.Reader, dst string) error {
	zr, err := gzip.NewReader(r)
	if err != nil {
		return fmt.Errorf("not a gzip tarball: %w", err)
	}
	tr := tar.NewReader(zr)
	var total int64
	for entries := 0; ; entries++ {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("broken tarball: %w", err)
		}
		if entries >= maxEntries {
			return fmt.Errorf("tarball has more than %d entries", maxEntries)
		}
		rel, err := entryPath(hdr.Name)
		if err != nil {
			return err
		}
		switch hdr.Typeflag {
		case tar.TypeDir:
			continue // made as needed, with fixed modes
		case tar.TypeReg:
		default:
			return fmt.Errorf("tarball entry %q is not a regular file", hdr.Name)
		}
		if total += hdr.Size; hdr.Size < 0 || total > maxUnpacked {
			return fmt.Errorf("tarball unpacks to more than %d bytes", maxUnpacked)
		}
		if rel == "" {
			continue
		}
		if err := writeFile(filepath.Join(dst, filepath.FromSlash(rel)), tr, hdr.Size, hdr.Mode&0o111 != 0); err != nil {
			return err
		}
	}
}

// entryPath strips the top directory and refuses paths that leave it.
func entryPath(name string) (string, error) {
	clean := path.Clean(strings.TrimPrefix(name, "./"))
	if path.IsAbs(clean) || clean == ".." || strings.HasPrefix(clean, "../") || bytes.IndexByte([]byte(name), 0) >= 0 {
		return "", fmt.Errorf("tarball entry %q leaves the package", name)
	}
	_, rel, _ := strings.Cut(clean, "/")
	return rel, nil
}

func writeFile(name string, r io.Reader, size int64, exe bool) error {
	if err := os.MkdirAll(filepath.Dir(name), 0o755); err != nil {
		return err
	}
	perm := os.FileMode(0o444)
	if exe {
		perm = 0o555
	}
	f, err := os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return fmt.Errorf("failed to unpack: %w", err)
	}
	if _, err := io.CopyN(f, r, size); err != nil {
		f.Close()
		return fmt.Errorf("failed to unpack %q: %w", name, err)
	}
	return f.Close()
}
