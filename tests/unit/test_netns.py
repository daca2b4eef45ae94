"""What pasta is told for a machine's network (providers/sandbox/netns.py), and the settings around
it."""

from __future__ import annotations

from pathlib import Path

import pytest

from controlplane.settings import Settings
from providers.sandbox import bwrap_argv
from providers.sandbox.netns import loopback_ports, pasta_argv


@pytest.mark.parametrize(
    ("url", "ports"),
    [
        ("nats://127.0.0.1:4222", [4222]),
        ("nats://u:p@localhost:5000", [5000]),
        ("nats://[::1]:4223,nats://127.0.0.2:4224", [4223, 4224]),
        ("nats://127.0.0.1", [4222]),
        ("nats://172.18.0.1:4222", []),  # reached through pasta as the host reaches it
        ("nats://a:4222,nats://127.0.0.1:4225,nats://10.0.0.5:1", [4225]),
    ],
)
def test_only_nats_ports_on_the_hosts_loopback_are_forwarded(url: str, ports: list[int]) -> None:
    assert loopback_ports(url) == ports


def test_pasta_publishes_nothing_and_forwards_only_the_given_ports() -> None:
    argv = pasta_argv([4222, 9000])
    assert "pasta" in " ".join(argv[:4])
    pairs = {argv[i]: argv[i + 1] for i in range(len(argv) - 1) if argv[i].startswith("-")}
    assert pairs["-t"] == "none"  # no port of the machine on the host
    assert pairs["-u"] == "none"
    assert pairs["-T"] == "4222,9000"  # not pasta's default (every port of the host's loopback)
    assert pairs["-U"] == "none"
    assert "--no-map-gw" in argv  # the gateway's address is not the host's loopback
    # The namespace comes on its stdin: a newer pasta closes every other descriptor it
    # inherits before it opens the namespace (Debian 13's: "Couldn't open network namespace").
    # And it stays after its stdin is gone: a pasta given a path quits when the path goes.
    assert argv[-3:] == ["--no-netns-quit", "--netns", "/proc/self/fd/0"]
    assert pasta_argv([])[argv.index("-T") + 1] == "none"


def test_the_sandbox_has_its_own_network_and_the_filter(tmp_path: Path) -> None:
    home = tmp_path / "data" / "machines" / "m" / "home"
    own = bwrap_argv(machine_id="m", home=home, data_dir=home.parents[2], command=["true"])
    host = bwrap_argv(machine_id="m", home=home, data_dir=home.parents[2], command=["true"],
                      own_network=False)  # fmt: skip
    assert {"--unshare-net", "--block-fd", "--info-fd", "--seccomp"} <= set(own)
    assert "--unshare-net" not in host
    assert "--seccomp" in host


@pytest.mark.parametrize("bad", ["x", "0", "70000", "80,-1"])
def test_bad_loopback_ports_stop_the_process_at_start(bad: str) -> None:
    with pytest.raises(ValueError, match="FLEET_SANDBOX_LOOPBACK_PORTS"):
        Settings(sandbox_loopback_ports=bad)
    assert Settings(sandbox_loopback_ports="80, 443").sandbox_forwarded == (80, 443)
