package agents

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
