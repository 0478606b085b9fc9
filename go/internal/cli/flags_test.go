package cli

import (
	"bytes"
	"context"
	"os"
	"regexp"
	"strings"
	"testing"
)

// Every flag a verb accepts is documented in docs/cli.md, and every verb
// prints its usage: a flag cannot be added without being written down.
func TestEveryFlagIsDocumented(t *testing.T) {
	doc, err := os.ReadFile("../../../docs/cli.md")
	if err != nil {
		t.Fatal(err)
	}
	flagRE := regexp.MustCompile(`--[a-z][a-z-]+`)
	for name, v := range verbs {
		if v.hidden {
			continue
		}
		var out bytes.Buffer
		env := &Env{Stdout: &out, Stderr: &out}
		if code := report(env, Run(context.Background(), env, []string{name, "--help"})); code != 0 {
			t.Errorf("%s --help exited %d: %s", name, code, out.String())
			continue
		}
		if !strings.Contains(out.String(), "Usage: keystone agent "+name) {
			t.Errorf("%s --help does not start with its usage: %q", name, out.String())
		}
		if !strings.Contains(string(doc), "keystone agent "+name) {
			t.Errorf("docs/cli.md has no section for %q", name)
		}
		for _, f := range flagRE.FindAllString(out.String(), -1) {
			if f == "--help" {
				continue
			}
			if !strings.Contains(string(doc), "`"+f) && !strings.Contains(string(doc), f+"]") {
				t.Errorf("%s: flag %s is not documented in docs/cli.md", name, f)
			}
		}
	}
}
