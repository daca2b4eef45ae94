"""A consumer that takes only while it has room: the capacity gate of a host's provisioner
on ``machine.created`` (docs/hosts.md).

Placement is a pull: each host's provisioner fetches from the one shared durable consumer,
asking for no more events than it has room for; a full host does not fetch at all, so
JetStream hands the event to a host that does. Nothing else decides where a machine goes.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import structlog
from nats.aio.msg import Msg

log = structlog.get_logger(__name__)

#: How many more events the consumer may take, given the machine ids of the events it holds
#: (fetched, not yet acked); None: no limit.
Room = Callable[[frozenset[str]], Awaitable[int | None]]

#: A full consumer looks again this often (room frees when machines of the host end, which
#: this process may not see), or as soon as one of its own handlers finishes.
ROOM_POLL_S = 0.5


class RoomGate:
    def __init__(self, room: Room, durable: str) -> None:
        self._room = room
        self._durable = durable
        self._full = False

    async def batch(self, free: int, held: frozenset[str]) -> int:
        """How many events to fetch now: ``free`` handler slots, at most the room left."""
        try:
            room = await self._room(held)
        except Exception as exc:  # noqa: BLE001 - task boundary: unknown room is no room
            log.warning("consumer.room_failed", durable=self._durable, error=repr(exc))
            return 0
        got = free if room is None else max(0, min(free, room))
        if (got == 0) != self._full:
            self._full = got == 0
            log.info("consumer.full" if self._full else "consumer.has_room",
                     durable=self._durable, room=room)  # fmt: skip
        return got


async def give_back(msgs: list[Msg], keep: int, deferrals: dict[int, int]) -> list[Msg]:
    """The first ``keep`` of ``msgs``; the others go back at once, for another puller (a room
    that shrank while the fetch waited: a drain, another replica's take). Counted in
    ``deferrals`` (stream sequence -> count), so that they are not failed attempts."""
    for msg in msgs[keep:]:
        await msg.nak()
        seq = msg.metadata.sequence.stream
        deferrals[seq] = deferrals.get(seq, 0) + 1
    return msgs[:keep]
