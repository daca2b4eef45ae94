"""`fleet up --hosts N`: a provisioner per host, each with its own host id, data dir and share
of the sandbox uids; the other services as without it."""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path

import pytest

from fleet.cli.entry import parse
from fleet.up import UpOptions
from fleet.up.embedded import held_ports
from fleet.up.ha import Plan, host_uids, service_plan
from fleet.up.stack import SERVICES


def plan(opts: UpOptions, uids: tuple[int, int] | None = None) -> Plan:
    with ExitStack() as stack:
        return service_plan(SERVICES, opts, uids, hold=held_ports(stack))


def provisioners(opts: UpOptions, uids: tuple[int, int] | None) -> dict[str, dict[str, str]]:
    return {name: env for name, module, env in plan(opts, uids) if module == "provisioner"}


def test_each_host_gets_a_provisioner_with_its_id_data_dir_and_uids(tmp_path: Path) -> None:
    opts = UpOptions(data_dir=tmp_path, hosts=3)
    got = provisioners(opts, (200000, 265535))
    assert got == {
        f"provisioner-host-{i}": {
            "FLEET_HOST_ID": f"host-{i}",
            "FLEET_DATA_DIR": str(tmp_path / "hosts" / f"host-{i}"),
            "FLEET_SANDBOX_UIDS": uids,
        }
        # each a third of the range's 65536 uids, rounded down: 21845
        for i, uids in ((1, "200000-221844"), (2, "221845-243689"), (3, "243690-265534"))
    }
    others = [name for name, module, _ in plan(opts) if module != "provisioner"]
    assert others == [s for s in SERVICES if s != "provisioner"]


def test_with_ha_each_host_has_two_provisioner_replicas(tmp_path: Path) -> None:
    got = provisioners(UpOptions(data_dir=tmp_path, hosts=2, ha=True), None)
    assert sorted(got) == ["provisioner-host-1-1", "provisioner-host-1-2",
                           "provisioner-host-2-1", "provisioner-host-2-2"]  # fmt: skip
    assert got["provisioner-host-2-1"]["FLEET_HOST_ID"] == "host-2"
    assert got["provisioner-host-2-1"]["FLEET_SANDBOX_UIDS"] == ""  # no uid range: none


def test_without_hosts_the_one_provisioner_keeps_the_settings_it_has(tmp_path: Path) -> None:
    assert provisioners(UpOptions(data_dir=tmp_path), (1000, 1999)) == {"provisioner": {}}


def test_host_uid_shares_do_not_overlap() -> None:
    shares = [host_uids((100, 199), i, 4) for i in range(4)]
    assert shares == ["100-124", "125-149", "150-174", "175-199"]
    with pytest.raises(ValueError, match="too few"):
        host_uids((100, 101), 0, 3)


def test_the_cli_takes_a_number_of_hosts() -> None:
    assert parse(["up", "--hosts", "3"]).hosts == 3
    assert parse(["up"]).hosts == 0
    for bad in ("0", "x", "65"):
        with pytest.raises(SystemExit):
            parse(["up", "--hosts", bad])
