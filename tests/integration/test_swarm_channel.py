"""The swarm provider's kept-open control connection, against a hostile or dying host.

The host here is a real Unix socket server scripted per test (slow, silent, chatty, closing):
answers must reach the request that asked, never the next one, and a broken connection must
fail every start in flight rather than leave one waiting.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from contracts.errors import ProviderError
from providers.swarm_channel import HostChannel, HostGone

Answer = Callable[[dict[str, object], asyncio.StreamWriter], Awaitable[None]]


class ScriptedHost:
    """Reads request lines; ``answer`` decides what (if anything) goes back."""

    def __init__(self, answer: Answer) -> None:
        self.answer = answer
        self.connections = 0
        self.requests: list[dict[str, object]] = []
        self.writers: list[asyncio.StreamWriter] = []

    async def on_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.writers.append(writer)
        with contextlib.suppress(ConnectionError):
            while line := await reader.readline():
                req = json.loads(line)
                self.requests.append(req)
                await self.answer(req, writer)
        writer.close()

    async def close(self) -> None:
        for writer in self.writers:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()


@contextlib.asynccontextmanager
async def serving(answer: Answer) -> AsyncIterator[tuple[ScriptedHost, HostChannel]]:
    host = ScriptedHost(answer)
    with tempfile.TemporaryDirectory(prefix="chan") as d:
        sock = Path(d) / "control.sock"
        server = await asyncio.start_unix_server(host.on_client, path=str(sock))
        channel = HostChannel(sock, "host-0")
        try:
            yield host, channel
        finally:
            await channel.aclose()
            server.close()
            await host.close()
            await server.wait_closed()


async def echo(req: dict[str, object], writer: asyncio.StreamWriter) -> None:
    writer.write(json.dumps({"ok": True, "externalId": req["machineId"]}).encode() + b"\n")


async def test_starts_in_flight_share_one_connection_and_each_gets_its_own_answer() -> None:
    async with serving(echo) as (host, channel):
        ids = [f"m{i}" for i in range(50)]
        replies = await asyncio.gather(
            *(channel.request({"op": "start", "machineId": m}) for m in ids)
        )
        assert [r["externalId"] for r in replies] == ids
        assert host.connections == 1


async def test_a_late_answer_never_reaches_the_next_request() -> None:
    release = asyncio.Event()

    async def slow_first(req: dict[str, object], writer: asyncio.StreamWriter) -> None:
        if req["machineId"] == "slow":
            await release.wait()
        await echo(req, writer)

    async with serving(slow_first) as (_, channel):
        with pytest.raises(ProviderError, match=r"did not answer in 0\.2s"):
            await channel.request({"op": "start", "machineId": "slow"}, timeout_s=0.2)
        nxt = asyncio.create_task(channel.request({"op": "start", "machineId": "next"}))
        release.set()  # the slow answer arrives now, before the next one
        assert (await nxt)["externalId"] == "next"


async def test_a_host_that_closes_fails_every_start_in_flight_then_is_reopened() -> None:
    async def close_on_third(req: dict[str, object], writer: asyncio.StreamWriter) -> None:
        if req["machineId"] == "m2":
            writer.close()  # dies with m0..m1 unanswered too
            return
        if req["machineId"] == "after":
            await echo(req, writer)

    async with serving(close_on_third) as (host, channel):
        results = await asyncio.gather(
            *(channel.request({"op": "start", "machineId": f"m{i}"}) for i in range(3)),
            return_exceptions=True,
        )
        assert all(isinstance(r, HostGone) for r in results), results
        assert (await channel.request({"op": "start", "machineId": "after"}))["externalId"] == (
            "after"
        )
        assert host.connections == 2


async def test_an_answer_nobody_asked_for_breaks_the_channel_not_the_caller() -> None:
    async def chatty(req: dict[str, object], writer: asyncio.StreamWriter) -> None:
        answer = json.dumps({"ok": True, "externalId": req["machineId"]}).encode() + b"\n"
        writer.write(answer + b'{"ok": true, "externalId": "forged"}\n')

    async with serving(chatty) as (_, channel):
        first = await channel.request({"op": "start", "machineId": "a"})
        assert first["externalId"] == "a"
        # The unasked line closed the channel: the next start opens a new connection and
        # gets its own answer, never "forged".
        got: list[str] = []
        for _ in range(3):
            with contextlib.suppress(HostGone):
                got.append((await channel.request({"op": "start", "machineId": "b"}))["externalId"])
        assert got
        assert set(got) == {"b"}


async def test_a_refused_start_is_a_provider_error_naming_the_host() -> None:
    async def refuse(req: dict[str, object], writer: asyncio.StreamWriter) -> None:
        writer.write(b'{"ok": false, "error": "not a machine id"}\n')

    async with serving(refuse) as (_, channel):
        with pytest.raises(ProviderError, match="swarm host host-0: not a machine id"):
            await channel.request({"op": "start", "machineId": "x"})


async def test_no_host_listening_is_host_gone() -> None:
    channel = HostChannel(Path(tempfile.gettempdir()) / "fleet-no-such-host.sock", "host-9")
    with pytest.raises(HostGone, match="host-9 is not running"):
        await channel.request({"op": "list"})
    await channel.aclose()
