"""How many streams (the byte streams: tunnels, preview requests, terminal attaches, file
transfers; and the streamed answers of ``POST /rpc/stream`` and codemode's run stream) one token
may hold open at once through this gateway process.

Each open stream pins up to a window of the machine's bytes in the gateway (2 MiB for a
tunnel) while its client does not read, and the daemon's own limit is per machine: without a
bound per caller, one token with a few machines could make the gateway hold gigabytes. Past
the bound, the next stream is refused with ``TooManyStreams`` before the daemon is asked.

``hold`` puts a stream under the revocation check (services.gateway.streams.revocation): a revoked
token's tunnels, terminals and transfers are aborted, and so are those of a caller who no
longer holds what opening them took (removed from the instance, demoted), not left running for
as long as their client keeps them open.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping
from functools import partial

import structlog

from base.byte_stream import ByteStream
from contracts.errors import TooManyStreams
from services.gateway.auth import Caller, Reach

log = structlog.get_logger(__name__)

Release = Callable[[object], None]


class ByteStreamSlots:
    def __init__(self, per_token: int) -> None:
        #: 0: no limit.
        self.per_token = per_token
        self._open: Counter[str] = Counter()
        #: Each token's open streams, with what each needs of it to stay open.
        self._streams: dict[str, dict[ByteStream, Reach]] = {}
        #: The user behind each token that holds streams (what the audit log names).
        self._users: dict[str, str | None] = {}

    def take(self, caller: Caller, *, counted: bool = True) -> Release:
        """One more stream for ``caller``, or ``TooManyStreams``. The answer gives it back
        (safe to call twice; it takes the closed stream, so it can be a stream's on_close).
        ``counted`` False: the stream is one of a slot the caller holds already (a streamed
        answer of ``POST /rpc/stream``): none is taken, and the answer only lets it go."""
        key = caller.token_id
        if not counted:
            return partial(self._forget, key)
        if self.per_token and self._open[key] >= self.per_token:
            raise TooManyStreams(
                f"this token already has {self.per_token} streams open at once (tunnels, "
                "previews, terminals, file transfers, streamed commands and runs): close one "
                "first",
                data={"limit": self.per_token},
            )
        self._open[key] += 1
        done = False

        def release(stream: object = None) -> None:
            nonlocal done
            self._forget(key, stream)
            if done:
                return
            done = True
            self._open[key] -= 1
            if self._open[key] <= 0:
                del self._open[key]

        return release

    def _forget(self, key: str, stream: object = None) -> None:
        """``stream`` (once closed) is no longer held for the revocation check."""
        if isinstance(stream, ByteStream):
            self._streams.get(key, {}).pop(stream, None)
            if not self._streams.get(key, True):
                del self._streams[key]
                self._users.pop(key, None)

    def hold(self, caller: Caller, stream: ByteStream, reach: Reach) -> None:
        """Watch ``stream`` (opened with a slot ``take`` gave, released by its on_close) for
        its token's revocation, and for its caller losing ``reach``."""
        if not stream.closed:
            self._streams.setdefault(caller.token_id, {})[stream] = reach
            self._users[caller.token_id] = caller.user_id

    def user_of(self, token_id: str) -> str | None:
        return self._users.get(token_id)

    def token_ids(self) -> set[str]:
        """The tokens behind open streams."""
        return {token_id for token_id, streams in self._streams.items() if streams}

    async def abort_unreached(self, current: Mapping[str, Caller | None]) -> dict[str, int]:
        """Abort the streams whose caller, as ``current`` has it now (by token id; None: it no
        longer stands), no longer holds their reach; how many each token held. One already
        aborted or closed, still held until its relay lets go, is not counted again."""
        cut: dict[str, int] = {}
        for token_id, now in current.items():
            held = self._streams.get(token_id, {})
            streams = [s for s, reach in held.items()
                       if s.error is None and not s.closed and not reach.allows(now)]  # fmt: skip
            if streams:
                log.info("gateway.streams_revoked", token_id=token_id, streams=len(streams),
                         revoked=now is None)  # fmt: skip
                cut[token_id] = len(streams)
            why = ("the token was revoked" if now is None
                   else "the caller may no longer reach this machine")  # fmt: skip
            for stream in streams:
                await stream.abort(why)
        return cut
