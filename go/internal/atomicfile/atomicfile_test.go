package atomicfile_test

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/keystone-agent/keystone/internal/atomicfile"
	"github.com/keystone-agent/keystone/internal/testenv/smallfs"
)

func readDir(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}

func TestWriteReplacesAndSetsTheMode(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "key")
	for _, c := range []struct {
		data string
		perm os.FileMode
	}{{"first\n", 0o644}, {"second, longer\n", 0o600}} {
		if err := atomicfile.Write(p, []byte(c.data), c.perm); err != nil {
			t.Fatal(err)
		}
		got, _ := os.ReadFile(p)
		fi, _ := os.Stat(p)
		if string(got) != c.data || fi.Mode().Perm() != c.perm {
			t.Errorf("got %q %v; want %q %v", got, fi.Mode().Perm(), c.data, c.perm)
		}
	}
	if names := readDir(t, dir); len(names) != 1 {
		t.Errorf("directory holds %v; want only the file", names)
	}
}

// A link planted at the name the old helpers used (path + ".tmp") is neither
// followed nor reused.
func TestWriteIgnoresPlantedLinks(t *testing.T) {
	dir := t.TempDir()
	victim := filepath.Join(t.TempDir(), "victim")
	os.WriteFile(victim, []byte("mine\n"), 0o644)
	p := filepath.Join(dir, "sandboxes.json")
	for _, name := range []string{p + ".tmp", filepath.Join(dir, ".sandboxes.json.tmp-")} {
		if err := os.Symlink(victim, name); err != nil {
			t.Fatal(err)
		}
	}
	if err := atomicfile.Write(p, []byte("new\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(victim); string(got) != "mine\n" {
		t.Errorf("victim now holds %q", got)
	}
	if fi, _ := os.Stat(victim); fi.Mode().Perm() != 0o644 {
		t.Errorf("victim's mode changed to %v", fi.Mode().Perm())
	}
}

// On a full disk the write fails, the old file keeps every byte and no
// temporary file is left behind.
func TestWriteOnAFullDiskKeepsTheOldFile(t *testing.T) {
	dir := smallfs.Mount(t, 64<<10)
	p := filepath.Join(dir, "sandboxes.json")
	old := []byte(strings.Repeat("old registry\n", 100))
	if err := atomicfile.Write(p, old, 0o600); err != nil {
		t.Fatal(err)
	}
	smallfs.Fill(t, dir)
	err := atomicfile.Write(p, bytes.Repeat([]byte("new registry\n"), 200), 0o600)
	if err == nil {
		t.Fatal("write on a full disk succeeded")
	}
	if !strings.Contains(err.Error(), "no space left") {
		t.Errorf("error %q does not say the disk is full", err)
	}
	if got, _ := os.ReadFile(p); !bytes.Equal(got, old) {
		t.Errorf("the old file was changed: %d bytes, want %d", len(got), len(old))
	}
	for _, n := range readDir(t, dir) {
		if strings.Contains(n, ".tmp-") {
			t.Errorf("temporary file %s left behind", n)
		}
	}
}

func TestSymlinkReplacesTheLink(t *testing.T) {
	dir := t.TempDir()
	link := filepath.Join(dir, "runner")
	for _, target := range []string{"/nix/store/a-runner", "/srv/b-runner"} {
		if err := atomicfile.Symlink(target, link); err != nil {
			t.Fatal(err)
		}
		if got, _ := os.Readlink(link); got != target {
			t.Errorf("link points at %q; want %q", got, target)
		}
	}
	if names := readDir(t, dir); len(names) != 1 {
		t.Errorf("directory holds %v; want only the link", names)
	}
}

// A Write killed before its rename leaves a temporary file; RemoveLeftovers
// removes exactly those of the given path.
func TestRemoveLeftovers(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "flake.nix")
	for _, name := range []string{".flake.nix.tmp-123", ".flake.nix.tmp-abc", "flake.nix", ".other.tmp-1", "flake.lock"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := atomicfile.RemoveLeftovers(path); err != nil {
		t.Fatal(err)
	}
	entries, _ := os.ReadDir(dir)
	var got []string
	for _, e := range entries {
		got = append(got, e.Name())
	}
	if want := ".other.tmp-1 flake.lock flake.nix"; strings.Join(got, " ") != want {
		t.Errorf("left %q; want %q", strings.Join(got, " "), want)
	}
}

func TestReadJSON(t *testing.T) {
	dir := t.TempDir()
	var v struct{ A int }
	if err := atomicfile.ReadJSON(filepath.Join(dir, "missing.json"), "test file", &v); err != nil || v.A != 0 {
		t.Fatalf("missing file: %v, %+v; want nil and v untouched", err, v)
	}
	for name, tc := range map[string]struct {
		data []byte
		want string
	}{
		"ok":        {[]byte(`{"A": 7}`), ""},
		"corrupt":   {[]byte(`{"A": `), "corrupt test file"},
		"too large": {append(append([]byte(`{"A": 1, "B": "`), bytes.Repeat([]byte("x"), 2<<20)...), `"}`...), "is too large"},
	} {
		p := filepath.Join(dir, name+".json")
		if err := os.WriteFile(p, tc.data, 0o600); err != nil {
			t.Fatal(err)
		}
		err := atomicfile.ReadJSON(p, "test file", &v)
		switch {
		case tc.want == "" && (err != nil || v.A != 7):
			t.Errorf("%s: %v, %+v; want A=7", name, err, v)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%s: %v; want an error containing %q", name, err, tc.want)
		}
	}
}
