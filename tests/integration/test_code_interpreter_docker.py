"""The code interpreter on docker machines (docs/code-interpreter.md), with real kernels in a
real container of the platform's machine image: the kernels' runtime comes with the daemon's
(nothing installed by the machine's user), state carries across calls, bash. The interpreter's
own behaviours: tests/integration/test_code_interpreter.py."""

from __future__ import annotations

import pytest

from fleet.client import FleetClient
from tests.docker_env import docker_gateway, docker_image, nats_server, remove_containers
from tests.integration.test_docker import ready_machine

__all__ = ["docker_gateway", "docker_image", "nats_server", "remove_containers"]
pytestmark = pytest.mark.usefixtures("remove_containers")


@pytest.mark.timeout(600)
async def test_state_carries_across_calls_in_a_docker_machine(stack: FleetClient) -> None:
    mid = await ready_machine(stack, "code-docker")
    listed = await stack.machines_code_list_contexts(mid)
    assert listed.languages == ["bash", "python"]
    first = await stack.machines_code_run(machine_id=mid, code="x = 41")
    assert (first.results, first.error) == ([], None)
    second = await stack.machines_code_run(machine_id=mid, code="x + 1")
    assert second.error is None, second.error
    assert [r["text/plain"] for r in second.results if r.get("isMain")] == ["42"]
    bash = await stack.machines_code_run(machine_id=mid, code="echo hi", language="bash")
    assert ("".join(bash.stdout), bash.error) == ("hi\n", None)
