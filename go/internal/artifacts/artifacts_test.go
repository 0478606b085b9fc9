package artifacts

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

func write(t *testing.T, p, content string, mode os.FileMode) {
	t.Helper()
	os.MkdirAll(filepath.Dir(p), 0o755)
	if err := os.WriteFile(p, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	os.Chmod(p, mode)
}

// tree lists every path under dir with its type and content.
func tree(dir string) map[string]string {
	m := map[string]string{}
	filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return nil
		}
		rel, _ := filepath.Rel(dir, p)
		switch {
		case fi.Mode()&os.ModeSymlink != 0:
			l, _ := os.Readlink(p)
			m[rel] = "link " + l
		case fi.Mode().IsRegular():
			b, _ := os.ReadFile(p)
			m[rel] = fi.Mode().String() + " " + string(b)
		default:
			m[rel] = fi.Mode().String()
		}
		return nil
	})
	return m
}

func TestCopyCopiesBuildOutputAndNothingElse(t *testing.T) {
	base := t.TempDir()
	ws, project, home := filepath.Join(base, "ws"), filepath.Join(base, "project"), filepath.Join(base, "home")
	write(t, filepath.Join(home, ".ssh", "id_ed25519"), "secret\n", 0o600)
	write(t, filepath.Join(home, ".bashrc"), "mine\n", 0o644)
	write(t, filepath.Join(ws, "dist", "app.js"), "js\n", 0o644)
	write(t, filepath.Join(ws, "dist", "sub", "run.sh"), "#!/bin/sh\n", 0o755)
	write(t, filepath.Join(ws, "dist", "suid"), "x\n", 0o4755)
	write(t, filepath.Join(ws, "target", "release", "bin"), "elf\n", 0o755)
	write(t, filepath.Join(ws, "src", "main.go"), "not an artifact\n", 0o644)
	os.Symlink(filepath.Join(home, ".ssh"), filepath.Join(ws, "dist", "keys"))
	os.Symlink(filepath.Join(home, ".bashrc"), filepath.Join(ws, "dist", "bashrc"))
	os.Symlink(home, filepath.Join(ws, "build"))             // the whole directory is a link
	os.Symlink("../../../home", filepath.Join(ws, "out"))    // relative escape
	syscall.Mkfifo(filepath.Join(ws, "dist", "fifo"), 0o644) // special files stay behind
	// The project already has output; one of its entries is a link out of it.
	write(t, filepath.Join(project, "dist", "old.js"), "old\n", 0o644)
	write(t, filepath.Join(project, "dist", "app.js"), "previous\n", 0o644)
	os.MkdirAll(filepath.Join(project, "target"), 0o755)
	os.Symlink(filepath.Join(home, ".bashrc"), filepath.Join(project, "target", "release"))
	homeBefore := tree(home)

	rep, err := Copy(context.Background(), ws, project)
	if err != nil {
		t.Fatal(err)
	}
	got := tree(project)
	want := map[string]string{
		"dist/app.js":     "-rw-r--r-- js\n",
		"dist/old.js":     "-rw-r--r-- old\n",
		"dist/sub/run.sh": "-rwxr-xr-x #!/bin/sh\n",
		"dist/suid":       "-rwxr-xr-x x\n",
		"target/release":  "link " + filepath.Join(home, ".bashrc"),
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %q, want %q", k, got[k], v)
		}
	}
	for k := range got {
		if strings.Contains(k, "keys") || strings.Contains(k, "bashrc") || strings.Contains(k, "fifo") || strings.HasPrefix(k, "build") || strings.HasPrefix(k, "out") || strings.HasPrefix(k, "src") {
			t.Errorf("%s should not have been copied", k)
		}
	}
	if d := tree(home); len(d) != len(homeBefore) || d[".bashrc"] != homeBefore[".bashrc"] || d[".ssh/id_ed25519"] != homeBefore[".ssh/id_ed25519"] {
		t.Errorf("home changed:\n%v\nwas\n%v", d, homeBefore)
	}
	reasons := map[string]string{}
	for _, s := range rep.Skipped {
		reasons[s.Path] = s.Reason
	}
	for p, want := range map[string]string{"dist/keys": "symbolic link", "dist/bashrc": "symbolic link",
		"dist/fifo": "named pipe", "build": "symbolic link", "out": "symbolic link", "target/release": "symbolic link"} {
		if !strings.Contains(reasons[p], want) {
			t.Errorf("skipped %s: reason %q, want it to mention %q", p, reasons[p], want)
		}
	}
	if len(rep.Copied) != 3 {
		t.Errorf("copied %v, want 3 files", rep.Copied)
	}
}

func TestCopyWithoutBuildDirectories(t *testing.T) {
	rep, err := Copy(context.Background(), t.TempDir(), t.TempDir())
	if err != nil || len(rep.Copied) != 0 || len(rep.Skipped) != 0 {
		t.Fatalf("%+v, %v", rep, err)
	}
}
