// Package setup prepares what every benchmark starts from: a scratch
// directory with a keystone built from this module, a private HOME, and a
// project repository with one commit.
package setup

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
)

// Dirs is one benchmark's scratch directory and what is in it.
type Dirs struct {
	Work string // the scratch directory; remove it when done
	Bin  string // keystone, built from ./cmd/keystone
	Home string // a private HOME (its state directory)
	Repo string // the project, one commit
}

// New makes the scratch directory (named after prefix) and fills it. It
// runs from go/.
func New(prefix string) (*Dirs, error) {
	work, err := os.MkdirTemp("", prefix)
	if err != nil {
		return nil, err
	}
	d := &Dirs{Work: work, Bin: filepath.Join(work, "keystone"), Home: filepath.Join(work, "home"), Repo: filepath.Join(work, "app")}
	build := exec.Command("go", "build", "-o", d.Bin, "./cmd/keystone")
	build.Env = append(os.Environ(), "CGO_ENABLED=0") // as lib/package.nix builds it: static, a faster start
	if out, err := build.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("go build: %v: %s", err, out)
	}
	if err := os.MkdirAll(d.Home, 0o700); err != nil {
		return nil, err
	}
	return d, repo(d.Repo)
}

// repo makes dir a git repository with a README committed.
func repo(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "README.md"), []byte("bench\n"), 0o644); err != nil {
		return err
	}
	for _, args := range [][]string{{"init", "-q", "-b", "main"}, {"add", "-A"}, {"-c", "user.name=b", "-c", "user.email=b@example.invalid", "commit", "-q", "-m", "init"}} {
		c := exec.Command("git", args...)
		c.Dir = dir
		if out, err := c.CombinedOutput(); err != nil {
			return fmt.Errorf("git %v: %v: %s", args, err, out)
		}
	}
	return nil
}
