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

// Text from the sandbox reaches a terminal escaped (issue 14 item 9).
func TestRenderEscapesSandboxText(t *testing.T) {
	host, ws := newPair(t)
	evil := "fix\x1b]52;c;ZWNobyBvd25lZA==\x07 \x1b[2Aup\u202etxt.exe"
	commit(t, ws, evil, map[string]string{"odd\x1b[31mname/Makefile": "all:\n"})
	write(t, ws+"/wip\x07.txt", "wip\n")
	o := opts(host, ws)
	o.DryRun = true
	out := render(mustSync(t, o))
	if strings.ContainsAny(out, "\x1b\x07\u202e") {
		t.Errorf("raw control characters in the output:\n%q", out)
	}
	for _, want := range []string{`fix\x1b]52;c;ZWNobyBvd25lZA==\x07 \x1b[2Aup\u202etxt.exe`, `odd\x1b[31mname/Makefile`, `wip\x07.txt`} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

func TestPrintable(t *testing.T) {
	for in, want := range map[string]string{
		"plain text, ünïcode ✓": "plain text, ünïcode ✓",
		"tab\there":             `tab\x09here`,
		"del\x7f c1\u0085":      `del\x7f c1\u0085`,
		"bad\xffutf8":           `bad\xffutf8`,
		"rtl\u2067x\u2069":      `rtl\u2067x\u2069`,
	} {
		if got := Printable(in); got != want {
			t.Errorf("Printable(%q) = %q, want %q", in, got, want)
		}
	}
}

// The review gate names build entry points at any depth (issue 14 item 11,
// issue 11 item 3).
func TestGateReason(t *testing.T) {
	for p, want := range map[string]bool{
		"gradlew": true, "sub/mvnw": true, "a/b/.yarnrc.yml": true, ".pnpmfile.cjs": true,
		"tests/conftest.py": true, "setup.py": true, "pkg/pyproject.toml": true, "Gemfile": true,
		"Rakefile": true, ".tool-versions": true, "mise.toml": true, "CMakeLists.txt": true,
		"docker/Dockerfile": true, ".lfsconfig": true, ".github/workflows/ci.yml": true,
		"services/api/.github/workflows/ci.yml": true, "sub/.claude/settings.json": true,
		"sub/.vscode/tasks.json": true, "gradle/wrapper/gradle-wrapper.properties": true,
		// Found missing by the QA campaign: second spellings and version,
		// build and editor files that run code.
		"compose.yml": true, "deploy/docker-compose.yaml": true, "Containerfile": true,
		"rust-toolchain.toml": true, "sub/rust-toolchain": true, ".python-version": true,
		".nvmrc": true, "a/.ruby-version": true, "lefthook.yml": true, "pytest.ini": true,
		".zed/settings.json": true, "sub/.helix/languages.toml": true, "CLAUDE.local.md": true,
		".cursorrules": true, ".aider.conf.yml": true, "composer.json": true, "build.sbt": true,
		"MODULE.bazel": true, ".exrc": true, ".dir-locals.el": true, "devenv.nix": true,
		"src/main.go": false, "docs/github.md": false, "my.github/x": false, "README.md": false,
	} {
		if got := gateReason(p, false) != ""; got != want {
			t.Errorf("gateReason(%q) = %q, want review %v", p, gateReason(p, false), want)
		}
	}
}
