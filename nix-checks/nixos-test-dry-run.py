"""Runs a NixOS test script (lib.py + testScript, as nix-checks/run.sh renders
it) against a stand-in for the test driver: a machine `host` whose methods
have the driver's names and signatures, record each command and answer
success with no output. Assertions are compiled out (the answers are not a
VM's), so every line runs: a misspelt helper, a method the driver does not
have, a wrong keyword or an f-string naming an unknown variable fails here
instead of on the KVM host. Nested KVM is answered as present, so run() runs.

usage: nixos-test-dry-run.py NAME < script.py
"""
import sys
from contextlib import contextmanager


class Machine:
    """The methods of nixos/lib/test-driver's Machine the scripts may use."""

    def __init__(self, name):
        self.name = name
        self.commands = []

    def _run(self, command):
        if not isinstance(command, str):
            raise TypeError(f"{self.name}: a command must be a string, not {type(command).__name__}")
        self.commands.append(command)

    def succeed(self, *commands, timeout=None):
        for c in commands:
            self._run(c)
        return ""

    def fail(self, *commands, timeout=None):
        for c in commands:
            self._run(c)
        return ""

    def execute(self, command, check_return=True, check_output=True, timeout=900):
        self._run(command)
        return (0, "")

    def wait_until_succeeds(self, command, timeout=900):
        self._run(command)
        return ""

    def wait_until_fails(self, command, timeout=900):
        self._run(command)
        return ""

    def wait_for_unit(self, unit, user=None, timeout=900):
        self._run(f"wait_for_unit {unit}")

    def wait_for_open_port(self, port, addr="localhost", timeout=900):
        self._run(f"wait_for_open_port {addr}:{port}")

    def wait_for_file(self, filename, timeout=900):
        self._run(f"wait_for_file {filename}")

    def systemctl(self, q, user=None):
        self._run(f"systemctl {q}")
        return (0, "")

    def copy_from_host(self, source, target):
        self._run(f"copy_from_host {source} {target}")

    def start(self, allow_reboot=False):
        pass

    def shutdown(self):
        pass

    def log(self, msg):
        pass


@contextmanager
def subtest(name):
    yield


def main():
    name = sys.argv[1]
    script = sys.stdin.read()
    host = Machine("host")
    scope = {"__name__": "__main__", "host": host, "machines": [host], "subtest": subtest,
             "start_all": lambda: None}
    exec(compile(script, name, "exec", optimize=1), scope)
    print(f"{len(host.commands)} commands")


if __name__ == "__main__":
    main()
