// Package testguest builds the Debian test guest: a real runner directory
// (docs/runner-contract.md) that boots a small Linux guest with qemu, made
// only from Debian packages installed on the host (kernel, busybox-static,
// dropbear-bin, git). The end-to-end tests and users without Nix run it.
//
// It owns the image and its cache; it never starts a guest itself: booting
// is the runner's bin/microvm-run, under whoever runs it.
// docs/testguest.md describes the guest and the measured timings.
package testguest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"text/template"

	"github.com/keystone-agent/keystone/internal/announce"
)

// version changes whenever the builder's output changes for the same inputs.
const version = "keystone-testguest-1"

// Options configures Build. The zero value is ready to use.
type Options struct {
	// CacheDir holds one built runner per input hash. Default:
	// $XDG_CACHE_HOME/keystone/testguest, else ~/.cache/keystone/testguest.
	CacheDir string
	// Kernel is the bzImage to boot; its modules must be in
	// /lib/modules/<release> where the file is vmlinuz-<release>.
	// Default: the newest /boot/vmlinuz-* with modules.
	Kernel string
	// Out, when set, receives a standalone copy of the runner (files
	// hard-linked from the cache where possible) and Build returns it.
	// An existing Out must be empty or a runner an earlier Build wrote.
	Out string
	// Step, when set, is told each phase of an actual build as it begins (a
	// progress line); a runner found in the cache reports none.
	Step func(phase string)
}

func (o Options) step(phase string) {
	if o.Step != nil {
		o.Step(phase)
	}
}

// Runner directory layout.
const (
	runBin      = "bin/microvm-run"
	shutdownBin = "bin/microvm-shutdown"
	shareDir    = "share/keystone"
	runnerJSON  = shareDir + "/runner.json"
	networkSh   = shareDir + "/network" // sourced by microvm-run: the NICs
	vmlinuxFile = shareDir + "/vmlinux"
	initrdFile  = shareDir + "/initrd"
	// markerFile holds the input hash; it marks a directory Build may replace.
	markerFile = shareDir + "/testguest"
)

//go:embed files
var files embed.FS

// Build returns a runner directory for the test guest, building it when
// the cache has none for the current inputs (the kernel, every file copied
// into the guest, the scripts and the builder's version).
func Build(ctx context.Context, opts Options) (string, error) {
	cache, err := cacheDir(opts.CacheDir)
	if err != nil {
		return "", err
	}
	h, err := findKernel(opts.Kernel)
	if err != nil {
		return "", err
	}
	scripts, err := guestScripts()
	if err != nil {
		return "", err
	}
	t, err := guestTree(ctx, h, scripts)
	if err != nil {
		return "", err
	}
	runner, err := runnerFiles()
	if err != nil {
		return "", err
	}
	sum, err := inputHash(h, t, runner)
	if err != nil {
		return "", err
	}
	dir := filepath.Join(cache, sum)
	if _, err := os.Stat(filepath.Join(dir, markerFile)); err != nil {
		opts.step("packing the initrd")
		if err := build(ctx, cache, dir, sum, h, t, runner); err != nil {
			return "", err
		}
	}
	if opts.Out == "" {
		return dir, nil
	}
	opts.step("copying the runner to " + opts.Out)
	if err := export(dir, opts.Out); err != nil {
		return "", err
	}
	return opts.Out, nil
}

func cacheDir(opt string) (string, error) {
	if opt != "" {
		return filepath.Abs(opt)
	}
	base, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("cannot find a cache directory (set XDG_CACHE_HOME or HOME): %w", err)
	}
	return filepath.Join(base, "keystone", "testguest"), nil
}

// bootData fills the templates files/guest/*.tmpl.
type bootData struct {
	ModuleDir string
	// Announce is the line the guest writes to its console once sshd
	// listens (package announce).
	Announce string
}

// guestScripts returns the guest's own files, keyed by path in the guest.
func guestScripts() (map[string][]byte, error) {
	d := bootData{ModuleDir: moduleDir, Announce: announce.Line}
	boot, err := renderBoot(d)
	if err != nil {
		return nil, err
	}
	sshd, err := render("sshd.tmpl", d)
	if err != nil {
		return nil, err
	}
	m := map[string][]byte{"etc/keystone/boot": boot, "etc/keystone/sshd": sshd}
	for dst, src := range map[string]string{
		"etc/inittab":            "inittab",
		"etc/keystone/poweroff":  "poweroff",
		"etc/keystone/network":   "network",
		"etc/keystone/udhcpc":    "udhcpc",
		"etc/acpi/PWRF/00000080": "acpi-power",
		"etc/gitconfig":          "gitconfig",
		"etc/profile":            "profile",
	} {
		data, err := files.ReadFile("files/guest/" + src)
		if err != nil {
			return nil, err
		}
		m[dst] = data
	}
	m["etc/shells"] = []byte("/bin/sh\n")
	return m, nil
}

func renderBoot(d bootData) ([]byte, error) { return render("boot.tmpl", d) }

// render fills the template files/guest/<name>.
func render(name string, d bootData) ([]byte, error) {
	tmpl, err := template.ParseFS(files, "files/guest/"+name)
	if err != nil {
		return nil, err
	}
	var b bytes.Buffer
	if err := tmpl.Execute(&b, d); err != nil {
		return nil, fmt.Errorf("failed to render the guest's %s: %w", name, err)
	}
	return b.Bytes(), nil
}

// runnerFiles returns the runner's scripts and runner.json, keyed by path
// in the runner directory.
func runnerFiles() (map[string][]byte, error) {
	m := map[string][]byte{runnerJSON: []byte(`{"accel":"auto","networks":["user","tap","bridge"]}` + "\n")}
	for dst, src := range map[string]string{runBin: "microvm-run", shutdownBin: "microvm-shutdown", networkSh: "network"} {
		data, err := files.ReadFile("files/runner/" + src)
		if err != nil {
			return nil, err
		}
		m[dst] = data
	}
	return m, nil
}

func inputHash(h host, t tree, runner map[string][]byte) (string, error) {
	d := sha256.New()
	fmt.Fprintf(d, "%s\n", version)
	sum, err := fileSum(h.kernel)
	if err != nil {
		return "", fmt.Errorf("failed to read the kernel: %w", err)
	}
	fmt.Fprintf(d, "kernel %s\n", sum)
	if err := t.hash(d); err != nil {
		return "", err
	}
	for _, name := range []string{runBin, shutdownBin, runnerJSON, networkSh} {
		fmt.Fprintf(d, "runner %s %x\n", name, sha256.Sum256(runner[name]))
	}
	return hex.EncodeToString(d.Sum(nil))[:32], nil
}

// build writes the runner into a temporary directory next to dir and
// renames it into place, so a runner in the cache is always complete and
// concurrent builds of the same inputs do not trip over each other.
func build(ctx context.Context, cache, dir, sum string, h host, t tree, runner map[string][]byte) (err error) {
	if _, err := exec.LookPath("zstd"); err != nil {
		return &MissingError{Program: "zstd", Package: "zstd"}
	}
	if err := os.MkdirAll(cache, 0o755); err != nil {
		return fmt.Errorf("failed to create the cache directory: %w", err)
	}
	tmp, err := os.MkdirTemp(cache, ".build-")
	if err != nil {
		return fmt.Errorf("failed to create the cache directory: %w", err)
	}
	defer func() {
		if err != nil {
			os.RemoveAll(tmp)
		}
	}()
	if err := os.MkdirAll(filepath.Join(tmp, "bin"), 0o755); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Join(tmp, shareDir), 0o755); err != nil {
		return err
	}
	for name, data := range runner {
		perm := os.FileMode(0o644)
		if bytes.HasPrefix(data, []byte("#!")) {
			perm = 0o755
		}
		if err := os.WriteFile(filepath.Join(tmp, name), data, perm); err != nil {
			return err
		}
	}
	bz, err := os.ReadFile(h.kernel)
	if err != nil {
		return fmt.Errorf("failed to read the kernel: %w", err)
	}
	vmlinux, err := extractVmlinux(ctx, bz)
	if err != nil {
		return fmt.Errorf("failed to extract vmlinux from %q: %w", h.kernel, err)
	}
	if err := os.WriteFile(filepath.Join(tmp, vmlinuxFile), vmlinux, 0o644); err != nil {
		return err
	}
	if err := writeInitrd(ctx, t, filepath.Join(tmp, initrdFile)); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(tmp, markerFile), []byte(sum+"\n"), 0o644); err != nil {
		return err
	}
	if err := os.Chmod(tmp, 0o755); err != nil { // MkdirTemp made it private
		return err
	}
	if err := os.Rename(tmp, dir); err != nil {
		if _, statErr := os.Stat(filepath.Join(dir, markerFile)); statErr == nil {
			os.RemoveAll(tmp) // another build won the race with the same inputs
			return nil
		}
		return fmt.Errorf("failed to store the test guest in the cache: %w", err)
	}
	return nil
}

// writeInitrd writes the tree as a zstd-compressed cpio archive: zstd -3
// is ten times faster than gzip at the same size, and the kernel reads it.
func writeInitrd(ctx context.Context, t tree, name string) error {
	f, err := os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	defer f.Close()
	cmd := exec.CommandContext(ctx, "zstd", "-3", "-q", "-c")
	cmd.Stdout = f
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("failed to run zstd: %w", err)
	}
	werr := t.writeCPIO(ctx, in)
	in.Close()
	if err := cmd.Wait(); err != nil {
		return fmt.Errorf("failed to compress the initramfs with zstd: %w: %s", err, bytes.TrimSpace(stderr.Bytes()))
	}
	if werr != nil {
		return werr
	}
	return f.Close()
}

// export makes out a standalone copy of the runner in dir: a later
// `keystone agent start --runner out` must not depend on the cache.
func export(dir, out string) (err error) {
	out, err = filepath.Abs(out)
	if err != nil {
		return err
	}
	if err := replaceable(out); err != nil {
		return err
	}
	tmp, err := os.MkdirTemp(filepath.Dir(out), "."+filepath.Base(out)+".tmp-")
	if err != nil {
		return fmt.Errorf("failed to create %q: %w", out, err)
	}
	defer func() {
		if err != nil {
			os.RemoveAll(tmp)
		}
	}()
	for _, name := range []string{runBin, shutdownBin, runnerJSON, networkSh, vmlinuxFile, initrdFile, markerFile} {
		if err := linkOrCopy(filepath.Join(dir, name), filepath.Join(tmp, name)); err != nil {
			return fmt.Errorf("failed to write %q: %w", filepath.Join(out, name), err)
		}
	}
	if err := os.Chmod(tmp, 0o755); err != nil {
		return err
	}
	if err := os.RemoveAll(out); err != nil {
		return fmt.Errorf("failed to replace %q: %w", out, err)
	}
	if err := os.Rename(tmp, out); err != nil {
		return fmt.Errorf("failed to write %q: %w", out, err)
	}
	return nil
}

// replaceable refuses to overwrite anything but an empty directory or an
// earlier test guest runner, so a mistyped -out loses nothing.
func replaceable(out string) error {
	entries, err := os.ReadDir(out)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return nil
	case err != nil:
		return fmt.Errorf("refusing to overwrite %q: %w", out, err)
	case len(entries) == 0:
		return nil
	}
	if _, err := os.Stat(filepath.Join(out, markerFile)); err != nil {
		return fmt.Errorf("refusing to overwrite %q: it is not empty and not a test guest runner", out)
	}
	return nil
}

func linkOrCopy(src, dst string) error {
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	if err := os.Link(src, dst); err == nil {
		return nil
	}
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	fi, err := in.Stat()
	if err != nil {
		return err
	}
	o, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, fi.Mode().Perm())
	if err != nil {
		return err
	}
	if _, err := io.Copy(o, in); err != nil {
		o.Close()
		return err
	}
	return o.Close()
}
