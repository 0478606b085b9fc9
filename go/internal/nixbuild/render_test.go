package nixbuild

import (
	"bytes"
	"errors"
	"flag"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

const storeFlake = "path:/nix/store/0c2lzvqbg6r7a1fkc3xhj1j2nqdx8y4h-source?narHash=sha256-QaT8PpCR1IaUMa12ou2MlvNCzYVWgTQfVWJGXyFvY5c="

// The example rendered into templates/sandbox/flake.nix (the flake template
// users can read); TestTemplateMatchesRender keeps the two identical.
var templateExample = Params{Name: "my-app", Flake: "github:keystone-agent/keystone", System: "x86_64-linux", Agent: "claude"}

func TestRenderGolden(t *testing.T) {
	for _, tc := range []struct {
		golden string
		p      Params
	}{
		{"good_default.flake.nix", Params{Name: "my-app", Flake: storeFlake, System: "x86_64-linux"}},
		{"good_agents.flake.nix", Params{Name: "api", Flake: storeFlake, System: "x86_64-linux", Agent: "claude"}},
		{"good_free_agent.flake.nix", Params{Name: "api", Flake: storeFlake, System: "x86_64-linux", Agent: "codex"}},
		{"good_bridge.flake.nix", Params{Name: "web", Flake: "github:keystone-agent/keystone", Network: "bridge"}},
		{"good_tap.flake.nix", Params{Name: "lan", Flake: storeFlake, Network: "tap"}},
	} {
		t.Run(tc.golden, func(t *testing.T) {
			got, err := Render(tc.p)
			if err != nil {
				t.Fatal(err)
			}
			path := filepath.Join("testdata", tc.golden)
			if *update {
				if err := os.WriteFile(path, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("Render differs from %s (go test -update rewrites it):\n%s", path, got)
			}
		})
	}
}

func TestRenderImportsGuestFromPinnedFlake(t *testing.T) {
	got, err := Render(Params{Name: "my-app", Flake: storeFlake})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		`inputs.keystone.url = "` + storeFlake + `";`,
		"keystone.nixosModules.guest",
		"keystone.lib.mkRunner sandbox",
	} {
		if !strings.Contains(string(got), want) {
			t.Errorf("rendered flake lacks %q:\n%s", want, got)
		}
	}
	// nothing sandbox-specific beyond the comment: one build serves all sandboxes
	other, err := Render(Params{Name: "other", Flake: storeFlake})
	if err != nil {
		t.Fatal(err)
	}
	body := func(b []byte) string { _, rest, _ := strings.Cut(string(b), "\n"); return rest }
	if body(got) != body(other) {
		t.Errorf("two sandboxes with the same options render different flakes:\n%s\n---\n%s", got, other)
	}
}

func TestRenderDefaults(t *testing.T) {
	t.Setenv(FlakeEnv, "path:/nix/store/abc-source")
	got, err := Render(Params{Name: "x"})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"path:/nix/store/abc-source"`, `keystone.guest.network.mode = "user";`, `system = "x86_64-linux";`} {
		if !strings.Contains(string(got), want) {
			t.Errorf("rendered flake lacks %q:\n%s", want, got)
		}
	}
}

func TestRenderRejects(t *testing.T) {
	for _, tc := range []struct {
		name string
		p    Params
		want string
	}{
		{"empty name", Params{}, `sandbox name is empty`},
		{"bad name", Params{Name: "My_App"}, `invalid sandbox name "My_App"`},
		{"quote in flake", Params{Name: "a", Flake: `github:x/y"; evil = "`}, "invalid keystone flake reference"},
		{"interpolation in flake", Params{Name: "a", Flake: "path:/${builtins.exec}"}, "invalid keystone flake reference"},
		{"macvtap", Params{Name: "a", Network: "macvtap"}, `network mode "macvtap" needs a declared sandbox`},
		{"unknown network", Params{Name: "a", Network: "nat"}, `network mode "nat"`},
		{"unknown agent", Params{Name: "a", Agent: "copilot"}, `unknown agent "copilot"`},
		{"quote in agent", Params{Name: "a", Agent: `codex"; x = "`}, `unknown agent`},
		{"system", Params{Name: "a", System: "x86_64-darwin"}, `unsupported system "x86_64-darwin"`},
		{"aarch64", Params{Name: "a", System: "aarch64-linux"}, `unsupported system "aarch64-linux": keystone builds x86_64-linux guests only`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Render(tc.p)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Render(%+v) error = %v; want %q", tc.p, err, tc.want)
			}
		})
	}
}

// On an arm64 machine the helper refuses to render rather than build an
// x86_64 guest it cannot run.
func TestRenderRefusesAnotherArchitecture(t *testing.T) {
	old := testOnlyGOARCH
	testOnlyGOARCH = "arm64"
	t.Cleanup(func() { testOnlyGOARCH = old })
	_, err := Render(Params{Name: "a"})
	if err == nil || !strings.Contains(err.Error(), "this machine is arm64: keystone builds x86_64-linux guests only") {
		t.Fatalf("Render on arm64 error = %v; want a refusal naming both", err)
	}
}

// templates/sandbox/flake.nix is what `nix flake init -t .#sandbox` gives: the
// same text Render produces, so the two cannot drift.
func TestTemplateMatchesRender(t *testing.T) {
	want, err := Render(templateExample)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join("..", "..", "..", "templates", "sandbox", "flake.nix")
	if *update {
		if err := os.WriteFile(path, want, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		// the flake's go-test check builds from go/ alone
		t.Skipf("%s is outside this source tree", path)
	}
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from Render(%+v) (go test -update rewrites it)", path, templateExample)
	}
}

// Every golden flake is valid Nix (nix-instantiate --parse, Debian's nix-bin).
func TestRenderedFlakesParse(t *testing.T) {
	bin, err := exec.LookPath("nix-instantiate")
	if err != nil {
		t.Skip("nix-instantiate not in PATH (Debian: apt-get install nix-bin)")
	}
	files, _ := filepath.Glob(filepath.Join("testdata", "*.flake.nix"))
	if len(files) == 0 {
		t.Fatal("no golden flakes in testdata")
	}
	for _, f := range files {
		if out, err := exec.Command(bin, "--parse", f).CombinedOutput(); err != nil {
			t.Errorf("%s does not parse: %v\n%s", f, err, out)
		}
	}
}
