package cli

import (
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/keystone-agent/keystone/internal/hostd"
)

// pipeFD returns a descriptor, for the daemon's credentials pipe, from which
// data can be read to its end; the caller's daemonCredentials closes it.
func pipeFD(t *testing.T, data string) int {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	w.WriteString(data)
	w.Close()
	fd, err := syscall.Dup(int(r.Fd())) // daemonCredentials owns and closes its own
	if err != nil {
		t.Fatal(err)
	}
	return fd
}

// The daemon goes on only once its start has recorded its pid: a start
// killed before that closes the pipe without hostd.CredentialsRecorded, and
// the daemon must exit rather than run where stop cannot find it.
func TestDaemonCredentialsWaitForTheRecordedPid(t *testing.T) {
	logf := func(string, ...any) {}
	for _, tc := range []struct {
		name, data string
		keys       int
		refused    bool
	}{
		{"start killed before any write", "", 0, true},
		{"start killed after the keys, before the pid", "ANTHROPIC_API_KEY=sk-test\n", 0, true},
		{"recorded, no keys", hostd.CredentialsRecorded, 0, false},
		{"recorded, a key", "ANTHROPIC_API_KEY=sk-test\n" + hostd.CredentialsRecorded, 1, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv(hostd.CredentialsFDEnv, strconv.Itoa(pipeFD(t, tc.data)))
			c, err := daemonCredentials("", logf)
			switch {
			case tc.refused && (err == nil || !strings.Contains(err.Error(), "recorded the daemon's pid")):
				t.Fatalf("daemonCredentials = %v; want the refusal of an unrecorded daemon", err)
			case !tc.refused && err != nil:
				t.Fatal(err)
			case !tc.refused && c.Len() != tc.keys:
				t.Fatalf("daemonCredentials holds %d keys (%v); want %d", c.Len(), c.Names(), tc.keys)
			}
		})
	}
}
