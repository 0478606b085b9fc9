package sshconfig

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/keystone-agent/keystone/internal/atomicfile"
)

// header opens the file --install writes; the user's own config is never it.
const header = "# Written by `keystone agent ssh-config --install`; `start` and `destroy` rewrite it.\n# Do not edit: your own entries belong in ~/.ssh/config.\n"

// WriteIncluded writes the file ~/.ssh/config includes: every block, atomically.
func WriteIncluded(path string, blocks []string) error {
	data := header
	for _, b := range blocks {
		data += "\n" + b
	}
	return atomicfile.Write(path, []byte(data), 0o600)
}

// IncludeLine is the one line Install adds to the user's ssh config.
func IncludeLine(included string) (string, error) {
	q, err := quote(included)
	if err != nil {
		return "", err
	}
	return "Include " + q, nil
}

// ErrLinked refuses to edit an ssh config that is a symbolic link: it is
// managed elsewhere (home-manager links it into the read-only Nix store; a
// dotfiles repository links it into itself), and replacing the link with a
// file would silently detach it.
var ErrLinked = errors.New("is a symbolic link")

// Install adds line as the first line of the ssh config at path (created,
// with ~/.ssh, when missing), unless a line equal to it is there already.
// First, because an Include after a `Host` line would apply to that host
// only. Every other byte of the file is kept, and its mode too. It reports
// whether the file changed.
func Install(path, line string) (bool, error) {
	fi, err := os.Lstat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return false, err
		}
		return true, atomicfile.Write(path, []byte(line+"\n"), 0o600)
	case err != nil:
		return false, err
	case fi.Mode()&fs.ModeSymlink != 0:
		return false, fmt.Errorf("%q %w", path, ErrLinked)
	case !fi.Mode().IsRegular():
		return false, fmt.Errorf("%q is not a regular file", path)
	}
	old, err := os.ReadFile(path)
	if err != nil {
		return false, err
	}
	if hasLine(old, line) {
		return false, nil
	}
	return true, atomicfile.Write(path, append([]byte(line+"\n"), old...), fi.Mode().Perm())
}

// hasLine reports whether data has a line equal to line, give or take white
// space and the keyword's case (ssh_config keywords are case-insensitive,
// paths are not).
func hasLine(data []byte, line string) bool {
	want := strings.Fields(line)
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		got := strings.Fields(sc.Text())
		if len(got) == len(want) && len(got) > 0 && strings.EqualFold(got[0], want[0]) &&
			strings.Join(got[1:], " ") == strings.Join(want[1:], " ") {
			return true
		}
	}
	return false
}
