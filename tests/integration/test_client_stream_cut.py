"""FleetClient.events over a real HTTP connection whose /events response is cut mid-stream (a
gateway whose bus fails over, or a gateway dying behind a balancer): the client resumes after
the last event it read, and gives up with a clear error after too many cuts in a row.

The server here stands in for the gateway's HTTP side only (no NATS, Redis or daemon is
involved in what is tested); the whole failover is tests/e2e/test_chaos_ha.py."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from contracts.bus.events import MachineCreated, MachineProvisioned, encode_event
from contracts.errors import FleetError
from contracts.ids import new_event_id
from fleet.client import FleetClient
from tests.httpserve import serving

MID = "m-0123456789abcdef"


def sse(seq: int, data: bytes) -> bytes:
    return b"id: %d\ndata: %s\n\n" % (seq, data)


EVENTS = [
    encode_event(
        MachineCreated(
            event_id=new_event_id(),
            machine_id=MID,
            instance_id="i-0123456789abcdef",
            provider="local",
        )
    ),
    encode_event(
        MachineProvisioned(
            event_id=new_event_id(), machine_id=MID, provider="local", external_id="local:1"
        )
    ),
]


class CuttingEvents:
    """GET /events honouring ``since``: the first ``cuts`` responses send at most one event,
    then drop the connection mid-chunk; later ones send the rest and ``event: caught-up``."""

    def __init__(self, cuts: int) -> None:
        self.cuts = cuts
        self.sinces: list[str | None] = []

    async def handle(self, request: web.Request) -> web.StreamResponse:
        since = request.query.get("since")
        self.sinces.append(since)
        todo = [(i + 1, e) for i, e in enumerate(EVENTS) if i + 1 > int(since or 0)]
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        if len(self.sinces) <= self.cuts:
            for seq, data in todo[:1]:
                await resp.write(sse(seq, data))
            assert request.transport is not None
            request.transport.close()  # no terminating chunk: the client sees a cut payload
            return resp
        await resp.write(b"".join(sse(seq, data) for seq, data in todo))
        await resp.write(b"event: caught-up\ndata: {}\n\n")
        await resp.write_eof()
        return resp


@pytest.fixture
async def serve() -> AsyncIterator[tuple[str, CuttingEvents]]:
    events = CuttingEvents(cuts=0)
    app = web.Application()
    app.router.add_get("/events", events.handle)
    async with serving(app) as url:
        yield url, events


async def test_a_cut_stream_resumes_after_the_last_event(
    serve: tuple[str, CuttingEvents],
) -> None:
    url, events = serve
    events.cuts = 2
    async with FleetClient(url, "token") as fleet:
        got = [seq async for seq, _ in fleet.events(MID, follow=False)]
    assert got == [1, 2]  # each event once: every resume asks after the last one read
    assert events.sinces == [None, "1", "2"]


async def test_too_many_cuts_in_a_row_is_a_clear_error(serve: tuple[str, CuttingEvents]) -> None:
    url, events = serve
    events.cuts = 100
    async with FleetClient(url, "token") as fleet:
        with pytest.raises(FleetError, match="cut 7 times in a row"):
            async for _ in fleet.events(MID, follow=False):
                pass
