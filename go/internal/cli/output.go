package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/keystone-agent/keystone/internal/sandbox"
)

// printJSON writes exactly one JSON value and a newline.
func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// printTable renders statuses as `list` shows them.
func printTable(w io.Writer, sts []sandbox.Status) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tSTATE\tSSH\tMEMORY\tVCPUS\tPROJECT")
	for _, st := range sts {
		fmt.Fprintf(tw, "%s\t%s\t127.0.0.1:%d\t%d MB\t%d\t%s\n", st.Name, st.State, st.SSHPort, st.MemoryMB, st.VCPUs, st.ProjectPath)
	}
	return tw.Flush()
}

// printStatus renders one status as `status` shows it.
func printStatus(w io.Writer, st sandbox.Status) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	row := func(k string, v any) { fmt.Fprintf(tw, "%s:\t%v\n", k, v) }
	row("Sandbox", st.Name)
	state := st.State
	if st.Reason != "" {
		state += " (" + st.Reason + ")"
	}
	row("State", state)
	row("Project", st.ProjectPath)
	row("Workspace", st.Workspace)
	row("SSH", fmt.Sprintf("127.0.0.1:%d (user sandbox)", st.SSHPort))
	row("Resources", fmt.Sprintf("%d MB, %d vCPUs, nested %s, network %s", st.MemoryMB, st.VCPUs, onOff(st.Nested), st.Network))
	row("Sync mode", st.SyncMode)
	if st.PID != 0 {
		row("PID", st.PID)
	}
	if st.Agent != "" {
		row("Agent", fmt.Sprintf("%s (session %s)", st.Agent, st.AgentSession))
	}
	if id := st.GitIdentity; id != nil {
		source := "from the host project"
		if !id.FromHost {
			source = "default: the project has no user.name/user.email"
		}
		row("Git identity", fmt.Sprintf("%s (%s)", id, source))
	}
	if st.Declared {
		row("Declared", "yes (NixOS configuration)")
	}
	if st.PasswordLogin {
		row("Password login", "on: "+passwordLoginRisk)
	}
	return tw.Flush()
}

// passwordLoginRisk is what start and status say while the guest accepts the
// guide's fallback password: never silently.
const passwordLoginRisk = "any local user can log in as sandbox with the password \"sandbox\"; " +
	"create an SSH key (ssh-keygen -t ed25519), then stop and start the sandbox to turn it off"

func onOff(b bool) string {
	if b {
		return "on"
	}
	return "off"
}
