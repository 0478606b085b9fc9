# Egress and credentials options of one declared sandbox,
# keystone.agent.sandboxes.<name>: the same meaning as `keystone agent start
# --egress/--allow/--upstream/--upstream-ca` (docs/egress.md). A second module
# of the sandbox submodule, beside ./sandbox.nix.
{ name, config, lib, ... }:
let
  inherit (lib) mkOption types literalExpression;
in
{
  options = {
    egress = {
      mode = mkOption {
        type = types.enum [ "allowlist" "open" "none" ];
        default = if config.network.mode == "user" then "allowlist" else "open";
        defaultText = literalExpression ''if network.mode == "user" then "allowlist" else "open"'';
        description = ''
          What the guest may reach through its host proxy. allowlist: the
          default list (agent APIs, package registries, code hosts;
          docs/egress.md) and `allow`. open: any public host, and direct
          connections. none: only `allow`. The agents' API routes work in
          every mode. Only network.mode = "user" can enforce allowlist and
          none.
        '';
      };
      allow = mkOption {
        type = types.listOf types.str;
        default = [ ];
        example = [ "pypi.corp.example" "*.internal.example:8443" "10.1.2.3" ];
        description = ''
          Entries added to the policy: HOST (ports 443 and 80), HOST:PORT,
          HOST:*, *.DOMAIN, or an address or prefix; addresses of the host's
          networks (loopback, private, link-local) are reached only through
          an entry naming the address. A rebuild applies them to the running
          proxy at once.
        '';
      };
      upstreams = mkOption {
        type = types.attrsOf types.str;
        default = { };
        example = literalExpression ''{ anthropic = "https://llm-gw.corp.example/anthropic"; }'';
        description = "Provider (anthropic, openai, gemini) → https base URL the proxy sends that provider's requests to, with the key: a company gateway.";
      };
      upstreamCA = mkOption {
        type = types.nullOr types.str;
        default = null;
        example = "/etc/ssl/corp-root.pem";
        description = "PEM file of extra certificate authorities trusted for the upstreams.";
      };
    };
    credentialsFile = mkOption {
      type = types.nullOr types.str;
      default = null;
      example = "/run/agenix/keystone-${name}";
      description = ''
        A file of API keys for the sandbox's proxy, one NAME=value a line
        (ANTHROPIC_API_KEY, CLAUDE_CODE_OAUTH_TOKEN, OPENAI_API_KEY,
        GEMINI_API_KEY), read at run time by systemd (LoadCredential=) for
        the host daemon, so it may be root-owned 0400: an agenix or
        sops-nix secret. Never a store path: keys must not be in the Nix
        store. The guest only ever gets placeholders.
      '';
    };
  };
}
