package credentials

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const secret = "sk-ant-api03-SECRET-do-not-print"

func TestParse(t *testing.T) {
	data := "# keys\n\nexport ANTHROPIC_API_KEY=" + secret + "\r\nOPENAI_API_KEY = 'sk-openai'\nGEMINI_API_KEY=\"g-key\"\nOTHER_TOOL_TOKEN=x\nCLAUDE_CODE_OAUTH_TOKEN=\n"
	s, unknown, err := Parse([]byte(data))
	if err != nil {
		t.Fatal(err)
	}
	for k, want := range map[string]string{"ANTHROPIC_API_KEY": secret, "OPENAI_API_KEY": "sk-openai", "GEMINI_API_KEY": "g-key"} {
		if got, ok := s.Get(k); !ok || got != want {
			t.Errorf("%s = %q, %v", k, got, ok)
		}
	}
	if _, ok := s.Get("CLAUDE_CODE_OAUTH_TOKEN"); ok {
		t.Error("an empty value counts as a credential")
	}
	if len(unknown) != 1 || unknown[0] != "OTHER_TOOL_TOKEN" {
		t.Errorf("unknown = %v", unknown)
	}
	back, _, err := Parse(Encode(s))
	if err != nil || fmt.Sprint(back.Names()) != fmt.Sprint(s.Names()) {
		t.Fatalf("Encode does not round-trip: %v %v", back.Names(), err)
	}
}

// A value that itself begins and ends with a quote reaches the daemon whole
// (found by FuzzParse: Encode wrote it bare, and Parse took its quotes away).
func TestEncodeKeepsQuotes(t *testing.T) {
	s, _, err := Parse([]byte("OPENAI_API_KEY='\"sk-x\"'\nGEMINI_API_KEY=\"'g'\"\nANTHROPIC_API_KEY=\"\"\"\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	back, _, err := Parse(Encode(s))
	if err != nil {
		t.Fatal(err)
	}
	for k, want := range map[string]string{"OPENAI_API_KEY": `"sk-x"`, "GEMINI_API_KEY": "'g'", "ANTHROPIC_API_KEY": `""`} {
		if got, _ := s.Get(k); got != want {
			t.Errorf("parsed %s = %q, want %q", k, got, want)
		}
		if got, _ := back.Get(k); got != want {
			t.Errorf("after Encode, %s = %q, want %q", k, got, want)
		}
	}
}

// A malformed file's error names the line, never a value: the value may be
// a key pasted on the wrong line.
func TestParseErrorsNeverShowValues(t *testing.T) {
	for _, data := range []string{
		secret + "\n",
		"ANTHROPIC_API_KEY=" + secret + " trailing\n",
		"ANTHROPIC_API_KEY=" + secret + "\x1b[2J\n",
		secret + "=x\n",
	} {
		_, unknown, err := Parse([]byte(data))
		msg := fmt.Sprint(err, unknown)
		if strings.Contains(msg, "SECRET") {
			t.Errorf("%q: the message shows the value: %s", data, msg)
		}
		if err == nil && len(unknown) == 0 {
			t.Errorf("%q was accepted", data)
		}
	}
	if _, _, err := Parse(make([]byte, MaxFileSize+1)); err == nil {
		t.Error("an oversized file was accepted")
	}
}

func TestSetNeverPrintsValues(t *testing.T) {
	s, _, _ := Parse([]byte("ANTHROPIC_API_KEY=" + secret))
	for _, f := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x"} {
		if out := fmt.Sprintf(f, s); strings.Contains(out, "SECRET") || strings.Contains(out, fmt.Sprintf("%x", "SECRET")) {
			t.Errorf("%s prints %q", f, out)
		}
	}
	if out := fmt.Sprintf("%v", struct{ C Set }{s}); strings.Contains(out, "SECRET") {
		t.Errorf("a struct holding a Set prints %q", out)
	}
}

func TestReadFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "credentials")
	if s, _, err := ReadFile(path); err != nil || s.Len() != 0 {
		t.Fatalf("a missing file: %v %v", s, err)
	}
	os.WriteFile(path, []byte("OPENAI_API_KEY=sk-1\n"), 0o600)
	if s, _, err := ReadFile(path); err != nil || s.Len() != 1 {
		t.Fatalf("a 0600 file: %v %v", s, err)
	}
	for _, mode := range []os.FileMode{0o644, 0o640, 0o604, 0o660, 0o620} {
		os.Chmod(path, mode)
		_, _, err := ReadFile(path)
		var me *ModeError
		if !errors.As(err, &me) {
			t.Errorf("mode %04o: got %v; want a refusal", mode, err)
		} else if !strings.Contains(err.Error(), "chmod 600") {
			t.Errorf("the refusal does not say what to do: %v", err)
		}
	}
	os.Chmod(path, 0o400)
	link := filepath.Join(dir, "link") // agenix: /run/agenix/x is a symlink
	os.Symlink(path, link)
	if s, _, err := ReadFile(link); err != nil || s.Len() != 1 {
		t.Fatalf("through a symlink: %v %v", s, err)
	}
	if _, _, err := ReadFile(dir); err == nil {
		t.Error("a directory was read")
	}
}

func TestTakeEnv(t *testing.T) {
	t.Setenv("ANTHROPIC_API_KEY", secret)
	t.Setenv("GEMINI_API_KEY", "")
	s := TakeEnv()
	if got, _ := s.Get("ANTHROPIC_API_KEY"); got != secret {
		t.Fatalf("got %q", got)
	}
	for _, v := range []string{"ANTHROPIC_API_KEY", "GEMINI_API_KEY"} {
		if _, ok := os.LookupEnv(v); ok {
			t.Errorf("%s is still in the environment: children would inherit it", v)
		}
	}
}

func TestPlaceholdersDiffer(t *testing.T) {
	seen := map[string]string{}
	for _, v := range Vars() {
		p := Placeholder(v)
		if o, ok := seen[p]; ok {
			t.Errorf("%s and %s share a placeholder", v, o)
		}
		seen[p] = v
		if !visibleASCII(p) {
			t.Errorf("placeholder %q is not a valid header value", p)
		}
	}
}

func TestUpstream(t *testing.T) {
	if n, u, err := ParseUpstream("anthropic=https://gw.example.com/anthropic/"); err != nil || n != "anthropic" || u != "https://gw.example.com/anthropic" {
		t.Errorf("got %q %q %v", n, u, err)
	}
	for _, bad := range []string{"anthropic", "nope=https://x", "openai=http://x", "openai=https://", "openai=https://u:p@x",
		"openai=https://x/?a=b", "openai=https://x#f", "openai=ftp://x"} {
		if _, _, err := ParseUpstream(bad); err == nil {
			t.Errorf("%q was accepted", bad)
		}
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte("ANTHROPIC_API_KEY=x\n# c\nexport OPENAI_API_KEY='y'\n"))
	f.Add([]byte("=\n\"\n'\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		s, _, err := Parse(data)
		if err != nil {
			return
		}
		for _, k := range s.Names() {
			v, _ := s.Get(k)
			if !visibleASCII(v) || !known(k) {
				t.Fatalf("accepted %s=%q", k, v)
			}
		}
		back, _, err := Parse(Encode(s))
		if err != nil || back.Len() != s.Len() {
			t.Fatalf("Encode does not round-trip: %v", err)
		}
		for _, k := range s.Names() {
			v, _ := s.Get(k)
			if w, _ := back.Get(k); w != v {
				t.Fatalf("Encode does not round-trip %s=%q", k, v)
			}
		}
	})
}
