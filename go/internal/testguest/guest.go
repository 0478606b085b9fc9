package testguest

import (
	"bytes"
	"context"
	"debug/elf"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
)

// MissingError names a program or file the builder needs and the Debian
// package that provides it.
type MissingError struct {
	Program string
	Package string
}

func (e *MissingError) Error() string {
	return fmt.Sprintf("%q not found: install the Debian package %q", e.Program, e.Package)
}

// programs the guest needs, with the Debian package of each.
var programs = []struct{ path, pkg string }{
	{"/bin/busybox", "busybox-static"},
	{"/usr/sbin/dropbear", "dropbear-bin"},
	{"/usr/bin/dropbearconvert", "dropbear-bin"},
	{"/usr/bin/git", "git"},
	// The user guide's examples run `bash -c`; busybox has no bash applet.
	// bash is the sandbox user's shell, as the agents expect.
	{"/bin/bash", "bash"},
	// The agent session (docs/agents.md).
	{"/usr/bin/tmux", "tmux"},
}

// guestModules are the kernel modules the guest loads, dependencies added
// from modules.dep: virtio-mmio devices (microvm's bus), 9p shares, the
// network card, and the ACPI power button with evdev so acpid sees it.
var guestModules = []string{"virtio_mmio", "9pnet_virtio", "9p", "virtio_net", "button", "evdev"}

// gitCoreDir holds git's helpers; the guest gets the links to git itself
// (builtins run by name, e.g. git-upload-pack) and the POSIX shell scripts.
const gitCoreDir = "/usr/lib/git-core"

// host is what the builder found on the host.
type host struct {
	kernel  string // bzImage
	release string // its modules directory under /lib/modules
}

// findKernel returns the kernel to boot: opt when set, else the newest
// /boot/vmlinuz-* that has a modules directory.
func findKernel(opt string) (host, error) {
	if opt != "" {
		rel := strings.TrimPrefix(filepath.Base(opt), "vmlinuz-")
		if _, err := os.Stat(filepath.Join("/lib/modules", rel, "modules.dep")); err != nil {
			return host{}, fmt.Errorf("kernel %q has no modules in %q", opt, filepath.Join("/lib/modules", rel))
		}
		return host{kernel: opt, release: rel}, nil
	}
	matches, _ := filepath.Glob("/boot/vmlinuz-*")
	var best host
	var bestTime int64
	for _, m := range matches {
		rel := strings.TrimPrefix(filepath.Base(m), "vmlinuz-")
		fi, err := os.Stat(m)
		if err != nil {
			continue
		}
		if _, err := os.Stat(filepath.Join("/lib/modules", rel, "modules.dep")); err != nil {
			continue
		}
		if t := fi.ModTime().UnixNano(); best.kernel == "" || t > bestTime {
			best, bestTime = host{kernel: m, release: rel}, t
		}
	}
	if best.kernel == "" {
		return host{}, &MissingError{Program: "/boot/vmlinuz-*", Package: "linux-image-amd64"}
	}
	return best, nil
}

// guestTree plans the guest's root file system.
func guestTree(ctx context.Context, h host, scripts map[string][]byte, ag agentTree) (tree, error) {
	t := tree{".": {kind: 'd', perm: 0o755}} // else the root is world-writable
	for _, d := range []string{"proc", "sys", "dev", "run", "tmp", "root", "workspace", "home/sandbox", "etc/dropbear", "var"} {
		t.dir(d, 0o755)
	}
	t.dir("tmp", 0o1777)
	t.dir("root", 0o700)
	t.symlink("var/run", "../run")
	// The kernel opens /dev/console before /init runs and devtmpfs is not
	// mounted yet: without this node init has no stdin, stdout or stderr.
	t.add("dev/console", &node{kind: 'c', perm: 0o600, major: 5, minor: 1})

	libs := map[string]bool{}
	for _, p := range programs {
		if _, err := os.Stat(p.path); err != nil {
			return nil, &MissingError{Program: p.path, Package: p.pkg}
		}
		t.copy(strings.TrimPrefix(p.path, "/"), p.path, 0o755)
		if err := sharedLibs(p.path, libs); err != nil {
			return nil, err
		}
	}
	if err := addBusyboxApplets(ctx, t); err != nil {
		return nil, err
	}
	if err := addGitCore(t, libs); err != nil {
		return nil, err
	}
	if ag.m != nil {
		if err := addAgents(t, ag, libs); err != nil {
			return nil, err
		}
	}
	if err := addSessionFiles(t); err != nil {
		return nil, err
	}
	for lib := range libs {
		real, err := filepath.EvalSymlinks(lib)
		if err != nil {
			return nil, fmt.Errorf("failed to resolve library %q: %w", lib, err)
		}
		t.copy(strings.TrimPrefix(lib, "/"), real, 0o755)
	}
	if err := addModules(t, h.release); err != nil {
		return nil, err
	}
	for name, data := range scripts {
		perm := fs.FileMode(0o644)
		if bytes.HasPrefix(data, []byte("#!")) {
			perm = 0o755
		}
		t.file(name, perm, data)
	}
	// Busybox init runs as /init: the kernel's default in an initramfs.
	t.symlink("init", "/bin/busybox")
	return t, nil
}

// libDirs are the loader's default directories on x86-64 Debian (multiarch
// first); Debian's binaries carry no RPATH or RUNPATH.
var libDirs = []string{"/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/lib64", "/usr/lib64", "/lib", "/usr/lib"}

// sharedLibs adds the loader and the libraries prog needs, transitively.
// It reads the ELF headers itself: ldd costs a quarter of a second per
// program here, and planning runs on every Build, cached or not.
func sharedLibs(prog string, libs map[string]bool) error {
	f, err := elf.Open(prog)
	if err != nil {
		return fmt.Errorf("failed to read %q: %w", prog, err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			interp, err := io.ReadAll(p.Open())
			if err != nil {
				return fmt.Errorf("failed to read the loader of %q: %w", prog, err)
			}
			libs[string(bytes.TrimRight(interp, "\x00"))] = true
		}
	}
	needed, err := f.ImportedLibraries()
	if err != nil {
		return fmt.Errorf("failed to read the libraries of %q: %w", prog, err)
	}
	for _, lib := range needed {
		p := findLib(lib)
		if p == "" {
			return fmt.Errorf("library %q of %q not found in %s", lib, prog, strings.Join(libDirs, ", "))
		}
		if libs[p] {
			continue
		}
		libs[p] = true
		if err := sharedLibs(p, libs); err != nil {
			return err
		}
	}
	return nil
}

func findLib(name string) string {
	for _, d := range libDirs {
		p := filepath.Join(d, name)
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	return ""
}

// addBusyboxApplets links every applet the host's busybox has.
func addBusyboxApplets(ctx context.Context, t tree) error {
	out, err := exec.CommandContext(ctx, "/bin/busybox", "--list-full").Output()
	if err != nil {
		return fmt.Errorf("failed to list busybox applets: %w", err)
	}
	for _, a := range strings.Fields(string(out)) {
		if _, taken := t[a]; !taken && a != "linuxrc" {
			t.symlink(a, "/bin/busybox")
		}
	}
	return nil
}

// addGitCore adds git's exec-path: links to git and the shell scripts; the
// Perl scripts and the curl-based helpers are left out.
func addGitCore(t tree, libs map[string]bool) error {
	entries, err := os.ReadDir(gitCoreDir)
	if err != nil {
		return &MissingError{Program: gitCoreDir, Package: "git"}
	}
	dst := strings.TrimPrefix(gitCoreDir, "/")
	t.symlink(dst+"/git", "/usr/bin/git")
	for _, e := range entries {
		src := filepath.Join(gitCoreDir, e.Name())
		switch {
		case e.Type()&fs.ModeSymlink != 0:
			if target, _ := os.Readlink(src); target == "git" {
				t.symlink(dst+"/"+e.Name(), "git")
			}
		case e.Type().IsRegular() && isShellScript(src):
			t.copy(dst+"/"+e.Name(), src, 0o755)
		case e.Name() == "git-sh-setup" || e.Name() == "git-sh-i18n":
			t.copy(dst+"/"+e.Name(), src, 0o644) // sourced by the scripts
		case e.Name() == "git-sh-i18n--envsubst":
			t.copy(dst+"/"+e.Name(), src, 0o755)
			if err := sharedLibs(src, libs); err != nil {
				return err
			}
		}
	}
	tmpl := "/usr/share/git-core/templates"
	return filepath.WalkDir(tmpl, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil // templates are optional: git init works without them
		}
		rel := strings.TrimPrefix(p, "/")
		switch {
		case d.IsDir():
			t.dir(rel, 0o755)
		case d.Type().IsRegular():
			t.copy(rel, p, 0o644)
		}
		return nil
	})
}

func isShellScript(name string) bool {
	f, err := os.Open(name)
	if err != nil {
		return false
	}
	defer f.Close()
	head := make([]byte, 16)
	n, _ := f.Read(head)
	return bytes.HasPrefix(head[:n], []byte("#!/bin/sh"))
}

// moduleDir is where the guest's modules live; the boot script loads them
// by file name with insmod, so no depmod data is needed in the guest.
const moduleDir = "lib/modules/keystone"

// addModules adds guestModules and their dependencies, and the load order
// as moduleDir/order.
func addModules(t tree, release string) error {
	dir := filepath.Join("/lib/modules", release)
	deps, err := readModulesDep(filepath.Join(dir, "modules.dep"))
	if err != nil {
		return err
	}
	builtin := readBuiltin(filepath.Join(dir, "modules.builtin"))
	order, err := moduleOrder(guestModules, deps, builtin)
	if err != nil {
		return fmt.Errorf("kernel %q: %w", release, err)
	}
	var list []string
	for _, rel := range order {
		base, comp := moduleFile(rel)
		t.add(moduleDir+"/"+base, &node{kind: 'f', perm: 0o644, src: filepath.Join(dir, rel), comp: comp})
		list = append(list, base)
	}
	t.file(moduleDir+"/order", 0o644, []byte(strings.Join(list, "\n")+"\n"))
	return nil
}

// moduleFile returns the uncompressed file name of a module path and how it is compressed.
func moduleFile(rel string) (string, *compression) {
	base := path.Base(rel)
	for _, c := range []struct {
		ext  string
		name string
	}{{".xz", "xz"}, {".zst", "zstd"}, {".gz", "gzip"}} {
		if strings.HasSuffix(base, c.ext) {
			for i := range compressions {
				if compressions[i].name == c.name {
					return strings.TrimSuffix(base, c.ext), &compressions[i]
				}
			}
		}
	}
	return base, nil
}

// modName is the canonical module name of a path in modules.dep.
func modName(rel string) string {
	base, _ := moduleFile(rel)
	return strings.ReplaceAll(strings.TrimSuffix(base, ".ko"), "-", "_")
}

// readModulesDep maps module names to their path and their dependencies' paths.
func readModulesDep(name string) (map[string][]string, error) {
	data, err := os.ReadFile(name)
	if err != nil {
		return nil, fmt.Errorf("failed to read the kernel's module list: %w", err)
	}
	deps := map[string][]string{}
	for _, line := range strings.Split(string(data), "\n") {
		mod, rest, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		deps[modName(mod)] = append([]string{mod}, strings.Fields(rest)...)
	}
	return deps, nil
}

func readBuiltin(name string) map[string]bool {
	data, _ := os.ReadFile(name)
	b := map[string]bool{}
	for _, l := range strings.Fields(string(data)) {
		b[modName(l)] = true
	}
	return b
}

// moduleOrder returns module paths so that every module follows its dependencies.
func moduleOrder(want []string, deps map[string][]string, builtin map[string]bool) ([]string, error) {
	var order []string
	done := map[string]bool{}
	var visit func(name string, depth int) error
	visit = func(name string, depth int) error {
		if done[name] || builtin[name] {
			return nil
		}
		d, ok := deps[name]
		if !ok {
			return fmt.Errorf("kernel module %q not found", name)
		}
		if depth > 64 {
			return fmt.Errorf("kernel module %q: dependency loop", name)
		}
		for _, dep := range d[1:] {
			if err := visit(modName(dep), depth+1); err != nil {
				return err
			}
		}
		done[name] = true
		order = append(order, d[0])
		return nil
	}
	for _, w := range want {
		if err := visit(strings.ReplaceAll(w, "-", "_"), 0); err != nil {
			return nil, err
		}
	}
	return order, nil
}
