package sandbox

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/keystone-agent/keystone/internal/registry"
	"github.com/keystone-agent/keystone/internal/statedir"
)

// A workspace sync refuses has no pending count: Report says why instead
// of a 0 it never counted.
func TestReportPendingError(t *testing.T) {
	git := func(args ...string) {
		t.Helper()
		cmd := exec.Command("git", args...)
		cmd.Env = append(os.Environ(), "GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@x", "GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@x")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
	}
	project := filepath.Join(t.TempDir(), "p")
	git("init", "-q", project)
	git("-C", project, "commit", "-q", "--allow-empty", "-m", "one")
	sb := &Sandbox{Entry: registry.Entry{Name: "app", ProjectPath: project}, Dir: statedir.Sandbox(t.TempDir())}
	git("clone", "-q", project, sb.Dir.Workspace())
	os.MkdirAll(sb.Dir.State(), 0o700)
	os.WriteFile(filepath.Join(sb.Dir.State(), statedir.SyncStatus), []byte(`{"lastResult":"up-to-date","pendingCommits":3}`), 0o600)
	os.WriteFile(filepath.Join(sb.Dir.Workspace(), ".git", "objects", "info", "alternates"), []byte("/elsewhere\n"), 0o644)

	r := testEnv(t).Report(context.Background(), sb)
	if r.Sync == nil || r.Sync.PendingError == "" || r.Sync.PendingCommits != 0 {
		t.Fatalf("sync report %+v: want a pending error and no count", r.Sync)
	}
}
