package sandbox

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"

	"github.com/tidwall/gjson"

	"github.com/keystone-agent/keystone/internal/egress"
	"github.com/keystone-agent/keystone/internal/names"
	"github.com/keystone-agent/keystone/internal/registry"
	"github.com/keystone-agent/keystone/internal/statedir"
)

// unitPattern is what systemd accepts in a unit name (systemd.unit(5)). It is
// compiled on first use, since only declared sandboxes need it: its {1,255}
// compiles to 255 copies of the class, which cost every command (exec in a
// loop too) half a millisecond or more at start.
var unitPattern = sync.OnceValue(func() *regexp.Regexp {
	return regexp.MustCompile(`^[A-Za-z0-9:_.@\\-]{1,255}$`)
})

// declared reads the sandboxes the NixOS module declared (docs/nixos.md).
// The file is another program's JSON, so it is read with gjson and each
// entry is checked before use; a missing file means none are declared.
func (e *Env) declared() ([]*Sandbox, error) {
	data, err := os.ReadFile(e.Declared)
	if errors.Is(err, fs.ErrNotExist) || e.Declared == "" {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("failed to read declared sandboxes %q: %w", e.Declared, err)
	}
	if !gjson.ValidBytes(data) {
		return nil, fmt.Errorf("declared sandboxes %q is not valid JSON", e.Declared)
	}
	var out []*Sandbox
	var bad error
	gjson.GetBytes(data, "sandboxes").ForEach(func(key, v gjson.Result) bool {
		name, dir, unit := key.String(), v.Get("dir").String(), v.Get("unit").String()
		var why error
		switch {
		case names.Validate(name) != nil:
			why = names.Validate(name)
		case !filepath.IsAbs(dir) || filepath.Clean(dir) != dir:
			why = fmt.Errorf("dir %q is not a clean absolute path", dir)
		case !unitPattern().MatchString(unit):
			why = fmt.Errorf("unit %q is not a systemd unit name", unit)
		}
		if why != nil {
			bad = fmt.Errorf("declared sandboxes %q: entry %q is invalid: %w", e.Declared, name, why)
			return false
		}
		sb := &Sandbox{
			Entry: registry.Entry{
				Name:        name,
				ProjectPath: v.Get("projectPath").String(),
				MemoryMB:    int(v.Get("memory").Int()),
				VCPUs:       int(v.Get("vcpus").Int()),
				Nested:      v.Get("nested").Bool(),
				Network:     v.Get("network").String(),
				SyncMode:    v.Get("syncMode").String(),
				SSHPort:     int(v.Get("sshPort").Int()),
				Egress:      declaredEgress(v.Get("egress")),
				Agent:       v.Get("agent").String(),
			},
			Dir:      statedir.Sandbox(dir),
			Declared: true,
			Unit:     unit,
		}
		if pub, err := os.ReadFile(sb.Dir.Guest() + "/" + statedir.HostKey + ".pub"); err == nil {
			sb.HostKey = strings.TrimSpace(string(pub))
		}
		out = append(out, sb)
		return true
	})
	return out, bad
}

// unitPID asks systemd for the main pid of a declared sandbox's VM unit;
// systemctl is the interface to systemd, so it is run, not reimplemented.
func unitPID(unit string) (int, error) {
	if unit == "" {
		return 0, errors.New("no systemd unit declared")
	}
	out, err := exec.Command("systemctl", "show", "--property=MainPID", "--value", "--", unit).Output()
	if err != nil {
		return 0, fmt.Errorf("systemctl show %s: %w", unit, err)
	}
	return strconv.Atoi(strings.TrimSpace(string(out)))
}

// declaredEgress reads a declared sandbox's egress settings (the NixOS
// options keystone.agent.sandboxes.<name>.egress); the proxy checks them.
func declaredEgress(v gjson.Result) egress.Settings {
	s := egress.Settings{Mode: v.Get("mode").String(), UpstreamCA: v.Get("upstreamCA").String()}
	for _, a := range v.Get("allow").Array() {
		s.Allow = append(s.Allow, a.String())
	}
	v.Get("upstreams").ForEach(func(k, u gjson.Result) bool {
		if s.Upstreams == nil {
			s.Upstreams = map[string]string{}
		}
		s.Upstreams[k.String()] = u.String()
		return true
	})
	return s
}
