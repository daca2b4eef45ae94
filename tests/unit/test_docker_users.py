"""A docker machine's own uid and its name (providers/docker/users.py): drawn where no volume of
the engine holds it, and the image's user renumbered to it (or ``fleet`` added). On a real
engine: tests/integration/test_docker_user_limits.py."""

from __future__ import annotations

import pytest

from contracts.errors import ProviderError
from providers.docker.users import random_free, renumbered, user_files

PASSWD = "root:x:0:0:root:/root:/bin/sh\ndev:x:1234:2345::/home/dev:/bin/bash\n"
GROUP = "root:x:0:\ndevs:x:2345:\n"


def test_the_images_user_and_group_are_renumbered_to_the_machines_uid() -> None:
    assert renumbered(PASSWD, "passwd", 1234, 300007) == (
        "root:x:0:0:root:/root:/bin/sh\ndev:x:300007:300007::/home/dev:/bin/bash\n"
    )
    assert renumbered(GROUP, "group", 2345, 300007) == "root:x:0:\ndevs:x:300007:\n"


def test_an_image_without_the_user_gets_fleet_and_a_renumbered_one_is_kept() -> None:
    added = renumbered(PASSWD, "passwd", 1000, 300007)
    assert added.splitlines()[-1] == "fleet:x:300007:300007::/home/fleet:/bin/sh"
    assert renumbered(GROUP, "group", 1000, 300007).splitlines()[-1] == "fleet:x:300007:"
    # A fork's layer: its source's passwd, already the uid's (the copy keeps the uid).
    once = renumbered(PASSWD, "passwd", 1234, 300007)
    assert renumbered(once, "passwd", 1234, 300007) == once


def test_the_machine_images_user_is_named_fleet() -> None:
    files = user_files(300007)
    assert "fleet:x:300007:300007::/home/fleet:/bin/sh" in files["passwd"].splitlines()
    assert "fleet:x:300007:" in files["group"].splitlines()


def test_a_uid_is_drawn_among_those_no_volume_holds() -> None:
    uids = (300000, 300009)
    taken = {300000, 300001, 300002, 300004, 300005, 300006, 300007, 300008, 300009}
    assert {random_free(uids, taken) for _ in range(20)} == {300003}
    with pytest.raises(ProviderError, match="every uid of FLEET_DOCKER_UIDS"):
        random_free(uids, taken | {300003})
