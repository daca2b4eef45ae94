"""`fleet up`'s preview listener: a port of its own, never the console's; each gateway replica
of `--ha` has one of its own. And the machines `fleet up` keeps warm by default."""

from __future__ import annotations

import socket
from contextlib import ExitStack
from pathlib import Path

import pytest

from controlplane.settings import Settings
from fleet.up import UpOptions
from fleet.up.embedded import PortHold, held_ports
from fleet.up.ha import service_plan
from fleet.up.stack import (
    SERVICES,
    _banner,
    banner_ports,
    default_warm_pool,
    gvisor_refusal,
    listeners_refusal,
    up,
)


def test_each_gateway_replica_listens_for_previews_on_a_port_of_its_own(tmp_path: Path) -> None:
    opts = UpOptions(data_dir=tmp_path, ha=True, port=8080, preview_port=8081)
    with ExitStack() as stack:
        plan = service_plan(SERVICES, opts, hold=held_ports(stack))
        gateways = [env for _, module, env in plan if module == "gateway"]
        assert gateways[0] == {"FLEET_PORT": "8080"}  # the settings' preview port: 8081
        ports = {int(gateways[1]["FLEET_PORT"]), int(gateways[1]["FLEET_PREVIEW_PORT"])}
        assert len(ports) == 2
        assert not ports & {8080, 8081}
        for port in ports:  # held for the replica: nothing else binds them, the replica does
            with socket.socket() as other, pytest.raises(OSError, match="in use"):
                other.bind(("127.0.0.1", port))
            socket.create_server(("127.0.0.1", port)).close()


def test_previews_on_the_consoles_port_are_refused_before_anything_starts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert up(UpOptions(data_dir=tmp_path / "data", port=9123, preview_port=9123)) == 2
    assert "--preview-port 9123 is --port's" in capsys.readouterr().err
    assert not (tmp_path / "data").exists()


def test_a_listener_port_another_program_holds_is_named(tmp_path: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as held, PortHold() as console:
        port = held.getsockname()[1]
        refusal = listeners_refusal(UpOptions(data_dir=tmp_path, port=console.port,
                                              preview_port=port))  # fmt: skip
        assert refusal is not None
        assert refusal.startswith(f"--preview-port {port} on 127.0.0.1")
        options = UpOptions(data_dir=tmp_path, port=console.port, preview_port=0)
        assert listeners_refusal(options) is None


@pytest.mark.parametrize("origin", ["", "https://{machine}-{port}.preview.example.com"])
def test_the_banner_names_the_ports_a_client_reads_back(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], origin: str
) -> None:
    """What `fleet up --port 0` prints is where a client (a test, a benchmark) learns its
    ports: the gateway's URL and the preview listener's port, whatever the preview origin."""
    settings = Settings(nats_url="nats://127.0.0.1:4222", redis_url="redis://127.0.0.1:6379/0",
                        admin_token="t", preview_port=40001, preview_origin=origin)  # fmt: skip
    _banner(["http://127.0.0.1:40000"], settings, tmp_path, UpOptions(data_dir=tmp_path), None, {})
    assert banner_ports(capsys.readouterr().out) == ("http://127.0.0.1:40000", 40001)
    with pytest.raises(ValueError, match="no gateway or previews"):
        banner_ports("fleet up: refusing to start")


def test_the_default_pool_holds_a_gvisor_machine_for_e2bs_sandboxes_where_runsc_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runs = gvisor_refusal("local") is None  # this host's runsc, as fleet up finds it
    opts = UpOptions(data_dir=tmp_path)
    assert default_warm_pool(opts) == ("local=2,local:gvisor=1" if runs else "local=2")
    monkeypatch.setenv("FLEET_E2B_RUNTIME", "namespaces")
    assert default_warm_pool(opts) == "local=2"
    monkeypatch.delenv("FLEET_E2B_RUNTIME")
    assert default_warm_pool(UpOptions(data_dir=tmp_path, runtime="gvisor")) == "local=2"
    assert default_warm_pool(UpOptions(data_dir=tmp_path, sandbox=False)) == ""
    assert default_warm_pool(UpOptions(data_dir=tmp_path, provider="docker")) == "docker=1"
