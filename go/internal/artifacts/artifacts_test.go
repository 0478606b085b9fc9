package artifacts

import (
	"context"
	"os"
	"path"
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

// A 10 GB sparse file holding a little data stays sparse (issue 14 item 10).
func TestCopyKeepsSparseFilesSparse(t *testing.T) {
	base := t.TempDir()
	ws, project := filepath.Join(base, "ws"), filepath.Join(base, "project")
	os.MkdirAll(filepath.Join(ws, "dist"), 0o755)
	os.MkdirAll(project, 0o755)
	f, err := os.Create(filepath.Join(ws, "dist", "disk.img"))
	if err != nil {
		t.Fatal(err)
	}
	f.WriteAt([]byte("header"), 0)
	f.WriteAt([]byte("middle"), 5<<30)
	f.Truncate(10 << 30)
	f.Close()
	rep, err := Copy(context.Background(), ws, project)
	if err != nil || len(rep.Copied) != 1 {
		t.Fatalf("%+v, %v", rep, err)
	}
	var st syscall.Stat_t
	if err := syscall.Stat(filepath.Join(project, "dist", "disk.img"), &st); err != nil {
		t.Fatal(err)
	}
	if st.Size != 10<<30 || st.Blocks*512 > 1<<20 {
		t.Errorf("copy is %d bytes with %d bytes on disk, want 10 GiB with almost nothing on disk", st.Size, st.Blocks*512)
	}
	got := make([]byte, 6)
	g, _ := os.Open(filepath.Join(project, "dist", "disk.img"))
	g.ReadAt(got, 5<<30)
	g.Close()
	if string(got) != "middle" || rep.Bytes > 1<<20 {
		t.Errorf("data %q, %d bytes counted", got, rep.Bytes)
	}
}

// A tree deeper than MaxDepth is copied down to the limit and the rest named;
// every level costs the same whatever its depth (it used to be cubic).
func TestCopyDeepTree(t *testing.T) {
	base := t.TempDir()
	ws, project := filepath.Join(base, "ws"), filepath.Join(base, "project")
	os.MkdirAll(project, 0o755)
	dir, err := os.OpenRoot(base)
	if err != nil {
		t.Fatal(err)
	}
	p := "ws/dist"
	os.MkdirAll(filepath.Join(base, p), 0o755)
	for i := 0; i < MaxDepth+40; i++ { // built one level at a time: paths outgrow PATH_MAX
		sub, err := dir.OpenRoot(path.Base(p))
		if i == 0 {
			sub, err = dir.OpenRoot(p)
		}
		if err != nil {
			t.Fatal(err)
		}
		dir.Close()
		dir = sub
		if f, err := dir.Create("f"); err == nil {
			f.WriteString("x")
			f.Close()
		}
		dir.Mkdir("d", 0o755)
		p = "d"
	}
	dir.Close()
	rep, err := Copy(context.Background(), ws, project)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Copied) != MaxDepth {
		t.Errorf("copied %d files, want %d (one per level)", len(rep.Copied), MaxDepth)
	}
	if len(rep.Skipped) != 1 || !strings.Contains(rep.Skipped[0].Reason, "deep") {
		t.Errorf("skipped %+v", rep.Skipped)
	}
}

// A file named like a temporary file of an older keystone does not block its
// neighbour, and a copy over the data limit is skipped, leaving nothing behind.
func TestCopyTemporaryNamesAndLimit(t *testing.T) {
	base := t.TempDir()
	ws, project := filepath.Join(base, "ws"), filepath.Join(base, "project")
	write(t, filepath.Join(ws, "dist", ".keystone-tmp-app.js"), "planted\n", 0o644)
	write(t, filepath.Join(ws, "dist", "app.js"), "js\n", 0o644)
	write(t, filepath.Join(ws, "dist", "zbig.bin"), strings.Repeat("x", 100), 0o644)
	os.MkdirAll(project, 0o755)
	src, _ := os.OpenRoot(ws)
	dst, _ := os.OpenRoot(project)
	defer src.Close()
	defer dst.Close()
	c := &copier{rep: &Report{}, maxBytes: 50}
	fi, _ := src.Lstat("dist")
	if err := c.entry(context.Background(), src, dst, "dist", "dist", fi, 1); err != nil {
		t.Fatal(err)
	}
	if strings.Join(c.rep.Copied, " ") != "dist/.keystone-tmp-app.js dist/app.js" {
		t.Errorf("copied %v", c.rep.Copied)
	}
	if len(c.rep.Skipped) != 1 || c.rep.Skipped[0].Path != "dist/zbig.bin" || !strings.Contains(c.rep.Skipped[0].Reason, "limit") {
		t.Errorf("skipped %+v", c.rep.Skipped)
	}
	entries, _ := os.ReadDir(filepath.Join(project, "dist"))
	if len(entries) != 2 {
		t.Errorf("project's dist holds %d entries, want 2 (no temporary left)", len(entries))
	}
}
