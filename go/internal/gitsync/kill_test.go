package gitsync

import (
	"context"
	"fmt"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// A sync killed with SIGKILL while the host's index-pack reads its pack leaves
// a locked-then-abandoned directory of its own and nothing else; the next sync
// removes it and completes (issue 14 item 7).
func TestSyncKilledLeavesNothingBehind(t *testing.T) {
	for _, split := range []bool{false, true} {
		t.Run(fmt.Sprintf("split=%v", split), func(t *testing.T) { killedLeavesNothing(t, split) })
	}
}

// killedLeavesNothing is TestSyncKilledLeavesNothingBehind, the blobs in a
// pack of their own or not.
func killedLeavesNothing(t *testing.T, split bool) {
	host, ws := newPair(t)
	rng := rand.New(rand.NewSource(1))
	big := make([]byte, 48<<20)
	rng.Read(big) // incompressible: the pack takes a while to write and index
	write(t, filepath.Join(ws, "big.bin"), string(big))
	tip := commit(t, ws, "big", nil)
	self, _ := os.Executable()
	objects := filepath.Join(host, ".git", "objects")
	killed := false
	for attempt := 0; attempt < 5 && !killed; attempt++ {
		cmd := exec.Command(self, "-test.run=^$")
		cmd.Env = append(os.Environ(), "GITSYNC_TEST_CHILD="+host+"\n"+ws)
		if split {
			cmd.Env = append(cmd.Env, "GITSYNC_TEST_SPLIT=1")
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(time.Minute)
		for time.Now().Before(deadline) {
			if m, _ := filepath.Glob(filepath.Join(objects, incomingPrefix+"*", "incoming.pack")); len(m) > 0 {
				cmd.Process.Signal(syscall.SIGKILL)
				killed = true
				break
			}
			if cmd.ProcessState != nil {
				break
			}
			time.Sleep(time.Millisecond)
		}
		cmd.Wait()
		if !killed {
			gitIn(t, host, "reset", "-q", "--hard", "HEAD@{1}") // it finished first: undo and try again
		}
	}
	if !killed {
		t.Skip("the sync always finished before it could be killed")
	}
	gitIn(t, host, "fsck", "--no-dangling")
	if got := gitIn(t, host, "rev-parse", "main"); got == tip {
		t.Fatal("a killed sync moved the host branch")
	}
	if left, _ := filepath.Glob(filepath.Join(objects, incomingPrefix+"*")); len(left) < 1 || len(left) > 2 || len(left) == 2 && !split {
		t.Fatalf("after the kill: %v, want the killed sync's directory (one for each pack)", left)
	}
	// The killed sync's index-packs hold its directories' locks until they
	// see their input end and exit (slowly, on a loaded machine).
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(20 * time.Millisecond) {
		left, _ := filepath.Glob(filepath.Join(objects, incomingPrefix+"*", "lock"))
		held := 0
		for _, l := range left {
			if f, err := os.Open(l); err == nil {
				if syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB) != nil {
					held++
				}
				f.Close()
			}
		}
		if held == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the killed sync's index-pack still holds %d locks after a minute", held)
		}
	}
	mustSync(t, opts(host, ws))
	if got := gitIn(t, host, "rev-parse", "main"); got != tip {
		t.Fatalf("main = %s, want %s", got, tip)
	}
	for _, pattern := range []string{incomingPrefix + "*", "pack/tmp_*", "pack/*.keep"} {
		if left, _ := filepath.Glob(filepath.Join(objects, pattern)); len(left) > 0 {
			t.Errorf("left behind: %v", left)
		}
	}
	entries, _ := os.ReadDir(filepath.Join(objects, "pack"))
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), "pack-") {
			t.Errorf("left behind in objects/pack: %s", e.Name())
		}
	}
	gitIn(t, host, "fsck", "--no-dangling")
}

// A sync that dies after its pack is installed and before any ref moves (the
// host's git update-ref killed) leaves objects no ref names, which is
// consistent; the next sync moves the refs and fast-forwards.
func TestSyncDeadBeforeItsRefsMoveIsCompletedByTheNext(t *testing.T) {
	host, ws := newPair(t)
	tip := commit(t, ws, "work", map[string]string{"a.txt": "a\n", "b/c.txt": "c\n"})
	wrapper := filepath.Join(t.TempDir(), "git")
	write(t, wrapper, "#!/bin/sh\nfor a; do [ \"$a\" = update-ref ] && kill -9 $$; done\nexec "+realGit+" \"$@\"\n")
	os.Chmod(wrapper, 0o755)
	o := opts(host, ws)
	o.Git = wrapper
	if _, err := Sync(context.Background(), o); err == nil {
		t.Fatal("a sync whose update-ref was killed succeeded")
	}
	gitIn(t, host, "fsck", "--no-dangling")
	if got := gitIn(t, host, "rev-parse", "main"); got == tip {
		t.Fatal("main moved without its update-ref")
	}
	mustSync(t, opts(host, ws))
	if got := gitIn(t, host, "rev-parse", "main"); got != tip {
		t.Fatalf("main = %s after the next sync, want %s", got, tip)
	}
	if st := gitIn(t, host, "status", "--porcelain"); st != "" {
		t.Errorf("host tree:\n%s", st)
	}
}
