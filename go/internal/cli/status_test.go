package cli

import (
	"strings"
	"testing"
	"time"

	"github.com/keystone-agent/keystone/internal/syncwatch"
)

// status says why the last sync failed and why it could not count the
// pending commits, escaped, instead of "(error)" and a count of 0 it never
// made (found by the QA campaign with a hostile pack index under auto-commit).
func TestPrintSyncSaysWhy(t *testing.T) {
	var b strings.Builder
	printSync(&b, &syncwatch.Status{
		LastSync: time.Now(), LastResult: "error", LastError: "pack \x1b]52;c;aGk=\x07 rejected",
		PendingError: "workspace repository rejected: alternates",
	})
	out := b.String()
	for _, want := range []string{`(error: pack \x1b]52;c;aGk=\x07 rejected)`, "Pending:    not counted: workspace repository rejected: alternates"} {
		if !strings.Contains(out, want) {
			t.Errorf("status lacks %q:\n%s", want, out)
		}
	}
	if strings.ContainsRune(out, 0x1b) {
		t.Errorf("status printed a raw escape:\n%q", out)
	}
}
