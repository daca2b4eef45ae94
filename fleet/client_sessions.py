"""FleetClient's interactive sessions: ``sessions.*`` and the attach WebSocket (a mixin)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import aiohttp

from contracts import gateway_sessions as gs
from contracts.jsonrpc import MethodSpec, P, R, new_params
from contracts.sessions import SessionInfo

if TYPE_CHECKING:
    from collections.abc import Sequence


class SessionsClient:
    if TYPE_CHECKING:  # provided by FleetClient
        url: str

        @property
        def session(self) -> aiohttp.ClientSession: ...
        async def call(self, spec: MethodSpec[P, R], params: P, *,
                       timeout_s: float | None = None) -> R: ...  # fmt: skip
        async def websocket(self, path: str, *, heartbeat: float | None = None,
                            max_msg_size: int = ..., close_timeout_s: float = ...,
                            ) -> aiohttp.ClientWebSocketResponse: ...  # fmt: skip

    async def open_session(
        self, machine_id: str, command: Sequence[str] | None = None, *, cols: int = 80,
        rows: int = 24, cwd: str | None = None, name: str | None = None,
    ) -> gs.OpenedSession:  # fmt: skip
        params = new_params(gs.SessionsOpenParams, machine_id=machine_id, cols=cols, rows=rows,
                            command=list(command) if command else None, cwd=cwd,
                            name=name)  # fmt: skip
        return await self.call(gs.SESSIONS_OPEN, params)

    async def list_sessions(self, machine_id: str) -> list[SessionInfo]:
        params = new_params(gs.MachineSessions, machine_id=machine_id)
        return (await self.call(gs.SESSIONS_LIST, params)).sessions

    async def resize_session(self, machine_id: str, session_id: str, cols: int,
                             rows: int) -> SessionInfo:  # fmt: skip
        params = new_params(gs.SessionsResizeParams, machine_id=machine_id,
                            session_id=session_id, cols=cols, rows=rows)  # fmt: skip
        return await self.call(gs.SESSIONS_RESIZE, params)

    async def close_session(self, machine_id: str, session_id: str) -> bool:
        params = new_params(gs.MachineSessionRef, machine_id=machine_id, session_id=session_id)
        return (await self.call(gs.SESSIONS_CLOSE, params)).closed

    async def attach_session(self, machine_id: str,
                             session_id: str) -> aiohttp.ClientWebSocketResponse:  # fmt: skip
        """The session's WebSocket (binary: terminal bytes; text: JSON control). The caller
        closes it; closing it detaches, the session goes on."""
        return await self.websocket(
            gs.attach_path(machine_id, session_id), heartbeat=30.0, close_timeout_s=5.0
        )
