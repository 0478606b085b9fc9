# The keystone package: the Go helper (lib/package.nix) wrapped with what it
# runs, and the flake `keystone agent start` renders sandboxes against.
#
# The pin (keystoneFlake, the flake's own source by store path and narHash)
# changes with every commit of the repository; set here, in a wrapper, a
# commit to docs/ or modules/ rebuilds a small script, not the Go build.
# PATH gets nix (`nix build` of a sandbox's flake) and the trusted git sync
# fast-forwards the host repository with, as a suffix, so the system's own
# nix and its settings win. KEYSTONE_AGENT_GIT and KEYSTONE_AGENT_FLAKE are
# defaults only: a user's setting wins.
{ lib, runCommand, makeWrapper, nix, git, keystone-unwrapped, keystoneFlake ? null }:
runCommand "keystone-${keystone-unwrapped.version}" {
  nativeBuildInputs = [ makeWrapper ];
  passthru.unwrapped = keystone-unwrapped;
  meta = keystone-unwrapped.meta // { description = "Run AI coding agents in isolated KVM microVM sandboxes"; };
} ''
  makeWrapper ${keystone-unwrapped}/bin/keystone $out/bin/keystone \
    --suffix PATH : ${lib.makeBinPath [ nix git ]} \
    --set-default KEYSTONE_AGENT_GIT ${git}/bin/git \
    ${lib.optionalString (keystoneFlake != null) "--set-default KEYSTONE_AGENT_FLAKE ${lib.escapeShellArg keystoneFlake}"}
  # the shell completions (share/{bash-completion,zsh,fish}) of the Go build
  if [ -d ${keystone-unwrapped}/share ]; then ln -s ${keystone-unwrapped}/share $out/share; fi
''
