"""A local machine's user namespace for its image's user (providers/sandbox/userns.py): what bwrap
is told, and the maps: root for the set-up, the image's user on the machine's own host uid, and
nothing else."""

from __future__ import annotations

import fcntl
import os
import struct
from pathlib import Path

from providers.sandbox import bwrap_argv
from providers.sandbox.userns import USERNS_FD, UserMap, owned

#: ioctl_ns(2): the uid that owns a user namespace.
NS_GET_OWNER_UID = 0xB704


def test_the_maps_give_the_user_the_machines_own_uid_and_nothing_else() -> None:
    m = UserMap(uid=1234, gid=2345, host=200007)
    assert m.maps() == ([(0, 0), (1234, 200007)], [(0, 0), (2345, 200007)])


def test_bwrap_joins_the_namespace_made_for_it(tmp_path: Path) -> None:
    """Made beforehand by a process of the machine's own uid (its owner: never root), so bwrap
    joins it rather than making one as root; the info pipe is the network's alone."""
    home = tmp_path / "data" / "machines" / "m" / "home"
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    for own_network in (True, False):
        argv = bwrap_argv(machine_id="m", home=home, data_dir=home.parents[2], command=["true"],
                          root=root, uid=200007, userns=True, own_network=own_network)  # fmt: skip
        pairs = {argv[i]: argv[i + 1] for i in range(len(argv) - 1)}
        assert "--unshare-user" not in argv
        assert pairs["--userns"] == str(USERNS_FD)
        assert argv.count("--info-fd") == (1 if own_network else 0)
    plain = bwrap_argv(machine_id="m", home=home, data_dir=home.parents[2], command=["true"],
                       root=root, uid=200007, own_network=False)  # fmt: skip
    assert "--userns" not in plain
    assert "--info-fd" not in plain


def test_the_namespace_is_its_machines_uids_not_roots() -> None:
    fd = owned(UserMap(uid=1234, gid=2345, host=200007))
    try:
        uid = struct.unpack("I", fcntl.ioctl(fd, NS_GET_OWNER_UID, b"\0" * 4))[0]
    finally:
        os.close(fd)
    assert uid == 200007
