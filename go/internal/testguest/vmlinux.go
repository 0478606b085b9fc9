package testguest

import (
	"bytes"
	"compress/gzip"
	"context"
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os/exec"
)

// Offsets in the x86 boot protocol header (Documentation/arch/x86/boot.rst).
const (
	offSetupSects    = 0x1f1
	offHeaderMagic   = 0x202
	offVersion       = 0x206
	offPayloadOffset = 0x248
	offPayloadLength = 0x24c
)

// compression is one format a bzImage payload can use.
type compression struct {
	name  string
	magic []byte
	// tool decompresses stdin to stdout; nil means Go's own decoder.
	tool    []string
	pkgName string // the Debian package that has tool
}

var compressions = []compression{
	{name: "gzip", magic: []byte{0x1f, 0x8b}},
	{name: "xz", magic: []byte{0xfd, '7', 'z', 'X', 'Z', 0}, tool: []string{"xz", "-dc"}, pkgName: "xz-utils"},
	{name: "zstd", magic: []byte{0x28, 0xb5, 0x2f, 0xfd}, tool: []string{"zstd", "-dcq"}, pkgName: "zstd"},
}

// extractVmlinux returns the uncompressed ELF kernel inside a bzImage.
//
// qemu's microvm machine boots an ELF vmlinux through its PVH entry point;
// a bzImage would decompress itself inside the guest, which costs seconds
// under software emulation. The payload is located with the boot protocol
// header (version 2.08 and later), as the kernel tree's extract-vmlinux does
// by searching for magic numbers, and its size is checked against the
// uncompressed length the kernel build appends to it.
func extractVmlinux(ctx context.Context, bzImage []byte) ([]byte, error) {
	payload, size, err := bzPayload(bzImage)
	if err != nil {
		return nil, err
	}
	c, err := detect(payload)
	if err != nil {
		return nil, err
	}
	out, err := decompress(ctx, c, payload)
	if err != nil {
		return nil, err
	}
	if uint32(len(out)) != size {
		return nil, fmt.Errorf("decompressed kernel is %d bytes; the bzImage says %d", len(out), size)
	}
	if err := checkPVH(out); err != nil {
		return nil, err
	}
	return out, nil
}

// xenElfnotePhys32Entry is the ELF note type of the PVH entry point.
const xenElfnotePhys32Entry = 18

// checkPVH makes sure qemu can boot the ELF kernel: without a PVH entry
// note it refuses with "Error loading uncompressed kernel without PVH ELF Note".
func checkPVH(vmlinux []byte) error {
	f, err := elf.NewFile(bytes.NewReader(vmlinux))
	if err != nil {
		return fmt.Errorf("decompressed kernel is not an ELF file: %w", err)
	}
	for _, p := range f.Progs {
		if p.Type != elf.PT_NOTE {
			continue
		}
		notes, err := io.ReadAll(p.Open())
		if err != nil {
			return fmt.Errorf("failed to read the kernel's ELF notes: %w", err)
		}
		for len(notes) >= 12 {
			namesz := binary.LittleEndian.Uint32(notes[0:])
			descsz := binary.LittleEndian.Uint32(notes[4:])
			typ := binary.LittleEndian.Uint32(notes[8:])
			name := notes[12:min(len(notes), 12+int(namesz))]
			if typ == xenElfnotePhys32Entry && bytes.Equal(bytes.TrimRight(name, "\x00"), []byte("Xen")) {
				return nil
			}
			next := 12 + align4(namesz) + align4(descsz)
			if next > len(notes) {
				break
			}
			notes = notes[next:]
		}
	}
	return errors.New("the kernel has no PVH entry point (CONFIG_PVH): qemu's microvm machine cannot boot it")
}

func align4(n uint32) int { return int((n + 3) &^ 3) }

// bzPayload returns the compressed payload without the appended size, and that size.
func bzPayload(b []byte) ([]byte, uint32, error) {
	if len(b) < 0x250 || string(b[offHeaderMagic:offHeaderMagic+4]) != "HdrS" {
		return nil, 0, errors.New("not a bzImage: no \"HdrS\" boot header")
	}
	if v := binary.LittleEndian.Uint16(b[offVersion:]); v < 0x208 {
		return nil, 0, fmt.Errorf("bzImage boot protocol %d.%02d is too old: need 2.08 or later", v>>8, v&0xff)
	}
	setup := int(b[offSetupSects])
	if setup == 0 {
		setup = 4 // the boot protocol's rule for old images
	}
	start := (setup+1)*512 + int(binary.LittleEndian.Uint32(b[offPayloadOffset:]))
	n := int(binary.LittleEndian.Uint32(b[offPayloadLength:]))
	if n < 4 || start+n > len(b) {
		return nil, 0, fmt.Errorf("bzImage payload (offset %d, length %d) lies outside the %d-byte file", start, n, len(b))
	}
	p := b[start : start+n]
	return p[:n-4], binary.LittleEndian.Uint32(p[n-4:]), nil
}

func detect(payload []byte) (compression, error) {
	for _, c := range compressions {
		if bytes.HasPrefix(payload, c.magic) {
			return c, nil
		}
	}
	n := min(len(payload), 6)
	return compression{}, fmt.Errorf("unsupported kernel compression (payload starts with % x): gzip, xz and zstd are supported", payload[:n])
}

func decompress(ctx context.Context, c compression, payload []byte) ([]byte, error) {
	if c.tool == nil {
		r, err := gzip.NewReader(bytes.NewReader(payload))
		if err != nil {
			return nil, fmt.Errorf("failed to decompress the gzip kernel: %w", err)
		}
		r.Multistream(false)
		return io.ReadAll(r)
	}
	if _, err := exec.LookPath(c.tool[0]); err != nil {
		return nil, &MissingError{Program: c.tool[0], Package: c.pkgName}
	}
	var out, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, c.tool[0], c.tool[1:]...)
	cmd.Stdin = bytes.NewReader(payload)
	cmd.Stdout = &out
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("failed to decompress the %s kernel with %q: %w: %s", c.name, c.tool[0], err, bytes.TrimSpace(stderr.Bytes()))
	}
	return out.Bytes(), nil
}
