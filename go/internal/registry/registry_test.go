package registry

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/keystone-agent/keystone/internal/egress"
	"github.com/keystone-agent/keystone/internal/testenv/smallfs"
)

func newTemp(t *testing.T) *Registry {
	d := t.TempDir()
	return New(filepath.Join(d, "sandboxes.json"), filepath.Join(d, "sandboxes.lock"))
}

func TestRoundTrip(t *testing.T) {
	r := newTemp(t)
	if l, err := r.List(); err != nil || len(l) != 0 {
		t.Fatalf("empty registry: got %v, %v", l, err)
	}
	want := Entry{Name: "app", ProjectPath: "/src/app", MemoryMB: 2048, VCPUs: 1, SSHPort: 2223, Network: "user", SyncMode: "manual",
		Egress: egress.Settings{Mode: "none", Allow: []string{"example.com"}, Upstreams: map[string]string{"anthropic": "https://gw.example"}}}
	if err := r.Update(func(tx *Tx) error { tx.Put(want); return nil }); err != nil {
		t.Fatal(err)
	}
	got, err := r.Get("app")
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("Get = %+v, %v; want %+v", got, err, want)
	}
	if _, err := r.Get("other"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get(other) = %v; want ErrNotFound", err)
	}
}

func TestFailedUpdateChangesNothing(t *testing.T) {
	r := newTemp(t)
	r.Update(func(tx *Tx) error { tx.Put(Entry{Name: "a"}); return nil })
	before, _ := os.ReadFile(r.Path())
	err := r.Update(func(tx *Tx) error { tx.Delete("a"); return errors.New("boom") })
	if err == nil {
		t.Fatal("Update returned nil; want the callback's error")
	}
	after, _ := os.ReadFile(r.Path())
	if string(before) != string(after) {
		t.Fatalf("registry changed after a failed update:\n%s\n%s", before, after)
	}
}

// issue 14.2: on a full disk an update fails with the disk's error and the
// registry keeps every byte (a shadowed write error once renamed an empty
// file over it).
func TestUpdateOnAFullDiskKeepsTheRegistry(t *testing.T) {
	d := smallfs.Mount(t, 64<<10)
	r := New(filepath.Join(d, "sandboxes.json"), filepath.Join(d, "sandboxes.lock"))
	for i := 0; i < 20; i++ {
		if err := r.Update(func(tx *Tx) error { tx.Put(Entry{Name: fmt.Sprintf("s%d", i), ProjectPath: "/src/p"}); return nil }); err != nil {
			t.Fatal(err)
		}
	}
	before, _ := os.ReadFile(r.Path())
	smallfs.Fill(t, d)
	err := r.Update(func(tx *Tx) error { tx.Put(Entry{Name: "new", ProjectPath: strings.Repeat("/deep", 2000)}); return nil })
	if !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("Update on a full disk = %v; want ENOSPC", err)
	}
	if after, _ := os.ReadFile(r.Path()); !bytes.Equal(before, after) {
		t.Fatalf("registry changed on a full disk: %d bytes, was %d", len(after), len(before))
	}
	if l, err := r.List(); err != nil || len(l) != 20 {
		t.Fatalf("List after the failed update: %d entries, %v", len(l), err)
	}
}

func TestCorruptFileIsReportedAndKept(t *testing.T) {
	for name, content := range map[string]string{
		"truncated":     `{"version":1,"sandboxes":{"a":{"name":"a"`,
		"garbage":       "\x00\x01not json",
		"wrong version": `{"version":99,"sandboxes":{}}`,
		"name mismatch": `{"version":1,"sandboxes":{"a":{"name":"b"}}}`,
		"path as name":  `{"version":1,"sandboxes":{"../../victim":{"name":"../../victim"}}}`,
		"upper case":    `{"version":1,"sandboxes":{"App":{"name":"App"}}}`,
		"empty name":    `{"version":1,"sandboxes":{"":{"name":""}}}`,
	} {
		t.Run(name, func(t *testing.T) {
			r := newTemp(t)
			os.WriteFile(r.Path(), []byte(content), 0o600)
			var ce *CorruptError
			if _, err := r.List(); !errors.As(err, &ce) {
				t.Fatalf("List = %v; want *CorruptError", err)
			}
			if err := r.Update(func(tx *Tx) error { tx.Put(Entry{Name: "x"}); return nil }); !errors.As(err, &ce) {
				t.Fatalf("Update = %v; want *CorruptError", err)
			}
			if got, _ := os.ReadFile(r.Path()); string(got) != content {
				t.Fatalf("corrupt registry was overwritten: %q", got)
			}
		})
	}
}

// Concurrent writers in one process contend on the same flock as separate
// processes would (flock locks belong to the open file description).
func TestConcurrentWritersLoseNothing(t *testing.T) {
	r := newTemp(t)
	const n = 40
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// A fresh Registry per writer, as separate commands would have.
			w := New(r.path, r.lock)
			errs <- w.Update(func(tx *Tx) error {
				tx.Put(Entry{Name: fmt.Sprintf("s%02d", i), SSHPort: 2223 + i})
				return nil
			})
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	l, err := r.List()
	if err != nil || len(l) != n {
		t.Fatalf("List: %d entries, %v; want %d", len(l), err, n)
	}
}
