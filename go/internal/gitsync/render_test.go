package gitsync

import (
	"context"
	"errors"
	"strings"
	"testing"
)

func render(r *Report) string {
	var b strings.Builder
	Render(&b, r)
	return b.String()
}

func TestRenderSaysWhatHappenedAndWhatToRun(t *testing.T) {
	host, ws := newPair(t)
	commit(t, ws, "agent: add ci", map[string]string{".github/workflows/ci.yml": "on: push\n", "a.txt": "a\nb\n"})
	write(t, ws+"/scratch.txt", "wip\n")
	o := opts(host, ws)
	o.DryRun = true
	out := render(mustSync(t, o))
	for _, want := range []string{
		"Would sync 1 commit from sandbox \"demo\" (refs/remotes/keystone/demo/main):",
		" agent: add ci\n",
		" 2 files changed, 3 insertions(+), 0 deletions(-)\n",
		"REVIEW BEFORE RUNNING ANYTHING",
		"! .github/workflows/ci.yml",
		"?? scratch.txt",
		"Would fast-forward main to ",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("dry-run output lacks %q:\n%s", want, out)
		}
	}

	commit(t, host, "host work", map[string]string{"h.txt": "h\n"})
	r, err := Sync(context.Background(), opts(host, ws))
	if !errors.Is(err, ErrManualMerge) {
		t.Fatal(err)
	}
	out = render(r)
	for _, want := range []string{"have diverged", "  git merge refs/remotes/keystone/demo/main\n", "  git rebase refs/remotes/keystone/demo/main\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("diverged output lacks %q:\n%s", want, out)
		}
	}
}
