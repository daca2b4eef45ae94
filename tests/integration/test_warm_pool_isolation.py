"""The attack suite of test_isolation.py, run again on machines claimed from the warm pool of
each provider (``local``, ``docker``): a pooled machine, once claimed, is as isolated as a
cold one."""

from __future__ import annotations

import msgspec
import pytest

from fleet.client import FleetClient
from providers.docker_names import LABEL_POOL
from services.common.settings import Settings
from tests.docker_env import docker_gateway, docker_image, inspect, nats_server, remove_containers
from tests.gitserver import GitHttpServer
from tests.integration import test_isolation as attacks
from tests.integration.test_isolation import (  # the same attacks
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
)
from tests.integration.test_warm_pool import docker_up_slots, slot_of, up_slots
from tests.provider_param import provider
from tests.waiters import wait_until

__all__ = [  # re-exported: pytest collects the attacks and the fixtures here too
    "docker_gateway",
    "docker_image",
    "git_http",
    "nats_server",
    "provider",
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
pytestmark = pytest.mark.usefixtures("remove_containers")


@pytest.fixture
def stack_settings(settings: Settings, git_http: GitHttpServer, provider: str) -> Settings:
    # git_http first: it makes repo.git, a FLEET_SANDBOX_SHARE path, and a pooled local
    # machine started before a shared path exists is (rightly) not claimed.
    return msgspec.structs.replace(
        settings, warm_pool=f"{provider}=2", warm_pool_min_available_mb=0
    )


@pytest.fixture
async def pair(
    stack: FleetClient, settings: Settings, git_http: GitHttpServer, provider: str
) -> Pair:
    async def full() -> bool:
        if provider == "docker":
            return len(await docker_up_slots(settings)) == 2
        return len(up_slots(settings)) == 2

    await wait_until(full, timeout=60, every=0.1)
    made = await make_pair(provider, stack, settings, git_http)
    for mid in (made.a, made.b):  # both came from the pool
        if provider == "docker":
            assert (await inspect(mid))["Config"]["Labels"].get(LABEL_POOL), mid
        else:
            assert slot_of(settings, mid), mid
    return made


@pytest.mark.parametrize("provider", ["local"])  # a pooled container's reach: test_isolation's
async def test_valkey_answers_nothing_without_credentials(
    stack: FleetClient, settings: Settings, pair: Pair
) -> None:
    await attacks.test_valkey_answers_nothing_without_credentials(stack, settings, pair)
