"""The attack suite of test_isolation.py, run again on docker machines claimed from the
docker warm pool: a pooled container, once claimed, is as isolated as a cold one."""

from __future__ import annotations

import msgspec
import pytest

from fleet.client import FleetClient
from providers.docker_names import LABEL_POOL
from services.common.settings import Settings
from tests.docker_env import docker_gateway, docker_image, inspect, nats_server, remove_containers
from tests.gitserver import GitHttpServer
from tests.integration.test_docker_warm_pool import up_slots
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
    test_setsid_does_not_outlive_an_exec_timeout,
    test_setsid_does_not_outlive_archive,
    test_write_file_cannot_follow_a_link_out,
    test_write_file_cannot_leave_the_machine,
)
from tests.waiters import wait_until

__all__ = [  # re-exported: pytest collects the attacks and the fixtures here too
    "docker_gateway",
    "docker_image",
    "git_http",
    "nats_server",
    "remove_containers",
    "test_a_machine_runs_as_a_uid_of_its_own",
    "test_data_dir_secrets_are_out_of_reach",
    "test_other_daemons_environments_are_out_of_reach",
    "test_other_machines_home_and_env_are_out_of_reach",
    "test_own_daemons_token_is_out_of_reach",
    "test_own_work_still_works",
    "test_setsid_does_not_outlive_an_exec_timeout",
    "test_setsid_does_not_outlive_archive",
    "test_write_file_cannot_follow_a_link_out",
    "test_write_file_cannot_leave_the_machine",
]
pytestmark = pytest.mark.usefixtures("remove_containers")


@pytest.fixture
def stack_settings(settings: Settings, git_http: GitHttpServer) -> Settings:
    return msgspec.structs.replace(settings, warm_pool="docker=2", warm_pool_min_available_mb=0)


@pytest.fixture
async def pair(stack: FleetClient, settings: Settings, git_http: GitHttpServer) -> Pair:
    async def full() -> bool:
        return len(await up_slots(settings)) == 2

    await wait_until(full, timeout=60, every=0.1)
    made = await make_pair("docker", stack, settings, git_http)
    for mid in (made.a, made.b):  # both came from the pool
        assert (await inspect(mid))["Config"]["Labels"].get(LABEL_POOL), mid
    return made
