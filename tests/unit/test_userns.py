"""A local machine's user namespace for its image's user (providers/sandbox/userns.py): what bwrap
is told, and the maps: root for the set-up, the image's user on the machine's own host uid, and
nothing else."""

from __future__ import annotations

from pathlib import Path

from providers.sandbox import bwrap_argv
from providers.sandbox.netns import INFO_FD
from providers.sandbox.userns import USERNS_FD, UserMap


def test_the_maps_give_the_user_the_machines_own_uid_and_nothing_else() -> None:
    m = UserMap(uid=1234, gid=2345, host=200007)
    assert m.uid_map() == "0 0 1\n1234 200007 1\n"
    assert m.gid_map() == "0 0 1\n2345 200007 1\n"


def test_bwrap_waits_for_the_maps_and_says_its_childs_pid(tmp_path: Path) -> None:
    home = tmp_path / "data" / "machines" / "m" / "home"
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    for own_network in (True, False):
        argv = bwrap_argv(machine_id="m", home=home, data_dir=home.parents[2], command=["true"],
                          root=root, uid=200007, userns=True, own_network=own_network)  # fmt: skip
        pairs = {argv[i]: argv[i + 1] for i in range(len(argv) - 1)}
        assert "--unshare-user" in argv
        assert pairs["--userns-block-fd"] == str(USERNS_FD)
        assert argv.count("--info-fd") == 1
        assert pairs["--info-fd"] == str(INFO_FD)
    plain = bwrap_argv(machine_id="m", home=home, data_dir=home.parents[2], command=["true"],
                       root=root, uid=200007, own_network=False)  # fmt: skip
    assert "--unshare-user" not in plain
    assert "--info-fd" not in plain
