# The NixOS tests' host nodes evaluate against the real host module (their
# Python test scripts only run on a KVM host with nixpkgs: `nix flake check`).
{ lib, pkgs, evalHost, ... }:
let
  fakeSource = name: { outPath = "/nix/store/00000000000000000000000000000000-${name}"; };
  self = fakeSource "source" // {
    nixosModules.host = { imports = [ ../modules ]; keystone.agent.package = pkgs.mkFake "keystone-0.1.0" { }; };
    nixosModules.guest = { };
    lib = { mkSandbox = _: { }; mkRunner = _: pkgs.mkFake "keystone-runner-bridge" { }; };
    packages.x86_64-linux.sandbox-runner = pkgs.mkFake "keystone-runner-user" { };
    inputs = {
      nixpkgs = fakeSource "nixpkgs";
      microvm = fakeSource "microvm" // {
        inputs = {
          flake-utils = fakeSource "flake-utils" // { inputs.systems = fakeSource "systems"; };
          spectrum = fakeSource "spectrum";
        };
      };
    };
  };
  declared = import ../nixos-tests/declared.nix { inherit self; };
  imperative = import ../nixos-tests/imperative.nix { inherit self; };
  agents = import ../nixos-tests/agents.nix { inherit self; };
  hostOf = t: evalHost [ t.nodes.host ];
  has = lib.hasInfix;
in
{
  test_declared_node = { expr = (hostOf declared).failedAssertions; expected = [ ]; };
  test_declared_node_evaluates = { expr = (hostOf declared).toplevel; };
  test_declared_sandbox = { expr = (hostOf declared).config.microvm.vms ? demo; expected = true; };
  test_declared_sized_to_fit = {
    # two sandboxes of 2 GiB each (2050 MiB to qemu) in a 6 GiB, 2-core test VM, one vcpu each
    expr = let h = hostOf declared; in [ h.config.virtualisation.memorySize h.config.virtualisation.cores
      (lib.mapAttrs (_: g: [ g.config.microvm.mem g.config.microvm.vcpu ]) h.guests) ];
    expected = [ 6144 2 { demo = [ 2050 1 ]; lan = [ 2050 1 ]; } ];
  };
  test_declared_tap_not_nested = {
    expr = let h = hostOf declared; in [ h.config.keystone.agent.sandboxes.lan.network.mode h.config.keystone.agent.sandboxes.lan.nested (has "-vmx,-svm" h.hypervisor.lan.command) ];
    expected = [ "tap" false true ];
  };
  test_imperative_bridge = {
    expr = let c = (hostOf imperative).config; in [ c.keystone.agent.bridges c.environment.etc."qemu/bridge.conf".text (c.security.wrappers ? qemu-bridge-helper) ];
    expected = [ [ "br0" ] "allow br0\n" true ];
  };
  test_imperative_sized_to_fit = { expr = has "--memory 2048 --vcpus 1 --no-attach" imperative.testScript; expected = true; };
  test_imperative_node = { expr = (hostOf imperative).failedAssertions; expected = [ ]; };
  test_imperative_node_evaluates = { expr = (hostOf imperative).toplevel; };
  test_imperative_helper_installed = {
    expr = lib.elem "keystone-0.1.0" (map (p: p.name) (hostOf imperative).config.environment.systemPackages);
    expected = true;
  };
  test_agents_node = { expr = (hostOf agents).failedAssertions; expected = [ ]; };
  test_agents_node_evaluates = { expr = (hostOf agents).toplevel; };
  test_agents_installed = {
    # agents = null: the free ones and those of allowUnfreeAgents, i.e. all three
    expr = let names = map (p: p.name) (hostOf agents).guests.agents.config.environment.systemPackages; in
      map (n: lib.any (lib.hasPrefix "keystone-${n}-") names) [ "claude-code" "codex" "gemini-cli" ];
    expected = [ true true true ];
  };
  test_agents_credentials_to_the_daemon = {
    expr = let s = (hostOf agents).config.systemd.services.keystone-agent-hostd-agents.serviceConfig; in
      [ s.LoadCredential (has " --credentials %d/credentials" s.ExecStart) ];
    expected = [ [ "credentials:/run/keystone-test/credentials" ] true ];
  };
  test_agents_upstreams_are_the_stub = {
    expr = let e = (builtins.fromJSON (hostOf agents).config.environment.etc."keystone/agent/declared.json".text).sandboxes.agents.egress; in
      [ e.upstreams (lib.hasSuffix "-keystone-test-api-stub-cert/cert.pem" e.upstreamCA) ];
    expected = [ { anthropic = "https://127.0.0.1:8443"; gemini = "https://127.0.0.1:8443"; openai = "https://127.0.0.1:8443"; } true ];
  };
  test_agents_stub_runs = {
    expr = has "api-stub serve --port 8443" (hostOf agents).config.systemd.services.keystone-test-api-stub.serviceConfig.ExecStart;
    expected = true;
  };
  test_agents_without_consent = {
    # the same node without the licence accepted: one assertion, the guest module's
    expr = (evalHost [ agents.nodes.host { keystone.agent.allowUnfreeAgents = lib.mkForce [ ]; } ]).failedAssertions;
    expected = [ "guest agents: keystone.guest.agents contains \"claude\", whose licence is unfree (claude-code): accept it with keystone.guest.allowUnfreeAgents = [ \"claude\" ] (declared sandboxes: keystone.agent.allowUnfreeAgents), or remove \"claude\" from the agents." ];
  };
  test_nested_kvm = { expr = (hostOf declared).config.virtualisation.qemu.options; expected = [ "-cpu" "kvm64,+svm,+vmx" ]; };
  test_scripts_cover_the_issue = {
    expr = lib.filter (s: !has s (declared.testScript + imperative.testScript + agents.testScript)) [
      ''subtest("a declared sandbox boots")''
      ''subtest("the helper execs in it")''
      ''subtest("a plain git commit made inside syncs to the host repo")''
      ''subtest("the guest cannot read the host's ~/.ssh or /root")''
      ''subtest("stop leaves no process behind")''
      ''subtest("an imperative start works")''
      ''subtest("memory 2048 is given to qemu as 2050")''
      ''subtest("a rebuild does not restart a running sandbox")''
      ''subtest("a restart of the same sandbox boots the new guest")''
      ''subtest("a tap sandbox without nested virtualisation")''
      ''subtest("the build source is the flake alone: no key or disk reaches the store")''
      ''subtest("the same sandbox restarts after a stop")''
      ''subtest("and after SIGKILL, with qmp.sock left behind")''
      ''subtest("start --network bridge: on br0, reached through the control NIC")''
      "git commit -qam from-the-guest'"
      ''subtest("every agent is installed, at the manifest's version")''
      ''subtest("a request with the placeholder reaches the API with the real key")''
      ''subtest("claude -p answers through the proxy")''
      ''subtest("no key in the guest: files, environments, command lines")''
      ''subtest("no key in the sandbox's files and disk, the registry, the journal or the store")''
      ''subtest("a plain git commit in the guest (the agents' identity) syncs")''
      "git commit -qam by-an-agent'"
      "if nested_kvm(host):"
    ];
    expected = [ ];
  };
}
