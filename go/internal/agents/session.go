package agents

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"
)

// The agent runs in a tmux session in the guest, so it keeps working when
// the user detaches (tmux's detach key, or a closed terminal) and `attach`
// rejoins the same process. The session runs the agent itself, not a shell:
// when the agent exits the session ends, and the next attach starts the
// agent again.

// SessionName is the guest's tmux session of the agent.
const SessionName = "keystone-agent"

// tmux runs with -u: the guest's locale may not say UTF-8 (exec sessions
// have no profile), and the agents' interfaces draw UTF-8.
func tmux(args ...string) []string { return append([]string{"tmux", "-u"}, args...) }

// StartArgv starts the agent's session, detached, in dir.
func (a Agent) StartArgv(dir string) []string {
	return append(tmux("new-session", "-d", "-s", SessionName, "-c", dir, "--"), a.Argv()...)
}

// AttachArgv joins the agent's session, or starts it (attached) when it is
// gone, as after the agent exited.
func (a Agent) AttachArgv(dir string) []string {
	return append(tmux("new-session", "-A", "-s", SessionName, "-c", dir, "--"), a.Argv()...)
}

// AliveArgv exits 0 when the session exists ("=" matches the name exactly).
func AliveArgv() []string { return tmux("has-session", "-t", "="+SessionName) }

// seedScript writes each (path, content) argument pair into $HOME unless the
// file exists: the agent's own later changes are never overwritten.
const seedScript = `umask 077
while [ $# -gt 1 ]; do
	f="$HOME/$1"
	if [ ! -e "$f" ]; then mkdir -p "$(dirname "$f")" && printf '%s' "$2" >"$f" || exit 1; fi
	shift 2
done`

// HomeFile is one first-run file: its path in the guest user's home and its
// content.
type HomeFile struct{ Path, Content string }

// HomeFiles returns every agent's first-run files (Agent.Home), sorted by
// path: all of them, whichever agent the session runs, so that each agent
// finds its own when it is run with `exec` too. In a text file, ${NAME} is
// replaced by lookup(NAME), a variable of the guest's sessions, so the
// manifest names the variable (OPENAI_BASE_URL), never its value.
func (m *Manifest) HomeFiles(lookup func(name string) (string, bool)) ([]HomeFile, error) {
	var files []HomeFile
	for _, name := range m.Names() {
		a := m.Agents[name]
		for _, rel := range slices.Sorted(maps.Keys(a.Home)) {
			text, err := homeText(rel, a.Home[rel])
			if err == nil && !strings.HasSuffix(rel, ".json") {
				text, err = expand(text, lookup)
			}
			if err != nil {
				return nil, fmt.Errorf("agent %q: home file %q: %w", name, rel, err)
			}
			files = append(files, HomeFile{Path: rel, Content: text})
		}
	}
	slices.SortFunc(files, func(a, b HomeFile) int { return strings.Compare(a.Path, b.Path) })
	return files, nil
}

// homeText is a home file's content as the manifest gives it: a "*.json"
// file's value, compacted, with a final newline; any other file's JSON string.
func homeText(rel string, data json.RawMessage) (string, error) {
	if strings.HasSuffix(rel, ".json") {
		var b bytes.Buffer
		if err := json.Compact(&b, data); err != nil {
			return "", fmt.Errorf("not JSON: %w", err)
		}
		return b.String() + "\n", nil
	}
	var text string
	if err := json.Unmarshal(data, &text); err != nil {
		return "", fmt.Errorf("not a JSON string (only *.json files hold JSON values)")
	}
	return text, nil
}

var sessionVarRef = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)\}`)

// expand replaces each ${NAME} in text by its value.
func expand(text string, lookup func(string) (string, bool)) (string, error) {
	var missing string
	out := sessionVarRef.ReplaceAllStringFunc(text, func(ref string) string {
		name := ref[2 : len(ref)-1]
		v, ok := lookup(name)
		if !ok && missing == "" {
			missing = name
		}
		return v
	})
	if missing != "" {
		return "", fmt.Errorf("${%s} is not a variable of the guest's sessions", missing)
	}
	return out, nil
}

// SeedArgv writes the files into the guest user's home, each unless it
// exists; nil when there are none.
func SeedArgv(files []HomeFile) []string {
	if len(files) == 0 {
		return nil
	}
	argv := []string{"sh", "-c", seedScript, "sh"}
	for _, f := range files {
		argv = append(argv, f.Path, f.Content)
	}
	return argv
}
