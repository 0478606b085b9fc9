package gitsync

import (
	"path"
	"strings"
)

// ReviewPath is an incoming path that can run code on the host or in CI once it
// lands: the user should read it before running anything.
type ReviewPath struct {
	Path   string `json:"path"`
	Reason string `json:"reason"`
	Branch string `json:"branch"`
}

// gateDirs are directories whose contents run on the host or in CI, at any depth
// for the CI ones and at the top for the rest.
var gateDirs = map[string]string{
	".github":       "CI workflows and actions",
	".gitlab":       "CI configuration",
	".circleci":     "CI configuration",
	".buildkite":    "CI configuration",
	".husky":        "git hooks",
	".githooks":     "git hooks",
	".claude":       "agent configuration and hooks on the host",
	".gemini":       "agent configuration on the host",
	".codex":        "agent configuration on the host",
	".cursor":       "agent configuration on the host",
	".vscode":       "editor tasks and settings",
	".idea":         "editor run configurations",
	".devcontainer": "container definition",
	".direnv":       "direnv environment",
	".cargo":        "cargo configuration",
}

// gateFiles are file names that run code wherever they appear.
var gateFiles = map[string]string{
	"flake.nix":               "Nix flake (evaluated on the host)",
	"flake.lock":              "Nix flake inputs",
	"shell.nix":               "Nix shell (evaluated on the host)",
	"default.nix":             "Nix expression",
	".envrc":                  "direnv (runs on cd)",
	".gitlab-ci.yml":          "CI configuration",
	".travis.yml":             "CI configuration",
	"Jenkinsfile":             "CI configuration",
	"azure-pipelines.yml":     "CI configuration",
	".pre-commit-config.yaml": "git hooks",
	"Makefile":                "build commands",
	"makefile":                "build commands",
	"GNUmakefile":             "build commands",
	"justfile":                "build commands",
	"Justfile":                "build commands",
	"Taskfile.yml":            "build commands",
	"build.rs":                "runs at cargo build",
	"package.json":            "npm scripts (run at install)",
	".npmrc":                  "npm configuration",
	".gitattributes":          "git attributes (filters, diff drivers)",
	".gitmodules":             "git submodules",
	".mcp.json":               "agent tool servers",
	"CLAUDE.md":               "instructions to agents on the host",
	"AGENTS.md":               "instructions to agents on the host",
	"GEMINI.md":               "instructions to agents on the host",
}

// gateReason says why p needs review, or "" when it does not.
func gateReason(p string, symlink bool) string {
	if first, _, ok := strings.Cut(p, "/"); ok {
		if r, ok := gateDirs[first]; ok {
			return r
		}
	}
	if r, ok := gateFiles[path.Base(p)]; ok {
		return r
	}
	if symlink {
		return "symbolic link"
	}
	return ""
}
