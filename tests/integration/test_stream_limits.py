"""The event stream's limits: no publisher can fill it, and an older stream without
them is brought up to date."""

from __future__ import annotations

from pathlib import Path

import msgspec
import nats
import nats.js.errors
import pytest

from contracts.bus import subjects
from controlplane.bus import Bus, put_stream, stream_config
from controlplane.settings import Settings
from fleet.up import NatsServer

SUBJECT = subjects.event(subjects.EventKind.DAEMON_STATUS_REPORTED, "m-00000000000000f1")


async def stored_on(bus: Bus, subject: str) -> int:
    info = await bus.js.stream_info(subjects.STREAM_NAME, subjects_filter=subject)
    return (info.state.subjects or {}).get(subject, 0)


async def test_the_stream_has_the_configured_limits(bus: Bus, settings: Settings) -> None:
    config = (await bus.js.stream_info(subjects.STREAM_NAME)).config
    assert config.max_age == settings.stream_max_age_s == 30 * 24 * 3600
    assert config.max_bytes == settings.stream_max_bytes > 0
    assert config.max_msg_size == settings.stream_max_msg_size > 0
    assert config.max_msgs_per_subject == settings.stream_max_msgs_per_subject > 0


async def test_a_flood_on_one_subject_keeps_only_the_newest_and_big_events_are_refused(
    settings: Settings, nats_server: object
) -> None:
    tight = msgspec.structs.replace(
        settings, stream_max_msgs_per_subject=10, stream_max_msg_size=4096
    )
    async with Bus(tight, name="test") as bus:
        for n in range(300):  # the flood, scaled down
            await bus.js.publish(SUBJECT, b'{"n":%d}' % n)
        assert await stored_on(bus, SUBJECT) == 10
        last = await bus.js.get_last_msg(subjects.STREAM_NAME, SUBJECT)
        assert last.data == b'{"n":299}'  # the oldest went first
        with pytest.raises(nats.js.errors.APIError, match=r"(?i)message size exceeds maximum"):
            await bus.js.publish(SUBJECT, b"x" * 4097)
        assert await stored_on(bus, SUBJECT) == 10


async def test_an_existing_stream_without_limits_gets_them(
    settings: Settings, nats_server: object
) -> None:
    old = stream_config(settings)
    old.max_bytes = old.max_msg_size = old.max_msgs_per_subject = -1  # as fleetd made it before
    async with Bus(settings, name="old") as bus:
        await bus.js.delete_stream(subjects.STREAM_NAME)
        await bus.js.add_stream(old)
        assert (await bus.js.stream_info(subjects.STREAM_NAME)).config.max_msg_size in (-1, None)
    async with Bus(settings, name="new") as bus:
        config = (await bus.js.stream_info(subjects.STREAM_NAME)).config
        assert config.max_msg_size == settings.stream_max_msg_size
        assert config.max_msgs_per_subject == settings.stream_max_msgs_per_subject


class _SmallStore(NatsServer):
    """A nats-server whose JetStream store has room for ``store_bytes``."""

    def __init__(self, data_dir: Path, store_bytes: int) -> None:
        super().__init__(data_dir)
        self.store_bytes = store_bytes

    def config(self) -> str:
        return (
            super()
            .config()
            .replace("jetstream { ", f"jetstream {{ max_file_store: {self.store_bytes}, ")
        )


async def test_a_stream_is_put_again_on_a_store_with_room_for_it_once(
    tmp_path: Path, settings: Settings
) -> None:
    """Each service puts the stream at its start: the second put (a restart) failed with
    10047 insufficient storage where the store had room for the stream once but not twice."""
    config = stream_config(settings)
    with _SmallStore(tmp_path / "nats", store_bytes=settings.stream_max_bytes * 3 // 2) as server:
        nc = await nats.connect(server.url)
        try:
            js = nc.jetstream()
            for _ in range(3):
                await put_stream(js, config)
            assert (await js.stream_info(subjects.STREAM_NAME)).config.max_bytes == (
                settings.stream_max_bytes
            )
        finally:
            await nc.close()


async def test_a_stream_the_store_cannot_hold_is_refused_by_its_code(
    tmp_path: Path, settings: Settings
) -> None:
    with _SmallStore(tmp_path / "nats", store_bytes=settings.stream_max_bytes // 2) as server:
        nc = await nats.connect(server.url)
        try:
            with pytest.raises(nats.js.errors.APIError) as refused:
                await put_stream(nc.jetstream(), stream_config(settings))
            assert refused.value.err_code == 10047
        finally:
            await nc.close()
