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
	for _, v := range verbs() {
		name := v.name
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

// issue 12.8: `help <verb>` prints what `<verb> --help` prints, options
// included, and switches show no [=true|false].
// withoutOptions are the verbs whose help has no options to list.
var withoutOptions = map[string]bool{"attach": true, "ssh": true, "exec": true, "completion": true, "__names": true}

func TestHelpShowsTheOptions(t *testing.T) {
	seen := map[string]bool{}
	for _, v := range verbs() {
		if seen[v.name] {
			t.Errorf("verb %q is listed twice", v.name)
		}
		seen[v.name] = true
		var help, dashHelp bytes.Buffer
		env := &Env{Stdout: &help, Stderr: &help}
		if code := report(env, Run(context.Background(), env, []string{"help", v.name})); code != 0 {
			t.Errorf("help %s exited %d: %s", v.name, code, help.String())
		}
		env = &Env{Stdout: &dashHelp, Stderr: &dashHelp}
		report(env, Run(context.Background(), env, []string{v.name, "--help"}))
		if help.String() != dashHelp.String() {
			t.Errorf("help %s differs from %s --help:\n%s\n---\n%s", v.name, v.name, help.String(), dashHelp.String())
		}
		if !strings.Contains(help.String(), "Options:\n") && !withoutOptions[v.name] {
			t.Errorf("help %s lists no options:\n%s", v.name, help.String())
		}
		if strings.Contains(help.String(), "[=true|false]") {
			t.Errorf("help %s shows a switch as taking a value:\n%s", v.name, help.String())
		}
	}
	var out bytes.Buffer
	env := &Env{Stdout: &out, Stderr: &out}
	if code := report(env, Run(context.Background(), env, []string{"help", "nosuch"})); code != ExitUsage {
		t.Errorf("help nosuch exited %d; want %d", code, ExitUsage)
	}
}

// issue 12.8: `keystone --version` and `keystone agent --version` print the
// stamped version on stdout and exit 0.
func TestVersion(t *testing.T) {
	defer func(v string) { Version = v }(Version)
	for _, stamp := range []string{"", "1.2.3"} {
		Version = stamp
		for _, args := range [][]string{{"--version"}, {"agent", "--version"}, {"agent", "version"}} {
			var out bytes.Buffer
			env := &Env{Stdout: &out, Stderr: &out}
			if code := report(env, Run(context.Background(), env, args)); code != 0 {
				t.Errorf("%v exited %d: %s", args, code, out.String())
			}
			want := "keystone 1.2.3\n"
			if stamp == "" {
				want = "keystone dev"
			}
			if !strings.HasPrefix(out.String(), want) {
				t.Errorf("%v with Version=%q printed %q; want %q", args, stamp, out.String(), want)
			}
		}
	}
}
