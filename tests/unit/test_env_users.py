"""A devcontainer's remoteUser/containerUser in its image's /etc/passwd and /etc/group
(environments/users.py): names, numbers and groups resolved; root never a machine's user; the
image's files read as untrusted text (a malformed line skipped, not trusted)."""

from __future__ import annotations

import pytest

from contracts.errors import EnvironmentInvalid
from environments.users import MachineUser, resolve, wanted

PASSWD = """root:x:0:0:root:/root:/bin/bash
# a comment, then lines that are not entries
garbage
short:x:12
bad:x:notanumber:5::/:/bin/sh
dev:x:1234:2345::/home/dev:/bin/sh
dev:x:999:999::/elsewhere:/bin/sh
toor:x:0:0::/root:/bin/sh
rooty:x:1500:0::/home/rooty:/bin/sh
node:x:1000:1000::/home/node:/bin/bash
"""
GROUP = """root:x:0:
devs:x:2345:
staff:x:50:dev
bad:x:nope:
"""


def test_a_name_is_its_first_entry() -> None:
    assert resolve("dev", PASSWD, GROUP) == MachineUser(name="dev", uid=1234, gid=2345)


def test_a_number_takes_its_entry_group_or_its_own() -> None:
    assert resolve("1000", PASSWD, GROUP) == MachineUser(name="1000", uid=1000, gid=1000)
    assert resolve("4321", PASSWD, GROUP) == MachineUser(name="4321", uid=4321, gid=4321)


def test_a_group_by_name_or_number() -> None:
    assert resolve("dev:staff", PASSWD, GROUP) == MachineUser(name="dev:staff", uid=1234, gid=50)
    assert resolve("1000:77", PASSWD, GROUP).gid == 77  # type: ignore[union-attr]
    with pytest.raises(EnvironmentInvalid, match="group 'nobody'"):
        resolve("dev:nobody", PASSWD, GROUP)


@pytest.mark.parametrize("spec", ["root", "0", "toor", "root:devs", "0:0"])
def test_root_is_the_default_user(spec: str) -> None:
    assert resolve(spec, PASSWD, GROUP) is None


def test_a_primary_group_of_root_becomes_the_users_own() -> None:
    assert resolve("rooty", PASSWD, GROUP) == MachineUser(name="rooty", uid=1500, gid=1500)
    assert resolve("dev:0", PASSWD, GROUP) == MachineUser(name="dev:0", uid=1234, gid=1234)


@pytest.mark.parametrize("spec", ["ghost", "bad", "short"])
def test_a_name_the_image_does_not_list(spec: str) -> None:
    with pytest.raises(EnvironmentInvalid, match=f"{spec!r} is not in the image's /etc/passwd"):
        resolve(spec, PASSWD, GROUP)


@pytest.mark.parametrize("spec", ["../etc", "a b", "$(id)", "dev:", "-x", "9" * 20])
def test_a_spec_that_is_no_user(spec: str) -> None:
    with pytest.raises(EnvironmentInvalid):
        resolve(spec, PASSWD, GROUP)


def test_no_passwd_at_all() -> None:  # a static image: numbers only
    assert resolve("1001", "", "") == MachineUser(name="1001", uid=1001, gid=1001)
    with pytest.raises(EnvironmentInvalid):
        resolve("dev", "", "")


def test_remote_user_over_container_user() -> None:
    assert wanted("dev", "node") == "dev"
    assert wanted(None, "node") == "node"
    assert wanted(None, None) is None
    assert wanted("", None) is None
