package cli

import (
	"fmt"
	"io"
	"path/filepath"
	"sort"
	"strings"

	"github.com/spf13/pflag"

	"github.com/keystone-agent/keystone/internal/credentials"
	"github.com/keystone-agent/keystone/internal/egress"
)

// addEgressFlags adds start's egress flags to fs; the returned function,
// called after parsing, fills c with what was given (what was not keeps the
// sandbox's remembered settings).
func addEgressFlags(fs *pflag.FlagSet, c *egress.Changes) func() error {
	fs.StringVar(&c.Mode, "egress", "", "egress policy: allowlist, open, none (default: the sandbox's last, else allowlist)")
	fs.StringArrayVar(&c.Allow, "allow", nil, "allow HOST[:PORT], *.DOMAIN or an address/prefix (repeatable; replaces the sandbox's remembered entries)")
	upstreams := fs.StringArray("upstream", nil, "PROVIDER=URL: send a provider's API requests to URL (https; repeatable)")
	fs.StringVar(&c.UpstreamCA, "upstream-ca", "", "PEM file of extra CAs trusted for the upstreams")
	return func() error {
		c.SetAllow = fs.Changed("allow")
		c.SetUpstreamCA = fs.Changed("upstream-ca")
		if fs.Changed("upstream") {
			c.SetUpstreams, c.Upstreams = true, map[string]string{}
			for _, u := range *upstreams {
				name, raw, err := credentials.ParseUpstream(u)
				if err != nil {
					return &ExitError{Code: ExitUsage, Err: err}
				}
				c.Upstreams[name] = raw
			}
		}
		if c.SetUpstreamCA && c.UpstreamCA != "" {
			abs, err := filepath.Abs(c.UpstreamCA)
			if err != nil {
				return err
			}
			c.UpstreamCA = abs
		}
		return nil
	}
}

// printEgress shows a sandbox's policy (status, allow).
func printEgress(w io.Writer, s egress.Settings) {
	s = s.WithDefaults()
	what := map[string]string{
		egress.Allowlist: fmt.Sprintf("allowlist (the default list of %d hosts", len(egress.DefaultAllow)),
		egress.Open:      "open (any public host",
		egress.None:      "none (the agents' APIs only",
	}[s.Mode]
	if len(s.Allow) > 0 {
		what += ", and " + strings.Join(s.Allow, " ")
	}
	fmt.Fprintf(w, "Egress:     %s)\n", what)
	names := make([]string, 0, len(s.Upstreams))
	for k := range s.Upstreams {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, name := range names {
		fmt.Fprintf(w, "Upstream:   %s → %s\n", name, s.Upstreams[name])
	}
}
