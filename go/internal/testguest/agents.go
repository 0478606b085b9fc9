package testguest

import (
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/keystone-agent/keystone/internal/agents"
	"github.com/keystone-agent/keystone/internal/agentstore"
)

// agentMount is where the guest mounts the agent tree (9p tag "agents",
// read-only); /usr/bin links each program there, so every shell, login or
// not, finds the agents without a PATH of its own.
const agentMount = "opt/keystone/agents"

// agentTree is the unpacked agents the guest shares.
type agentTree struct {
	m   *agents.Manifest
	dir string // the tree in the agent cache
	key string // agentstore.Key: part of the guest's input hash
}

// ensureAgents returns the agent tree, or none (m nil) with NoAgents.
func ensureAgents(ctx context.Context, opts Options) (agentTree, error) {
	if opts.NoAgents {
		return agentTree{key: "none"}, nil
	}
	m, err := agents.Load()
	if err != nil {
		return agentTree{}, err
	}
	cache, err := cacheDir(opts.AgentCache, "agents")
	if err != nil {
		return agentTree{}, err
	}
	dir, err := agentstore.Ensure(ctx, m, agentstore.Options{CacheDir: cache, Step: opts.Step})
	if err != nil {
		return agentTree{}, fmt.Errorf("failed to get the agents for the test guest: %w", err)
	}
	return agentTree{m: m, dir: dir, key: agentstore.Key(m)}, nil
}

// addAgents links every program of the manifest into /usr/bin and adds the
// host libraries that its native programs load (Claude Code and Node are
// glibc programs, Codex is static).
func addAgents(t tree, ag agentTree, libs map[string]bool) error {
	t.dir(agentMount, 0o755)
	for _, id := range ag.m.PackageIDs() {
		for name, rel := range ag.m.Packages[id].Bin {
			t.symlink("usr/bin/"+name, "/"+agentMount+"/"+agentstore.BinDir+"/"+name)
			prog := filepath.Join(ag.dir, agentstore.PkgDir, id, filepath.FromSlash(rel))
			if isELF(prog) {
				if err := sharedLibs(prog, libs); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

func isELF(name string) bool {
	f, err := os.Open(name)
	if err != nil {
		return false
	}
	defer f.Close()
	head := make([]byte, 4)
	n, _ := f.Read(head)
	return bytes.Equal(head[:n], []byte("\x7fELF"))
}

// terminals are the terminfo entries the guest has (Debian's ncurses-base,
// Essential): what an attaching terminal and tmux itself most often set.
var terminals = []string{"d/dumb", "l/linux", "v/vt100", "x/xterm", "x/xterm-color", "x/xterm-256color",
	"s/screen", "s/screen-256color", "t/tmux", "t/tmux-256color"}

const terminfoDir = "/lib/terminfo"

// utf8Locale is glibc's C.UTF-8 (libc-bin, Essential): tmux refuses to run
// without a UTF-8 locale.
const utf8Locale = "/usr/lib/locale/C.utf8"

// caBundle is Debian's CA bundle (ca-certificates): the agents call HTTPS APIs.
const caBundle = "/etc/ssl/certs/ca-certificates.crt"

// addSessionFiles adds what terminal programs and TLS clients expect.
func addSessionFiles(t tree) error {
	for _, term := range terminals {
		src := filepath.Join(terminfoDir, term)
		if _, err := os.Stat(src); err != nil {
			return &MissingError{Program: src, Package: "ncurses-base"}
		}
		t.copy("lib/terminfo/"+term, src, 0o644)
	}
	err := filepath.WalkDir(utf8Locale, func(p string, d fs.DirEntry, err error) error {
		switch {
		case err != nil:
			return &MissingError{Program: utf8Locale, Package: "libc-bin"}
		case d.IsDir():
			t.dir(p[1:], 0o755)
		case d.Type().IsRegular():
			t.copy(p[1:], p, 0o644)
		}
		return nil
	})
	if err != nil {
		return err
	}
	if _, err := os.Stat(caBundle); err != nil {
		return &MissingError{Program: caBundle, Package: "ca-certificates"}
	}
	t.copy(caBundle[1:], caBundle, 0o644)
	return nil
}

// copyTree copies the agent tree src (through a link) to dst: files are
// hard-linked where possible, links are kept as they are (all relative).
func copyTree(src, dst string) error {
	root, err := filepath.EvalSymlinks(src)
	if err != nil {
		return err
	}
	return filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		target := filepath.Join(dst, rel)
		switch {
		case d.IsDir():
			return os.MkdirAll(target, 0o755)
		case d.Type()&fs.ModeSymlink != 0:
			link, err := os.Readlink(p)
			if err != nil {
				return err
			}
			return os.Symlink(link, target)
		default:
			return linkOrCopy(p, target)
		}
	})
}
