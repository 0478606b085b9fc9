// Package setup prepares what every benchmark starts from: a keystone built
// from this module, and a project repository with one commit.
package setup

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
)

// Keystone builds ./cmd/keystone (run from go/) into bin.
func Keystone(bin string) error {
	if out, err := exec.Command("go", "build", "-o", bin, "./cmd/keystone").CombinedOutput(); err != nil {
		return fmt.Errorf("go build: %v: %s", err, out)
	}
	return nil
}

// Repo makes dir a git repository with a README committed.
func Repo(dir string) error {
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
