package testguest

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/binary"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// fakeBzImage wraps payload (already compressed) the way the kernel build
// does: boot sector and setup, then the payload with the uncompressed size
// appended, located by the boot protocol header.
func fakeBzImage(payload []byte, size uint32) []byte {
	const setupSects = 3
	img := make([]byte, (setupSects+1)*512)
	img[offSetupSects] = setupSects
	copy(img[offHeaderMagic:], "HdrS")
	binary.LittleEndian.PutUint16(img[offVersion:], 0x20f)
	const payloadOffset = 100
	img = append(img, make([]byte, payloadOffset)...)
	binary.LittleEndian.PutUint32(img[offPayloadOffset:], payloadOffset)
	binary.LittleEndian.PutUint32(img[offPayloadLength:], uint32(len(payload)+4))
	img = append(img, payload...)
	img = binary.LittleEndian.AppendUint32(img, size)
	return append(img, "trailing signature"...)
}

func gzipped(t *testing.T, data []byte) []byte {
	var b bytes.Buffer
	w := gzip.NewWriter(&b)
	w.Write(data)
	w.Close()
	return b.Bytes()
}

func compressWith(t *testing.T, data []byte, tool string, args ...string) []byte {
	if _, err := exec.LookPath(tool); err != nil {
		t.Skipf("%s is not installed", tool)
	}
	cmd := exec.Command(tool, args...)
	cmd.Stdin = bytes.NewReader(data)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s: %v", tool, err)
	}
	return out
}

func TestBzPayloadErrors(t *testing.T) {
	good := fakeBzImage(gzipped(t, []byte("x")), 1)
	old := bytes.Clone(good)
	binary.LittleEndian.PutUint16(old[offVersion:], 0x207)
	outside := bytes.Clone(good)
	binary.LittleEndian.PutUint32(outside[offPayloadLength:], 1<<20)
	for _, tc := range []struct {
		name string
		img  []byte
		want string
	}{
		{"not a bzImage", []byte(strings.Repeat("ELF!", 200)), `no "HdrS" boot header`},
		{"short file", []byte("HdrS"), `no "HdrS" boot header`},
		{"old protocol", old, "boot protocol 2.07 is too old"},
		{"payload outside", outside, "lies outside"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := extractVmlinux(context.Background(), tc.img)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v; want an error containing %q", err, tc.want)
			}
		})
	}
}

func TestVmlinuxRejects(t *testing.T) {
	notELF := []byte("this is not an ELF kernel")
	for _, tc := range []struct {
		name string
		img  []byte
		want string
	}{
		{"unknown compression", fakeBzImage([]byte("LZ4\x02abc"), 3), "unsupported kernel compression"},
		{"size mismatch", fakeBzImage(gzipped(t, notELF), 7), "the bzImage says 7"},
		{"not ELF", fakeBzImage(gzipped(t, notELF), uint32(len(notELF))), "not an ELF file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := extractVmlinux(context.Background(), tc.img)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v; want an error containing %q", err, tc.want)
			}
		})
	}
}

// TestVmlinuxFormats wraps a small ELF file in each format: it has no PVH
// note, so after decompression the last check must be the one that fails.
func TestVmlinuxFormats(t *testing.T) {
	self, err := os.ReadFile("/bin/true")
	if err != nil {
		t.Skip("cannot read /bin/true")
	}
	for _, tc := range []struct {
		name string
		pack func() []byte
	}{
		{"gzip", func() []byte { return gzipped(t, self) }},
		{"xz", func() []byte { return compressWith(t, self, "xz", "-c", "--check=crc32") }},
		{"zstd", func() []byte { return compressWith(t, self, "zstd", "-q", "-c") }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := extractVmlinux(context.Background(), fakeBzImage(tc.pack(), uint32(len(self))))
			if err == nil || !strings.Contains(err.Error(), "no PVH entry point") {
				t.Fatalf("got %v; want the payload decompressed and refused for its missing PVH note", err)
			}
		})
	}
}

// TestVmlinuxDebianKernel extracts the installed Debian kernel.
func TestVmlinuxDebianKernel(t *testing.T) {
	kernels, _ := filepath.Glob("/boot/vmlinuz-*")
	if len(kernels) == 0 {
		t.Skip("no kernel in /boot (Debian package \"linux-image-amd64\")")
	}
	bz, err := os.ReadFile(kernels[0])
	if err != nil {
		t.Skip(err)
	}
	out, err := extractVmlinux(context.Background(), bz)
	if err != nil {
		t.Fatal(err)
	}
	if len(out) < len(bz) {
		t.Fatalf("vmlinux is %d bytes, smaller than the %d-byte bzImage", len(out), len(bz))
	}
}
