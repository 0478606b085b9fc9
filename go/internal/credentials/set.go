package credentials

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"sort"
	"strings"
)

// Set holds credentials by variable name. Its zero value is empty. It never
// prints a value: fmt shows the names only.
type Set struct {
	m map[string]string
}

// Get returns the credential named v.
func (s Set) Get(v string) (string, bool) {
	val, ok := s.m[v]
	return val, ok && val != ""
}

// Names lists the variables present, sorted.
func (s Set) Names() []string {
	out := make([]string, 0, len(s.m))
	for k := range s.m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// Len is the number of credentials.
func (s Set) Len() int { return len(s.m) }

// Merge returns s with every credential of o added, o winning.
func (s Set) Merge(o Set) Set {
	m := make(map[string]string, len(s.m)+len(o.m))
	for k, v := range s.m {
		m[k] = v
	}
	for k, v := range o.m {
		m[k] = v
	}
	return Set{m: m}
}

func (s *Set) put(k, v string) {
	if s.m == nil {
		s.m = map[string]string{}
	}
	s.m[k] = v
}

// String names the credentials, never their values.
func (s Set) String() string { return "credentials(" + strings.Join(s.Names(), ", ") + ")" }

// GoString keeps %#v from printing the map.
func (s Set) GoString() string { return s.String() }

// Format makes every verb print the names only.
func (s Set) Format(f fmt.State, _ rune) { io.WriteString(f, s.String()) }

// TakeEnv returns the credentials in this process's environment and removes
// them from it, so that nothing this process starts later (nix, the VM's
// runner, git) inherits them. `start` calls it first thing.
func TakeEnv() Set {
	var s Set
	for _, v := range Vars() {
		if val, ok := os.LookupEnv(v); ok {
			if val != "" {
				s.put(v, val)
			}
			os.Unsetenv(v)
		}
	}
	return s
}

// MaxFileSize bounds a credentials file and the pipe to the daemon.
const MaxFileSize = 64 << 10

// ModeError refuses a credentials file others can read.
type ModeError struct {
	Path string
	Mode fs.FileMode
}

func (e *ModeError) Error() string {
	return fmt.Sprintf("credentials file %q is accessible to other users (mode %04o): run `chmod 600 %s`", e.Path, e.Mode.Perm(), e.Path)
}

// ReadFile reads a credentials file: one NAME=value a line (a shell-style
// .env: blank lines, # comments and `export ` are allowed, values may be
// quoted). A missing file is an empty Set. A file that group or others may
// access is refused, as is one larger than MaxFileSize. Unknown names are
// returned (names only) so the caller can warn about typos.
func ReadFile(path string) (Set, []string, error) {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return Set{}, nil, nil
	}
	if err != nil {
		return Set{}, nil, fmt.Errorf("failed to read the credentials file: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return Set{}, nil, fmt.Errorf("failed to read the credentials file: %w", err)
	}
	if !st.Mode().IsRegular() {
		return Set{}, nil, fmt.Errorf("credentials file %q is not a regular file", path)
	}
	if st.Mode().Perm()&0o077 != 0 {
		return Set{}, nil, &ModeError{Path: path, Mode: st.Mode()}
	}
	data, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return Set{}, nil, fmt.Errorf("failed to read the credentials file %q: %w", path, err)
	}
	s, unknown, err := Parse(data)
	if err != nil {
		return Set{}, nil, fmt.Errorf("credentials file %q: %w", path, err)
	}
	return s, unknown, nil
}

// Parse reads the NAME=value format of the credentials file (and of the pipe
// from `start` to the daemon). Errors name the line, never its value.
func Parse(data []byte) (Set, []string, error) {
	var s Set
	var unknown []string
	if len(data) > MaxFileSize {
		return s, nil, fmt.Errorf("larger than %d bytes", MaxFileSize)
	}
	for i, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(strings.TrimSuffix(line, "\r"))
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		line = strings.TrimPrefix(line, "export ")
		name, val, ok := strings.Cut(line, "=")
		name = strings.TrimSpace(name)
		if !ok || name == "" {
			return Set{}, nil, fmt.Errorf("line %d: want NAME=value", i+1)
		}
		val = unquote(strings.TrimSpace(val))
		if !visibleASCII(val) {
			return Set{}, nil, fmt.Errorf("line %d: the value of %s must be printable ASCII without spaces", i+1, safeName(name))
		}
		if !known(name) {
			unknown = append(unknown, safeName(name))
			continue
		}
		if val != "" {
			s.put(name, val)
		}
	}
	return s, unknown, nil
}

// Encode writes s in the format Parse reads. Each value is quoted: Parse
// takes one pair of quotes around a value away, and a value may itself begin
// and end with a quote.
func Encode(s Set) []byte {
	var b strings.Builder
	for _, k := range s.Names() {
		b.WriteString(k + "='" + s.m[k] + "'\n")
	}
	return []byte(b.String())
}

func unquote(v string) string {
	if len(v) >= 2 && (v[0] == '"' || v[0] == '\'') && v[len(v)-1] == v[0] {
		return v[1 : len(v)-1]
	}
	return v
}

// visibleASCII: a key goes into an HTTP header, where a control character
// would be an injection and a space is never part of a key.
func visibleASCII(v string) bool {
	for i := 0; i < len(v); i++ {
		if v[i] < 0x21 || v[i] > 0x7e {
			return false
		}
	}
	return true
}

// safeName keeps a name from a file fit for a message: a name is a shell
// identifier, and anything else is replaced.
func safeName(n string) string {
	if len(n) > 64 {
		return "(a long name)"
	}
	for i := 0; i < len(n); i++ {
		c := n[i]
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_') {
			return "(a name with other characters)"
		}
	}
	return n
}

// Scrub returns env (NAME=value strings) without any credential variable.
func Scrub(env []string) []string {
	out := make([]string, 0, len(env))
	for _, kv := range env {
		name, _, _ := strings.Cut(kv, "=")
		if !known(name) {
			out = append(out, kv)
		}
	}
	return out
}
