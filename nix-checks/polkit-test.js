// Runs the polkit rules host.nix generates (read from stdin) against a
// stand-in `polkit` object: the owner may start/stop/restart their own
// sandbox's units, and nobody gets anything else.
//   node nix-checks/polkit-test.js < rules.js
const rules = [];
globalThis.polkit = { Result: { YES: "yes" }, addRule: (f) => rules.push(f) };
eval(require("fs").readFileSync(0, "utf8"));

const decide = (user, unit, verb, id = "org.freedesktop.systemd1.manage-units") => {
  const action = { id, lookup: (k) => ({ unit, verb })[k] };
  for (const r of rules) {
    const v = r(action, { user });
    if (v !== undefined) return v;
  }
  return "no rule";
};
const cases = [
  ["alice", "microvm@demo.service", "start", "yes"],
  ["alice", "microvm@demo.service", "stop", "yes"],
  ["alice", "keystone-agent-prepare-demo.service", "restart", "yes"],
  ["alice", "microvm@demo.service", "enable", "no rule"],
  ["bob", "microvm@demo.service", "start", "no rule"],
  ["alice", "microvm@other.service", "start", "no rule"],
  ["alice", "sshd.service", "stop", "no rule"],
];
let bad = 0;
for (const [user, unit, verb, want] of cases) {
  const got = decide(user, unit, verb);
  if (got !== want) { console.log(`FAIL ${user} ${verb} ${unit}: got ${got}, want ${want}`); bad = 1; }
}
if (decide("alice", "microvm@demo.service", "start", "org.freedesktop.login1.reboot") !== "no rule") {
  console.log("FAIL another action is allowed"); bad = 1;
}
console.log(bad ? "nix-checks: polkit rules FAILED" : `nix-checks: polkit rules: ${cases.length + 1} cases ok`);
process.exit(bad);
