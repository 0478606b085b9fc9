package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/keystone-agent/keystone/internal/sandbox"
	"github.com/keystone-agent/keystone/internal/sshconfig"
	"github.com/keystone-agent/keystone/internal/statedir"
)

func newSSHConfigCmd() *verb {
	return &verb{
		name:    "ssh-config",
		summary: "print ssh config for the host's ssh, scp, rsync and editors",
		usage: `Usage: keystone agent ssh-config [name...] [--install]

Print a ` + "`Host keystone-<name>`" + ` block for each sandbox named (every sandbox,
imperative and declared, when none is), so that ssh, scp, rsync -e ssh and
editors (VS Code Remote-SSH, JetBrains Gateway, Zed) reach it with the
helper's pin: the sandbox's own key, and a known_hosts file in its state
directory holding only its pinned host key (StrictHostKeyChecking yes).

  ssh -F <(keystone agent ssh-config app) keystone-app

--install writes every block to a file in the state directory and adds one
line, ` + "`Include <that file>`" + `, at the top of ~/.ssh/config (once; nothing
else there changes). ` + "`start` and `destroy`" + ` keep the file current.
`,
		run: runSSHConfig,
	}
}

func runSSHConfig(ctx context.Context, env *Env, v *verb, args []string) error {
	fs := newFlags(v)
	install := fs.Bool("install", false, "include the blocks of every sandbox in ~/.ssh/config")
	if err := parse(fs, v, args); err != nil {
		return err
	}
	if *install && fs.NArg() > 0 {
		return &ExitError{Code: ExitUsage, Err: errors.New("ssh-config: --install covers every sandbox; give no names")}
	}
	sbe, err := env.Sandboxes()
	if err != nil {
		return err
	}
	var sbs []*sandbox.Sandbox
	if fs.NArg() == 0 {
		if sbs, err = sbe.List(); err != nil {
			return err
		}
	}
	for _, name := range fs.Args() {
		sb, err := sbe.Get(name)
		if err != nil {
			return err
		}
		sbs = append(sbs, sb)
	}
	blocks, err := sshBlocks(env, sbs, fs.NArg() > 0)
	if err != nil {
		return err
	}
	if *install {
		return installSSHConfig(env, sbe, blocks)
	}
	fmt.Fprint(env.Stdout, strings.Join(blocks, "\n"))
	return nil
}

// sshBlocks renders the blocks of sbs, writing each one's known_hosts. A
// sandbox never started has no host key yet: it is an error when named,
// else left out with a note.
func sshBlocks(env *Env, sbs []*sandbox.Sandbox, named bool) ([]string, error) {
	var blocks []string
	for _, sb := range sbs {
		if sb.HostKey == "" {
			if named {
				return nil, fmt.Errorf("sandbox %q has no host key yet: start it first", sb.Name)
			}
			fmt.Fprintf(env.Stderr, "keystone: note: %q has no host key yet (never started); left out\n", sb.Name)
			continue
		}
		b, err := sshconfig.Render(sshconfig.Host{
			Name: sb.Name, Port: sb.SSHPort, User: sandbox.GuestUser, HostKey: sb.HostKey,
			Identity:   sb.Dir.Path(statedir.ClientKey),
			KnownHosts: sb.Dir.Path(statedir.KnownHosts),
		})
		if err != nil {
			return nil, err
		}
		blocks = append(blocks, b)
	}
	return blocks, nil
}

func installSSHConfig(env *Env, sbe *sandbox.Env, blocks []string) error {
	included := sbe.Root.SSHConfig()
	if err := sshconfig.WriteIncluded(included, blocks); err != nil {
		return err
	}
	line, err := sshconfig.IncludeLine(included)
	if err != nil {
		return err
	}
	config := filepath.Join(sbe.Home, ".ssh", "config")
	changed, err := sshconfig.Install(config, line)
	if errors.Is(err, sshconfig.ErrLinked) {
		return &ExitError{Code: ExitFailure, Err: err,
			Hint: fmt.Sprintf("add this line at its top where it is managed (home-manager: programs.ssh.includes = [ %q ];): %s", included, line)}
	}
	if err != nil {
		return fmt.Errorf("failed to add the include line to %q: %w", config, err)
	}
	if changed {
		fmt.Fprintf(env.Stderr, "Added `%s` to %s.\n", line, config)
	} else {
		fmt.Fprintf(env.Stderr, "%s already includes %s.\n", config, included)
	}
	fmt.Fprintf(env.Stderr, "%d sandboxes in %s. Run `ssh %s<name>` to log in.\n", len(blocks), included, sshconfig.AliasPrefix)
	return nil
}

// refreshSSHConfig rewrites the installed ssh config after start and
// destroy (a new port, new keys after --fresh, a sandbox gone). Nothing
// happens unless `ssh-config --install` was run; a failure is a warning.
func refreshSSHConfig(env *Env, sbe *sandbox.Env) {
	if _, err := os.Stat(sbe.Root.SSHConfig()); err != nil {
		return
	}
	sbs, err := sbe.List()
	if err == nil {
		var blocks []string
		quiet := &Env{Stdout: env.Stdout, Stderr: io.Discard}
		if blocks, err = sshBlocks(quiet, sbs, false); err == nil {
			err = sshconfig.WriteIncluded(sbe.Root.SSHConfig(), blocks)
		}
	}
	if err != nil {
		fmt.Fprintf(env.Stderr, "keystone: warning: updating %s: %v\n", sbe.Root.SSHConfig(), err)
	}
}
