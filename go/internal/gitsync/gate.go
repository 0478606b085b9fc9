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

// The review gate matches names at any depth. CI systems read only the top
// level, but direnv, make, editors, agents and build tools pick these files up
// from whichever directory the user works in (a subproject of a monorepo, a
// nested package), so a nested one runs as surely as a top-level one; a name
// listed in a vendored directory costs a line of output, a missed one costs
// the host.

// gateDirs are directories whose contents run on the host or in CI.
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
	".mvn":          "Maven wrapper and extensions",
	".yarn":         "yarn plugins and releases (run by yarn)",
	".zed":          "editor tasks and language servers",
	".helix":        "editor language servers",
}

// gateFiles are file names that run code.
var gateFiles = map[string]string{
	"flake.nix":                 "Nix flake (evaluated on the host)",
	"flake.lock":                "Nix flake inputs",
	"shell.nix":                 "Nix shell (evaluated on the host)",
	"default.nix":               "Nix expression",
	".envrc":                    "direnv (runs on cd)",
	".gitlab-ci.yml":            "CI configuration",
	".travis.yml":               "CI configuration",
	"Jenkinsfile":               "CI configuration",
	"azure-pipelines.yml":       "CI configuration",
	".pre-commit-config.yaml":   "git hooks",
	"Makefile":                  "build commands",
	"makefile":                  "build commands",
	"GNUmakefile":               "build commands",
	"justfile":                  "build commands",
	"Justfile":                  "build commands",
	"Taskfile.yml":              "build commands",
	"CMakeLists.txt":            "build commands (CMake)",
	"meson.build":               "build commands (Meson)",
	"configure":                 "build script",
	"build.rs":                  "runs at cargo build",
	"Cargo.toml":                "cargo manifest (build scripts, aliases)",
	"package.json":              "npm scripts (run at install)",
	".npmrc":                    "npm configuration",
	".yarnrc":                   "yarn configuration",
	".yarnrc.yml":               "yarn configuration (plugins, yarnPath)",
	".pnpmfile.cjs":             "pnpm hooks (run at install)",
	"bunfig.toml":               "bun configuration (preload scripts)",
	"gradlew":                   "Gradle wrapper (runs on build)",
	"gradle-wrapper.properties": "Gradle wrapper download (runs on build)",
	"build.gradle":              "Gradle build script",
	"build.gradle.kts":          "Gradle build script",
	"settings.gradle":           "Gradle build script",
	"settings.gradle.kts":       "Gradle build script",
	"mvnw":                      "Maven wrapper (runs on build)",
	"pom.xml":                   "Maven build (plugins)",
	"setup.py":                  "Python build script (runs at install)",
	"pyproject.toml":            "Python build configuration (build backends, hooks)",
	"conftest.py":               "pytest plugin (runs on test)",
	"noxfile.py":                "nox sessions",
	"tox.ini":                   "tox commands",
	"Gemfile":                   "Bundler (evaluated as Ruby)",
	"Rakefile":                  "rake tasks (Ruby)",
	".tool-versions":            "asdf/mise tool versions (installs and runs them)",
	"mise.toml":                 "mise tasks and tools",
	".mise.toml":                "mise tasks and tools",
	"Dockerfile":                "container build",
	"docker-compose.yml":        "container definition",
	"compose.yaml":              "container definition",
	"Vagrantfile":               "VM definition (Ruby)",
	".gitattributes":            "git attributes (filters, diff drivers)",
	".gitmodules":               "git submodules",
	".lfsconfig":                "git LFS configuration",
	".mcp.json":                 "agent tool servers",
	"CLAUDE.md":                 "instructions to agents on the host",
	"AGENTS.md":                 "instructions to agents on the host",
	"GEMINI.md":                 "instructions to agents on the host",
	"CLAUDE.local.md":           "instructions to agents on the host",
	".cursorrules":              "instructions to agents on the host",
	".windsurfrules":            "instructions to agents on the host",
	".aider.conf.yml":           "agent configuration (lint and test commands)",
	// Second spellings of names above: each tool reads both.
	"docker-compose.yaml":    "container definition",
	"compose.yml":            "container definition",
	"Containerfile":          "container build",
	"Taskfile.yaml":          "build commands",
	".pre-commit-config.yml": "git hooks",
	"mise.local.toml":        "mise tasks and tools",
	".mise.local.toml":       "mise tasks and tools",
	"deno.json":              "deno tasks",
	"deno.jsonc":             "deno tasks",
	// Version files: the version manager installs what they name and runs it
	// (pyenv and rbenv have followed crafted names out of their directories).
	".python-version":     "pyenv version (installs and runs it)",
	".ruby-version":       "Ruby version manager (installs and runs it)",
	".nvmrc":              "Node version manager (installs and runs it)",
	".node-version":       "Node version manager (installs and runs it)",
	"rust-toolchain":      "rustup toolchain (may name a local directory to run)",
	"rust-toolchain.toml": "rustup toolchain (may name a local directory to run)",
	".bazelversion":       "bazelisk (downloads and runs that bazel)",
	// Build and task files that are code, or name commands.
	"composer.json":      "composer scripts (run at install)",
	"build.sbt":          "sbt build (Scala)",
	"mix.exs":            "Mix project (Elixir)",
	"Brewfile":           "brew bundle (evaluated as Ruby)",
	"devbox.json":        "devbox shell hooks",
	"devenv.nix":         "devenv shell (evaluated on the host)",
	"WORKSPACE":          "Bazel workspace (repository rules run)",
	"WORKSPACE.bazel":    "Bazel workspace (repository rules run)",
	"MODULE.bazel":       "Bazel module (extensions run)",
	".bazelrc":           "Bazel options",
	"lefthook.yml":       "git hooks",
	".lefthook.yml":      "git hooks",
	"lefthook-local.yml": "git hooks",
	"pytest.ini":         "pytest options (plugins load at test)",
	"setup.cfg":          "Python build and pytest options",
	".pylintrc":          "pylint plugins (load at lint)",
	// Editors that run what a project file tells them to.
	".exrc":          "vim/neovim exrc (runs on open)",
	".nvim.lua":      "neovim exrc (runs on open)",
	".nvimrc":        "neovim exrc (runs on open)",
	".dir-locals.el": "Emacs directory variables (eval)",
}

// gateReason says why p needs review, or "" when it does not.
func gateReason(p string, symlink bool) string {
	dirs := strings.Split(path.Dir(p), "/")
	for _, d := range dirs {
		if r, ok := gateDirs[d]; ok {
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
