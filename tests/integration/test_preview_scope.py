"""Path-based previews share one origin on the preview listener: what a program in a machine
answers must not reach past its own prefix (with real daemons)."""

from __future__ import annotations

import asyncio

import aiohttp

from controlplane.settings import Settings
from fleet.client import FleetClient
from tests.conftest import ADMIN_TOKEN
from tests.integration.test_ports import bearer, previews, serve_in_machine


async def test_a_program_cannot_widen_its_service_workers_scope_to_the_console(
    stack: FleetClient, settings: Settings
) -> None:
    """``Service-Worker-Allowed: /`` on a preview's script would let a tenant's page install a
    service worker over every path of the origin (every other tenant's previews)."""
    m = await serve_in_machine(stack, "scoped")
    page = f"{previews(settings)}/machines/{m.id}/ports/{m.http}/"
    async with (
        aiohttp.ClientSession() as session,
        session.get(page + "sw.js", headers=bearer(ADMIN_TOKEN)) as r,
    ):
        assert r.status == 200
        assert "addEventListener" in await r.text()  # the program's script itself
        assert "Service-Worker-Allowed" not in r.headers
        assert "Clear-Site-Data" not in r.headers  # nor wipe the other previews' storage
        assert r.headers["Content-Type"].startswith("text/javascript")


async def test_dot_segments_never_take_a_tokenless_request_past_the_preview_route(
    stack: FleetClient, settings: Settings
) -> None:
    """The preview routes authenticate themselves, the files routes through the middleware:
    a path that names a preview and, after its dot segments, a file must not get either
    route without its token (a 500 here would be the files route without a caller)."""
    mid = "m-0123456789abcdef"
    at = f"/machines/{mid}"
    paths = [f"{at}/ports/80/../../files/x", f"{at}/ports/80/%2E%2E/%2E%2E/files/x",
             f"{at}/files/../ports/80/", f"{at}/ports/80/..%2F..%2Ffiles/x"]  # fmt: skip
    for port, path in ((p, path) for p in (settings.port, settings.preview_port) for path in paths):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        answer = await asyncio.wait_for(reader.read(), 10)
        writer.close()
        assert answer.split(b" ", 2)[1] in (b"400", b"401", b"404"), (port, path, answer[:300])
