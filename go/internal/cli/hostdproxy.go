package cli

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"github.com/keystone-agent/keystone/internal/credentials"
	"github.com/keystone-agent/keystone/internal/egress"
	"github.com/keystone-agent/keystone/internal/hostd"
	"github.com/keystone-agent/keystone/internal/proxy"
	"github.com/keystone-agent/keystone/internal/sandbox"
)

// The host daemon's proxy service (hostd.go): its credentials and settings.

// daemonCredentials reads the credentials `start` piped to the daemon and
// the --credentials file, and removes every credential variable from the
// daemon's own environment, so nothing it starts inherits one.
func daemonCredentials(file string, logf func(string, ...any)) (credentials.Set, error) {
	var c credentials.Set
	if file != "" {
		fc, unknown, err := credentials.ReadFile(file)
		if err != nil {
			return c, err
		}
		if len(unknown) > 0 {
			logf("credentials: %s ignores unknown names %s", file, strings.Join(unknown, ", "))
		}
		c = fc
	}
	if fd, err := strconv.Atoi(os.Getenv(hostd.CredentialsFDEnv)); err == nil && fd > 2 {
		os.Unsetenv(hostd.CredentialsFDEnv)
		f := os.NewFile(uintptr(fd), "credentials")
		data, err := io.ReadAll(io.LimitReader(f, credentials.MaxFileSize+int64(len(hostd.CredentialsRecorded))+1))
		f.Close()
		if err != nil {
			return c, fmt.Errorf("failed to read the credentials from start: %w", err)
		}
		data, recorded := bytes.CutSuffix(data, []byte(hostd.CredentialsRecorded))
		if !recorded {
			return c, errors.New("the start that launched this daemon ended before it recorded the daemon's pid: exiting, so that no daemon runs that stop cannot find")
		}
		piped, _, err := credentials.Parse(data)
		if err != nil {
			return c, fmt.Errorf("credentials from start: %w", err)
		}
		c = c.Merge(piped)
	}
	credentials.TakeEnv() // not used: keys come from start or the file only
	logf("credentials: the proxy holds %d (%s)", c.Len(), strings.Join(c.Names(), ", "))
	return c, nil
}

// proxyService builds the sandbox's proxy for the daemon.
func proxyService(sbe *sandbox.Env, sb *sandbox.Sandbox, creds credentials.Set, logf func(string, ...any)) (hostd.Service, error) {
	settings := sb.Egress.WithDefaults()
	roots, err := proxy.RootCAs(settings.UpstreamCA)
	if err != nil {
		return nil, err
	}
	policy, err := proxy.LivePolicy(func() (egress.Settings, error) { return sbe.EgressSettings(sb.Name) }, logf)
	if err != nil {
		return nil, err
	}
	return &proxy.Service{StateDir: sb.Dir.State(), Options: proxy.Options{
		Sandbox: sb.Name, Declared: sb.Declared, Policy: policy, Credentials: creds,
		Upstreams: settings.Upstreams, RootCAs: roots,
		Logf: logf,
	}}, nil
}
