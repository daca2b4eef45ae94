"""The CLI shows a path of a machine's home as the machine's user writes it, never where the
home lies on the host (a local machine's home is a directory of the host's data dir)."""

from __future__ import annotations

import pytest

from fleet.cli.render import machine_path

HOST_HOME = "/srv/fleetd/.fleet-data/pool/local/slot-1/home"


@pytest.mark.parametrize(
    ("given", "shown"),
    [
        ("notes.txt", "~/notes.txt"),
        ("~/notes.txt", "~/notes.txt"),
        ("in/./a//b.txt", "~/in/a/b.txt"),
        ("in/x/../b.txt", "~/in/b.txt"),
        ("~", "~"),
        (".", "~"),
    ],
)
def test_a_path_given_in_the_home_is_shown_from_it(given: str, shown: str) -> None:
    rel = shown[2:] if shown != "~" else ""
    resolved = f"{HOST_HOME}/{rel}".rstrip("/")
    assert machine_path(resolved, given) == shown


def test_an_absolute_path_is_the_machines_own() -> None:
    assert machine_path("/home/fleet/notes.txt", "/home/fleet/notes.txt") == "/home/fleet/notes.txt"


def test_a_resolution_that_does_not_end_with_the_path_is_shown_as_resolved() -> None:
    assert machine_path("/home/fleet/other", "notes.txt") == "/home/fleet/other"
