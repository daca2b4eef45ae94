"""The attack suite of test_isolation.py, run again on machines claimed from the warm pool of
each provider (``local``, ``docker``): a pooled machine, once claimed, is as isolated as a
cold one.

One stack per provider (its pool is the provider's), shared by the module's tests as
test_isolation.py shares its own: a pair of pooled machines for the tests that leave it as they
found it, a pair of the test's own for one that kills A's daemon or archives A."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import msgspec
import pytest
import pytest_asyncio

from controlplane.settings import Settings
from fleet.client import FleetClient
from providers.docker import LABEL_POOL
from tests.attack_stack import attack_settings, attack_stack
from tests.docker_env import docker_image, inspect, remove_containers
from tests.gitserver import GitHttpServer
from tests.integration import test_isolation as attacks
from tests.integration.test_isolation import (  # the same attacks
    PROVIDERS,
    Pair,
    git_http,
    make_pair,
    test_a_machine_runs_as_a_uid_of_its_own,
    test_data_dir_secrets_are_out_of_reach,
    test_other_daemons_environments_are_out_of_reach,
    test_other_machines_home_and_env_are_out_of_reach,
    test_own_daemons_token_is_out_of_reach,
    test_own_work_still_works,
    test_setsid_does_not_outlive_an_exec_timeout_nor_archive,
    test_write_file_cannot_leave_the_machine,
    with_own_a,
)
from tests.integration.test_warm_pool import slot_of, slots_up
from tests.waiters import wait_until

__all__ = [  # re-exported: pytest collects the attacks and the fixtures here too
    "docker_image",
    "git_http",
    "remove_containers",
    "test_a_machine_runs_as_a_uid_of_its_own",
    "test_data_dir_secrets_are_out_of_reach",
    "test_other_daemons_environments_are_out_of_reach",
    "test_other_machines_home_and_env_are_out_of_reach",
    "test_own_daemons_token_is_out_of_reach",
    "test_own_work_still_works",
    "test_setsid_does_not_outlive_an_exec_timeout_nor_archive",
    "test_write_file_cannot_leave_the_machine",
]
pytestmark = [
    pytest.mark.usefixtures("remove_containers"),
    pytest.mark.asyncio(loop_scope="module"),
]
#: Machines each provider's pool keeps waiting: a pair's worth.
POOL = 2


@pytest.fixture(scope="module", params=PROVIDERS)
def provider(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="module")
def settings(
    tmp_path_factory: pytest.TempPathFactory, docker_image: tuple[str, str], provider: str
) -> Iterator[Settings]:
    """The provider's stack's (tests/attack_stack.py), with a warm pool of that provider: one
    per provider, for every test of it here."""
    tmp = tmp_path_factory.mktemp(f"pool-isolation-{provider}")
    with attack_settings(tmp, docker_image[0]) as made:
        yield msgspec.structs.replace(
            made, warm_pool=f"{provider}={POOL}", warm_pool_min_available_mb=0
        )


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def stack(settings: Settings) -> AsyncIterator[FleetClient]:
    """The provider's stack: no test here stops it, restarts a service or changes its
    settings."""
    async with attack_stack(settings) as client:
        yield client


async def pooled_pair(
    provider: str, stack: FleetClient, settings: Settings, git_http: GitHttpServer
) -> Pair:
    """A pair made once the pool is full, each machine claimed from it."""

    await wait_until(lambda: pool_up(provider, settings, POOL), timeout=60, every=0.1)
    made = await make_pair(provider, stack, settings, git_http)
    for mid in (made.a, made.b):  # both came from the pool
        await assert_pooled(provider, settings, mid)
    return made


async def pool_up(provider: str, settings: Settings, machines: int) -> bool:
    """The provider's pool has ``machines`` waiting to be claimed."""
    return len(await slots_up(settings, provider)) >= machines


async def assert_pooled(provider: str, settings: Settings, mid: str) -> None:
    """The machine was claimed from the pool."""
    if provider == "docker":
        assert (await inspect(mid))["Config"]["Labels"].get(LABEL_POOL), mid
    else:
        assert slot_of(settings, mid), mid


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def pair(
    provider: str, stack: FleetClient, settings: Settings, git_http: GitHttpServer
) -> Pair:
    """Pooled machines A and B, shared as test_isolation.py's `pair` is."""
    return await pooled_pair(provider, stack, settings, git_http)


@pytest_asyncio.fixture(loop_scope="module")
async def own_pair(
    pair: Pair, stack: FleetClient, settings: Settings, git_http: GitHttpServer
) -> Pair:
    """`pair` with a pooled A of the test's own, for a test that kills A's daemon or archives
    A (B, which it does not touch, is the shared pair's)."""
    await wait_until(lambda: pool_up(pair.provider, settings, 1), timeout=60, every=0.1)
    made = await with_own_a(pair, stack, settings, git_http)
    await assert_pooled(pair.provider, settings, made.a)
    return made


# A pooled container's reach: test_isolation's.
@pytest.mark.parametrize("provider", ["local"], scope="module")
async def test_valkey_answers_nothing_without_credentials(
    stack: FleetClient, settings: Settings, pair: Pair
) -> None:
    await attacks.test_valkey_answers_nothing_without_credentials(stack, settings, pair)
