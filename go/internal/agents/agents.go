// Package agents owns the pinned agent manifest, manifest.json: the npm
// tarballs that make up the agents and their Node runtime, each with the
// registry's integrity hash, and how each agent is launched without
// permission prompts. Go embeds the file; the NixOS guest (modules/agents.nix)
// reads the same file, so both guests run the same versions with the same
// flags. docs/agents.md says how to bump it (bump.sh).
//
// It never downloads or runs anything: package agentstore fetches the
// tarballs for the test guest, package sandbox starts the session.
package agents

import (
	_ "embed"
	"encoding/json"
	"fmt"
	"path"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
)

//go:embed manifest.json
var manifestJSON []byte

// Package is one npm tarball, unpacked as is (its "package/" directory).
type Package struct {
	NPM       string `json:"npm"`     // registry name
	Version   string `json:"version"` // exact version
	URL       string `json:"url"`     // the registry's dist.tarball
	Integrity string `json:"integrity"`
	License   string `json:"license"` // "unfree" needs the user's explicit consent on NixOS
	// Linkage of its native programs: "glibc" (NixOS patches them with
	// autoPatchelf), "static", or "" for scripts (which run on the pinned Node).
	Linkage string `json:"linkage,omitempty"`
	// Bin maps a program name to its path inside the package.
	Bin map[string]string `json:"bin"`
}

// Agent is one agent a sandbox can run in its session.
type Agent struct {
	Package string `json:"package"` // key in Manifest.Packages
	Command string `json:"command"` // a Bin name of that package
	// Flags turn off the agent's permission prompts for the pinned version:
	// the sandbox is the boundary.
	Flags []string `json:"flags"`
	// Home holds JSON files written into the guest user's home when they are
	// missing, before the agent first runs: the first-run state that trusts
	// /workspace and skips a setup that would end the agent when its API is
	// unreachable. The agent owns them afterwards (logins are saved there).
	Home map[string]json.RawMessage `json:"home,omitempty"`
}

// Manifest is manifest.json.
type Manifest struct {
	Packages map[string]Package `json:"packages"`
	Agents   map[string]Agent   `json:"agents"`
}

// Load returns the embedded manifest, checked once.
var Load = sync.OnceValues(func() (*Manifest, error) { return Parse(manifestJSON) })

// Parse reads and checks a manifest.
func Parse(data []byte) (*Manifest, error) {
	var m Manifest
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, fmt.Errorf("agent manifest: %w", err)
	}
	if err := m.validate(); err != nil {
		return nil, fmt.Errorf("agent manifest: %w", err)
	}
	return &m, nil
}

var (
	idPattern        = regexp.MustCompile(`^[a-z0-9][a-z0-9-]*$`)
	integrityPattern = regexp.MustCompile(`^sha512-[A-Za-z0-9+/]{86}==$`)
)

// RegistryURL is the only place tarballs may come from.
const RegistryURL = "https://registry.npmjs.org/"

func (m *Manifest) validate() error {
	if len(m.Packages) == 0 || len(m.Agents) == 0 {
		return fmt.Errorf("no packages or no agents")
	}
	for id, p := range m.Packages {
		switch {
		case !idPattern.MatchString(id):
			return fmt.Errorf("package id %q is not lower-case letters, digits and '-'", id)
		case p.NPM == "" || p.Version == "":
			return fmt.Errorf("package %q: npm name or version missing", id)
		case !strings.HasPrefix(p.URL, RegistryURL):
			return fmt.Errorf("package %q: url %q is not on %s", id, p.URL, RegistryURL)
		case !integrityPattern.MatchString(p.Integrity):
			return fmt.Errorf("package %q: integrity %q is not a sha512 SRI hash", id, p.Integrity)
		case len(p.Bin) == 0:
			return fmt.Errorf("package %q has no programs", id)
		case p.Linkage != "" && p.Linkage != "glibc" && p.Linkage != "static":
			return fmt.Errorf("package %q: linkage %q is not glibc, static or empty", id, p.Linkage)
		}
		for name, rel := range p.Bin {
			if !idPattern.MatchString(name) {
				return fmt.Errorf("package %q: program name %q is not lower-case letters, digits and '-'", id, name)
			}
			if rel == "" || path.IsAbs(rel) || path.Clean(rel) != rel || rel == ".." || strings.HasPrefix(rel, "../") {
				return fmt.Errorf("package %q: program %q: path %q must be relative and stay inside the package", id, name, rel)
			}
		}
	}
	seen := map[string]string{}
	for _, id := range m.PackageIDs() {
		for name := range m.Packages[id].Bin {
			if other, ok := seen[name]; ok {
				return fmt.Errorf("program %q is in both %q and %q", name, other, id)
			}
			seen[name] = id
		}
	}
	for name, a := range m.Agents {
		p, ok := m.Packages[a.Package]
		switch {
		case !idPattern.MatchString(name):
			return fmt.Errorf("agent name %q is not lower-case letters, digits and '-'", name)
		case !ok:
			return fmt.Errorf("agent %q: no package %q", name, a.Package)
		case p.Bin[a.Command] == "":
			return fmt.Errorf("agent %q: package %q has no program %q", name, a.Package, a.Command)
		}
		for _, f := range a.Flags {
			if !strings.HasPrefix(f, "-") {
				return fmt.Errorf("agent %q: flag %q does not start with '-'", name, f)
			}
		}
		for rel, data := range a.Home {
			if rel == "" || path.IsAbs(rel) || path.Clean(rel) != rel || strings.HasPrefix(rel, "../") || rel == ".." {
				return fmt.Errorf("agent %q: home file %q must be relative and stay inside the home", name, rel)
			}
			if !json.Valid(data) {
				return fmt.Errorf("agent %q: home file %q is not JSON", name, rel)
			}
		}
	}
	return nil
}

// Names returns the agent names, sorted.
func (m *Manifest) Names() []string {
	names := make([]string, 0, len(m.Agents))
	for n := range m.Agents {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// PackageIDs returns the package ids, sorted.
func (m *Manifest) PackageIDs() []string {
	ids := make([]string, 0, len(m.Packages))
	for id := range m.Packages {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return ids
}

// UnknownError names an agent the manifest does not have.
type UnknownError struct {
	Name  string
	Known []string
}

func (e *UnknownError) Error() string {
	return fmt.Sprintf("unknown agent %q (choose %s)", e.Name, strings.Join(e.Known, ", "))
}

// Agent returns the agent called name, or an *UnknownError.
func (m *Manifest) Agent(name string) (Agent, error) {
	a, ok := m.Agents[name]
	if !ok {
		return Agent{}, &UnknownError{Name: name, Known: m.Names()}
	}
	return a, nil
}

// Argv is the agent's command line: its program and its no-prompt flags.
func (a Agent) Argv() []string { return append([]string{a.Command}, slices.Clone(a.Flags)...) }
