# The host module: keystone.agent.* options and declared sandboxes.
# (The guest module, guest.nix, is exported separately as nixosModules.guest.)
{
  imports = [ ./host.nix ];
}
