package guestconf

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"unicode"

	gitconfig "github.com/go-git/go-git/v5/plumbing/format/config"

	"github.com/keystone-agent/keystone/internal/gitsync"
)

// Identity is the author and committer of commits made in the sandbox.
type Identity struct {
	Name  string `json:"name"`
	Email string `json:"email"`
	// FromHost is false for the default identity of a project whose git
	// config has none.
	FromHost bool `json:"fromHost"`
}

func (id Identity) String() string { return fmt.Sprintf("%s <%s>", id.Name, id.Email) }

// DefaultIdentity is used when the host project has no identity, so commits
// in the sandbox never fail with "Author identity unknown".
func DefaultIdentity(sandbox string) Identity {
	return Identity{Name: "keystone agent " + sandbox, Email: sandbox + "@sandbox"}
}

// maxIdentity bounds each value: a name or address, never a file.
const maxIdentity = 256

// HostIdentity returns user.name and user.email as the trusted host git
// resolves them in the project (its own config, includes, the user's global
// config), or the default identity when either is unset or unusable; the
// error then says why, for a warning.
func HostIdentity(ctx context.Context, project, sandbox string) (Identity, error) {
	bin, err := gitsync.TrustedGit()
	if err != nil {
		return DefaultIdentity(sandbox), err
	}
	name, err := configValue(ctx, bin, project, "user.name")
	if err != nil {
		return DefaultIdentity(sandbox), err
	}
	email, err := configValue(ctx, bin, project, "user.email")
	if err != nil {
		return DefaultIdentity(sandbox), err
	}
	if name == "" || email == "" {
		return DefaultIdentity(sandbox), nil
	}
	return Identity{Name: name, Email: email, FromHost: true}, nil
}

// configValue runs `git config --get key` in the project; unset is "". Only
// the GIT_* variables that point git elsewhere are dropped, as gitsync does.
func configValue(ctx context.Context, bin, project, key string) (string, error) {
	cmd := exec.CommandContext(ctx, bin, "-C", project, "config", "--get", key)
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "GIT_") && !strings.HasPrefix(kv, "GIT_CONFIG_") {
			continue
		}
		cmd.Env = append(cmd.Env, kv)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	var ee *exec.ExitError
	if errors.As(err, &ee) && ee.ExitCode() == 1 {
		return "", nil // unset
	}
	if err != nil {
		return "", fmt.Errorf("git config --get %s in %q: %v %s", key, project, err, strings.TrimSpace(stderr.String()))
	}
	v := strings.TrimSuffix(string(out), "\n")
	if err := checkValue(v); err != nil {
		return "", fmt.Errorf("%s of %q %w", key, project, err)
	}
	return v, nil
}

func checkValue(v string) error {
	if len(v) > maxIdentity {
		return fmt.Errorf("is longer than %d bytes", maxIdentity)
	}
	if strings.IndexFunc(v, unicode.IsControl) >= 0 {
		return errors.New("has control characters")
	}
	return nil
}

// GitConfig renders the guest's included git config: the identity, and no
// signing, since the sandbox holds no key. The sandbox user's own
// ~/.gitconfig is read after it and may override anything.
func GitConfig(id Identity) ([]byte, error) {
	if err := checkValue(id.Name); err != nil {
		return nil, fmt.Errorf("git identity name %w", err)
	}
	if err := checkValue(id.Email); err != nil {
		return nil, fmt.Errorf("git identity email %w", err)
	}
	cfg := gitconfig.New()
	cfg.Section("user").SetOption("name", id.Name).SetOption("email", id.Email)
	cfg.Section("commit").SetOption("gpgsign", "false")
	cfg.Section("tag").SetOption("gpgsign", "false")
	source := "host"
	if !id.FromHost {
		source = "default"
	}
	cfg.Section("keystone").SetOption("identity", source)
	var b bytes.Buffer
	b.WriteString("# Written by keystone agent at every start (docs/agents.md); ~/.gitconfig overrides it.\n")
	if err := gitconfig.NewEncoder(&b).Encode(cfg); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// ReadIdentity reads the identity back from a file GitConfig wrote.
func ReadIdentity(data []byte) (Identity, error) {
	if len(data) > 16<<10 {
		return Identity{}, errors.New("git config file is too large")
	}
	cfg := gitconfig.New()
	if err := gitconfig.NewDecoder(bytes.NewReader(data)).Decode(cfg); err != nil {
		return Identity{}, err
	}
	u := cfg.Section("user")
	id := Identity{Name: u.Option("name"), Email: u.Option("email"), FromHost: cfg.Section("keystone").Option("identity") == "host"}
	if id.Name == "" || id.Email == "" {
		return Identity{}, errors.New("no identity in the git config file")
	}
	return id, nil
}
