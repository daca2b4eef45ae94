"""What a docker pool's start removes (``providers/docker/pool.py``'s ``orphaned``): with the
lifeline, an owner's liveness is its containers' own state, never a pid looked up on this
host. Only unclaimed pooled containers that are dead for sure go; a running one has a live
owner (on whatever host), a claimed one is a machine's. The real engine's cases are in
tests/integration/test_docker_pool_lifeline.py."""

from __future__ import annotations

import pytest

from providers.docker.pool import STALE_CREATED_S, DockerPoolBackend, orphaned

NOW = 1_800_000_000.0
POOLED = "/fleet-pool-p0123456789abcdef"
CLAIMED = "/fleet-m-0123456789abcdef"


@pytest.mark.parametrize("state", ["exited", "dead"])
def test_an_ended_unclaimed_container_is_removed_whoever_owned_it(state: str) -> None:
    assert orphaned(POOLED, state, NOW - 1, NOW)


@pytest.mark.parametrize("state", ["running", "restarting", "paused", "removing"])
def test_a_live_one_is_left_be_its_lifeline_holds(state: str) -> None:
    assert not orphaned(POOLED, state, NOW - 10 * STALE_CREATED_S, NOW)


@pytest.mark.parametrize("state", ["exited", "created", "running"])
def test_a_claimed_one_is_a_machines(state: str) -> None:
    assert not orphaned(CLAIMED, state, NOW - 10 * STALE_CREATED_S, NOW)


def test_one_never_started_is_removed_only_long_after_its_create() -> None:
    """Its owner died between the create and the attach (milliseconds): no lifeline ever."""
    assert orphaned(POOLED, "created", NOW - STALE_CREATED_S - 1, NOW)
    assert not orphaned(POOLED, "created", NOW - 5, NOW)  # another pool's, starting now


def test_the_owner_is_opaque() -> None:
    """No pid, no start time: two pools (on one host or two) never share an id, and nothing
    about this host can be read from it."""
    owners = {DockerPoolBackend(provider=None).owner for _ in range(50)}  # type: ignore[arg-type]
    assert len(owners) == 50
    assert all("-" not in o and len(o) == 24 for o in owners)


LEGACY = "4242-987654-0a1b2c3d"  # pid-ticks-random: a pool made before the lifeline


def test_one_made_before_the_lifeline_goes_once_its_process_is_gone() -> None:
    """Nothing ends such a container by itself (it has no lifeline) and only the process that
    made it can claim it: once that process is gone from this host, nobody ever will."""
    seen: list[str] = []

    def gone(owner: str) -> bool:
        seen.append(owner)
        return False

    assert orphaned(POOLED, "running", NOW - 5, NOW, LEGACY, alive=gone)
    assert seen == [LEGACY]
    assert not orphaned(POOLED, "running", NOW - 5, NOW, LEGACY, alive=lambda _: True)
    assert not orphaned(CLAIMED, "running", NOW - 5, NOW, LEGACY, alive=gone)  # a machine's


def test_a_lifeline_owner_is_never_looked_up() -> None:
    def look_up(owner: str) -> bool:
        raise AssertionError(f"looked up {owner}")

    owner = DockerPoolBackend(provider=None).owner  # type: ignore[arg-type]
    assert not orphaned(POOLED, "running", NOW - 10 * STALE_CREATED_S, NOW, owner, look_up)
