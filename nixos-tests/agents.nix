# A declared sandbox with the agents: each pinned agent runs in the guest,
# Claude Code only with the licence accepted, and the keys go from a
# root-only credentials file (LoadCredential) to the host daemon's proxy,
# which puts them on the requests the guest sends with placeholders, to a
# model-API stub on the test host's loopback (./api-stub.py). The keys are
# generated inside the test VM at run time: no build output can hold them,
# and the test looks for them in the guest, the sandbox's files and disk,
# the journal and what the store gained at run time.
{ self }:
let
  manifest = builtins.fromJSON (builtins.readFile ../go/internal/agents/manifest.json);
  # agent → [ command, version ] ("0.171.0-linux-x64" is codex-cli 0.171.0)
  agents = builtins.mapAttrs (_: a: [ a.command (builtins.head (builtins.split "-" manifest.packages.${a.package}.version)) ]) manifest.agents;
  stubPort = 8443;
  stubURL = "https://127.0.0.1:${toString stubPort}";
  stubLog = "/run/keystone-test-api-stub/requests.jsonl";
  # root's, 0400, outside the store, written by the test script
  credentialsFile = "/run/keystone-test/credentials";
in
{
  name = "keystone-agent-agents";

  nodes.host = { pkgs, ... }:
    let
      # The stub's TLS certificate (a test's, not a secret), which the
      # proxy trusts through egress.upstreamCA as a company gateway's.
      stubCert = pkgs.runCommand "keystone-test-api-stub-cert" { nativeBuildInputs = [ pkgs.openssl ]; } ''
        mkdir $out
        openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 36500 \
          -subj /CN=keystone-test-api-stub -addext subjectAltName=IP:127.0.0.1,DNS:localhost \
          -keyout $out/key.pem -out $out/cert.pem
      '';
      apiStub = pkgs.writeShellScriptBin "api-stub" ''
        exec ${pkgs.python3}/bin/python3 ${pkgs.writeText "api-stub.py" (builtins.readFile ./api-stub.py)} "$@"
      '';
    in
    {
      imports = [ (import ./common.nix { inherit self; }) ];
      keystone.agent.allowUnfreeAgents = [ "claude" ];
      keystone.agent.sandboxes.agents = {
        projectPath = "/home/alice/project";
        owner = "alice";
        memory = 2048;
        vcpus = 1;
        sshPort = 2302;
        # the session's agent; `agents` is left to its default: every free
        # agent and those of allowUnfreeAgents, i.e. all three
        agent = "claude";
        inherit credentialsFile;
        egress = {
          upstreams = { anthropic = stubURL; openai = stubURL; gemini = stubURL; };
          upstreamCA = "${stubCert}/cert.pem";
        };
      };
      environment.systemPackages = [ apiStub ];
      systemd.services.keystone-test-api-stub = {
        description = "Model API stub for the keystone agents test";
        wantedBy = [ "multi-user.target" ];
        serviceConfig = {
          ExecStart = "${apiStub}/bin/api-stub serve --port ${toString stubPort} --cert ${stubCert}/cert.pem --key ${stubCert}/key.pem --log ${stubLog}";
          RuntimeDirectory = "keystone-test-api-stub";
        };
      };
    };

  testScript = builtins.readFile ./lib.py + ''
    import json

    agents = json.loads('${builtins.toJSON agents}')
    creds = "${credentialsFile}"
    keys = "/run/keystone-test/keys"  # the values alone: what every leak check looks for
    log = "${stubLog}"

    def in_guest(cmd):
        return as_alice("keystone agent exec agents -- " + cmd)

    def check_stub(var, header, path, prefix="", stream=False):
        host.succeed(f"api-stub check --log {log} --credentials {creds} --var {var} --header {header} --path {path}"
                     + (f" --prefix '{prefix}'" if prefix else "") + (" --stream" if stream else ""))

    host.wait_for_unit("multi-user.target")
    plant_secrets_and_project(host)
    host.wait_for_unit("keystone-test-api-stub.service")

    def run():
        with subtest("the keys: a root-only file outside the store, made at run time"):
            host.succeed("install -d -m 0700 /run/keystone-test")
            host.succeed("umask 077; for v in ANTHROPIC_API_KEY OPENAI_API_KEY GEMINI_API_KEY; do"
                         " echo \"$v=ks-test-$(od -An -N16 -tx1 /dev/urandom | tr -d ' \\n')\"; done > " + creds)
            host.succeed(f"cut -d= -f2- {creds} > {keys}")
            host.fail(as_alice(f"cat {creds}"))

        with subtest("a declared sandbox with agents boots"):
            host.succeed(as_alice("systemctl start microvm@agents.service"))
            host.wait_until_succeeds(in_guest("true"), timeout=300)
            host.wait_until_succeeds("journalctl -u keystone-agent-hostd-agents.service | grep -q 'credentials: the proxy holds 3'", timeout=60)

        with subtest("every agent is installed, at the manifest's version"):
            for name, (command, version) in agents.items():
                out = host.succeed(in_guest(f"{command} --version"), timeout=120)
                assert version in out, f"{command} --version: {out!r}, want {version}"

        with subtest("the session's agent runs in its tmux session"):
            host.wait_until_succeeds(in_guest("tmux has-session -t =keystone-agent"), timeout=300)

        with subtest("the guest has placeholders and the proxy's routes"):
            env = host.succeed(in_guest("sh -c 'echo $ANTHROPIC_API_KEY $ANTHROPIC_BASE_URL'")).split()
            assert env == ["keystone-placeholder-anthropic-api-key", "http://10.0.2.100:3128/anthropic"], env

        with subtest("a request with the placeholder reaches the API with the real key"):
            host.succeed(f": > {log}")
            out = host.succeed(in_guest(
                "sh -c 'curl -sS --fail -m 60 \"$ANTHROPIC_BASE_URL/v1/messages\""
                " -H \"x-api-key: $ANTHROPIC_API_KEY\" -H anthropic-version:2023-06-01 -H content-type:application/json"
                " -d \"{\\\"model\\\":\\\"claude-stub\\\",\\\"max_tokens\\\":16,\\\"messages\\\":[]}\"'"))
            assert "stub says hi" in out, out
            check_stub("ANTHROPIC_API_KEY", "x-api-key", "/v1/messages")

        with subtest("claude -p answers through the proxy"):
            host.succeed(f": > {log}")
            out = host.succeed(in_guest("env CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1 claude -p hi --output-format text"), timeout=600)
            assert "stub says hi" in out, out
            check_stub("ANTHROPIC_API_KEY", "x-api-key", "/v1/messages", stream=True)

        with subtest("codex exec answers through the proxy"):
            host.succeed(f": > {log}")
            out = host.succeed(in_guest("codex exec --skip-git-repo-check hi"), timeout=600)
            assert "stub says hi" in out, out
            check_stub("OPENAI_API_KEY", "authorization", "/v1/responses", prefix="Bearer ")

        with subtest("gemini -p answers through the proxy"):
            host.succeed(f": > {log}")
            out = host.succeed(in_guest("gemini -p hi"), timeout=600)
            assert "stub says hi" in out, out
            check_stub("GEMINI_API_KEY", "x-goog-api-key", "/v1beta/")

        with subtest("no key in the guest: files, environments, command lines"):
            # the dump is checked for a placeholder first, so an empty one cannot pass
            host.succeed(in_guest(
                "sudo sh -c 'cat /proc/[0-9]*/environ /proc/[0-9]*/cmdline;"
                " find /workspace /home /home/sandbox /root /etc /run /tmp /var /mnt/keystone -type f -size -64M -print0"
                " | xargs -0 cat; true' 2>/dev/null") + " > /run/keystone-test/guest.dump")
            host.succeed("grep -qaF keystone-placeholder-anthropic-api-key /run/keystone-test/guest.dump")
            host.fail(f"grep -qaF -f {keys} /run/keystone-test/guest.dump")

        with subtest("a plain git commit in the guest (the agents' identity) syncs"):
            host.succeed(in_guest("sh -c 'cd /workspace && echo agents >> README && git commit -qam by-an-agent'"))
            host.succeed(as_alice("keystone agent sync agents"))
            assert host.succeed(as_alice("git -C ~/project log -1 --format=%s")).strip() == "by-an-agent"

        with subtest("stop leaves no process behind"):
            host.succeed(as_alice("systemctl stop microvm@agents.service"))
            assert_no_process(host, "agents")

        with subtest("no key in the sandbox's files and disk, the registry, the journal or the store"):
            # <dir> holds the workspace, the keys share, var.img (the guest's /var, deleted blocks too)
            host.fail(f"grep -rqaF -f {keys} /var/lib/keystone-agent/agents /etc/keystone")
            host.fail(f"journalctl -b --no-pager | grep -qaF -f {keys}")
            # the store's writable layer: everything added to /nix/store since boot
            host.succeed(f"! test -d /nix/.rw-store || ! grep -rqaF -f {keys} /nix/.rw-store")

    if nested_kvm(host):
        run()
  '';
}
