"""E2B's code interpreter (a sandbox's port 49999) in fleetd's kernels (``machines.code.*``):

- ``POST /execute {code, context_id?, language?, env_vars?}``: ``machines.code.run``, its parts
  streamed as they come, a JSON object a line (``stdout``, ``stderr``, ``result``, ``error``),
  then ``number_of_executions`` and ``end_of_execution``. A client that goes away cancels the
  run (the kernel is interrupted and keeps its state).
- ``POST /contexts {language?, cwd?}``, ``GET /contexts``, ``DELETE /contexts/{id}``,
  ``POST /contexts/{id}/restart``: ``machines.code.createContext``, ``listContexts`` (the
  default contexts left out, as E2B's server leaves its own out), ``deleteContext``,
  ``restartContext``.

A result's MIME bundle becomes E2B's keys (``text/plain`` is ``text``, ``image/png`` ``png``...);
what has no key of E2B's goes in ``extra``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Final

import msgspec
from aiohttp import web

from contracts.daemon import code as dc
from contracts.errors import FleetError, InvalidParams, NotFound
from contracts.gateway.code import (
    MACHINES_CODE_CREATE_CONTEXT,
    MACHINES_CODE_DELETE_CONTEXT,
    MACHINES_CODE_LIST_CONTEXTS,
    MACHINES_CODE_RESTART_CONTEXT,
    MACHINES_CODE_RUN,
    MachineCodeRef,
    MachineCodeRunParams,
    MachineContextRef,
    MachineCreateContextParams,
)
from services.gateway.auth import Caller
from services.gateway.e2b.calls import Calls
from services.gateway.e2b.connect import decode
from services.gateway.e2b.envd_files import Homes, to_e2b, to_machine
from services.gateway.e2b.sandbox import http_error

#: A MIME type's key in E2B's result.
MIME_KEYS: Final = {"text/plain": "text", "text/html": "html", "text/markdown": "markdown",
                    "image/svg+xml": "svg", "image/png": "png", "image/jpeg": "jpeg",
                    "application/pdf": "pdf", "text/latex": "latex", "application/json": "json",
                    "application/javascript": "javascript"}  # fmt: skip
#: E2B's names of languages, as fleetd's kernels are named.
LANGUAGES: Final = {"js": "javascript", "ts": "typescript"}
_PART = msgspec.json.Decoder(dc.CodeRunPart)


class Execute(msgspec.Struct, kw_only=True):
    code: str
    context_id: str | None = None
    language: str | None = None
    env_vars: dict[str, str] | None = None


class NewContext(msgspec.Struct, kw_only=True):
    language: str | None = None
    cwd: str | None = None


class Interpreter:
    def __init__(self, calls: Calls, homes: Homes) -> None:
        self._calls = calls
        self._homes = homes

    async def serve(self, request: web.Request, machine_id: str,
                    caller: Caller) -> web.StreamResponse:  # fmt: skip
        try:
            path, method = request.path.rstrip("/"), request.method
            if path == "/execute" and method == "POST":
                return await self._execute(request, machine_id, caller)
            if path == "/contexts":
                return await self._contexts(request, machine_id, caller)
            if path.startswith("/contexts/"):
                return await self._context(request, machine_id, caller)
            raise NotFound(f"{method} {request.path}: no such code interpreter route")
        except FleetError as exc:
            return http_error(exc)

    async def _execute(self, request: web.Request, machine_id: str,
                       caller: Caller) -> web.StreamResponse:  # fmt: skip
        body = decode(await request.read(), Execute)
        if body.context_id and body.language:
            raise InvalidParams("give a context_id or a language, not both")
        params = MachineCodeRunParams(machine_id=machine_id, code=body.code,
                                      context_id=body.context_id, env=body.env_vars or None,
                                      language=_language(body.language))  # fmt: skip
        resp = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})

        async def part(raw: bytes) -> None:
            if not resp.prepared:  # on its first part: a refusal before it is a status
                await resp.prepare(request)
            await resp.write(_line(_event(_PART.decode(raw))))

        try:
            done = await self._calls.streamed(MACHINES_CODE_RUN, params, caller, part)
        except FleetError as exc:
            if not resp.prepared:
                return http_error(exc)
            await resp.write(_line({"type": "error", "name": type(exc).__name__,
                                    "value": exc.message, "traceback": ""}))  # fmt: skip
        else:
            if not resp.prepared:
                await resp.prepare(request)
            if done.execution_count is not None:
                await resp.write(_line({"type": "number_of_executions",
                                        "execution_count": done.execution_count}))  # fmt: skip
        await resp.write(_line({"type": "end_of_execution"}))
        await resp.write_eof()
        return resp

    async def _contexts(self, request: web.Request, machine_id: str,
                        caller: Caller) -> web.Response:  # fmt: skip
        if request.method == "POST":
            body = decode(await request.read(), NewContext)
            made = await self._calls(MACHINES_CODE_CREATE_CONTEXT, MachineCreateContextParams(
                machine_id=machine_id, language=_language(body.language) or dc.DEFAULT_LANGUAGE,
                cwd=to_machine(body.cwd) if body.cwd else None), caller)  # fmt: skip
            home = await self._homes.of(machine_id, caller)
            return _json(_context_of(made, home))
        got = await self._calls(MACHINES_CODE_LIST_CONTEXTS,
                                MachineCodeRef(machine_id=machine_id), caller)  # fmt: skip
        home = await self._homes.of(machine_id, caller)
        return _json([_context_of(c, home) for c in got.contexts
                      if c.id != dc.default_context_id(c.language)])  # fmt: skip

    async def _context(self, request: web.Request, machine_id: str,
                       caller: Caller) -> web.Response:  # fmt: skip
        context_id, _, action = request.path.removeprefix("/contexts/").partition("/")
        try:
            ref = MachineContextRef(machine_id=machine_id, context_id=context_id)
        except msgspec.ValidationError:
            raise NotFound(f"context {context_id!r} not found") from None
        if request.method == "DELETE" and not action:
            gone = await self._calls(MACHINES_CODE_DELETE_CONTEXT, ref, caller)
            if not gone.deleted:
                raise NotFound(f"context {context_id} not found")
            return web.Response(status=204)
        if request.method == "POST" and action == "restart":
            await self._calls(MACHINES_CODE_RESTART_CONTEXT, ref, caller)
            return web.Response(status=204)
        raise NotFound(f"{request.method} {request.path}: no such code interpreter route")


def _event(part: dc.CodeRunPart) -> dict[str, Any]:
    """A streamed part as E2B's server writes it."""
    if part.kind in ("stdout", "stderr"):
        return {"type": part.kind, "text": part.text or "",
                "timestamp": datetime.now(UTC).isoformat()}  # fmt: skip
    if part.kind == "error" and part.error is not None:
        return {"type": "error", "name": part.error.name, "value": part.error.value,
                "traceback": "\n".join(part.error.traceback)}  # fmt: skip
    bundle = dict(part.result or {})
    out: dict[str, Any] = {"type": "result", "is_main_result": bool(bundle.pop(dc.IS_MAIN, False))}
    extra = {}
    for mime, value in bundle.items():
        if mime in MIME_KEYS:
            out[MIME_KEYS[mime]] = value
        else:
            extra[mime] = value
    if extra:
        out["extra"] = extra
    return out


def _context_of(c: dc.CodeContext, home: str) -> dict[str, str]:
    return {"id": c.id, "language": c.language, "cwd": to_e2b(c.cwd, home)}


def _language(name: str | None) -> str | None:
    return None if name is None else LANGUAGES.get(name, name)


def _line(obj: dict[str, Any]) -> bytes:
    return msgspec.json.encode(obj) + b"\n"


def _json(value: object) -> web.Response:
    return web.Response(body=msgspec.json.encode(value), content_type="application/json")
