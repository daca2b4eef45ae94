"""The desktop on docker machines, with the programs the machine image installs (Xvfb, a
window manager, xdotool, Chromium, x11vnc, websockify and noVNC): the scenario of
tests/desktop_checks.py, a page served in the machine opened in its browser, a button clicked
and a field typed into, both seen in the next screenshot's pixels, and the live view's ports
listening."""

from __future__ import annotations

import pytest

from contracts.daemon import desktop as dd
from fleet.client import FleetClient
from tests.desktop_checks import clicked_and_typed, green_page
from tests.docker_env import docker_gateway, docker_image, nats_server, remove_containers
from tests.integration.test_docker import ready_machine

__all__ = ["docker_gateway", "docker_image", "nats_server", "remove_containers"]
pytestmark = pytest.mark.usefixtures("remove_containers")


@pytest.mark.timeout(600)
async def test_a_page_clicked_and_typed_into_shows_both_in_a_docker_machine(
    stack: FleetClient,
) -> None:
    mid = await ready_machine(stack, "desktop-docker")
    after, _ = await clicked_and_typed(stack, mid, "docker 1")
    assert green_page(after)
    info = await stack.machines_desktop_get(mid)
    assert (info.browser, info.view_port, info.view_only_port) == (
        True, dd.VIEW_PORT, dd.VIEW_ONLY_PORT)  # fmt: skip
    listening = {p.port for p in (await stack.machine_ports(mid)).ports}
    assert {dd.VIEW_PORT, dd.VIEW_ONLY_PORT} <= listening
