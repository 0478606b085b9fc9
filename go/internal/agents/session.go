package agents

import (
	"bytes"
	"encoding/json"
	"maps"
	"slices"
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
	if [ ! -e "$f" ]; then mkdir -p "$(dirname "$f")" && printf '%s\n' "$2" >"$f" || exit 1; fi
	shift 2
done`

// SeedArgv writes the agent's first-run files (Agent.Home); nil when it
// has none.
func (a Agent) SeedArgv() []string {
	if len(a.Home) == 0 {
		return nil
	}
	argv := []string{"sh", "-c", seedScript, "sh"}
	for _, rel := range slices.Sorted(maps.Keys(a.Home)) {
		var b bytes.Buffer
		if json.Compact(&b, a.Home[rel]) != nil {
			b.Reset()
			b.Write(a.Home[rel]) // validated when loaded: cannot happen
		}
		argv = append(argv, rel, b.String())
	}
	return argv
}
