"""The fake daemon's code interpreter: no kernel runs; each call is recorded, and a run answers
its code back as the cell's ``text/plain`` result (the gateway's rules are what is tested). A
streamed run first publishes ``parts`` (with ``publish``, a test's NATS), as a daemon would (over
and over with ``repeat``: a machine that writes without end), then waits for ``hold`` (when
set): a run still going; ``tool.code.cancelRun`` is recorded."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import msgspec

from contracts.bus import subjects
from contracts.daemon import code as dc
from contracts.errors import LanguageUnavailable, NotFound
from contracts.rpc.jsonrpc import NoParams, Router

LANGUAGES = ("bash", "python")


@dataclass
class FakeKernels:
    home: str
    #: Every run, oldest first.
    runs: list[dc.CodeRunParams] = field(default_factory=list)
    contexts: dict[str, dc.CodeContext] = field(default_factory=dict)
    #: What a streamed run publishes before it answers, and where (subject, data).
    parts: list[dc.CodeRunPart] = field(default_factory=list)
    publish: Callable[[str, bytes], Awaitable[None]] | None = None
    #: ``parts`` published again and again until the run is cancelled.
    repeat: bool = False
    machine_id: str = ""
    hold: asyncio.Event | None = None
    #: The streams whose runs were cancelled, oldest first.
    cancelled: list[str] = field(default_factory=list)
    cancel_seen: asyncio.Event = field(default_factory=asyncio.Event)

    def register(self, r: Router[None]) -> None:
        r.register(dc.CODE_RUN, self.run)
        r.register(dc.CODE_RUN_STREAM, self.run_stream)
        r.register(dc.CODE_CANCEL_RUN, self.cancel_run)
        r.register(dc.CODE_CREATE_CONTEXT, self.create)
        r.register(dc.CODE_LIST_CONTEXTS, self.list)
        r.register(dc.CODE_RESTART_CONTEXT, self.restart)
        r.register(dc.CODE_DELETE_CONTEXT, self.delete)
        r.register(dc.CODE_INTERRUPT, self.interrupt)

    async def run(self, p: dc.CodeRunParams, _: None) -> dc.CodeRunResult:
        self.runs.append(p)
        if p.context_id is not None:
            ctx = self._get(p.context_id)
        else:
            ctx = self._new(dc.default_context_id(p.language or "python"), p.language, None)
        main = {"text/plain": p.code, dc.IS_MAIN: True}
        return dc.CodeRunResult(execution_count=len(self.runs), results=[main], stdout=[],
                                stderr=[], error=None, context_id=ctx.id)  # fmt: skip

    async def run_stream(self, p: dc.CodeRunStreamParams, _: None) -> dc.CodeRunResult:
        subject = subjects.exec_output(self.machine_id, p.stream_id)
        encoded = [msgspec.json.encode(part) for part in self.parts]
        while True:
            for data in encoded:
                if self.publish is not None:
                    await self.publish(subject, data)
                if self.repeat:
                    await asyncio.sleep(0)  # its reader's turn, as over a socket
            if not self.repeat:
                break
        if self.hold is not None:
            await self.hold.wait()
        return await self.run(p, None)

    async def cancel_run(self, p: dc.StreamRef, _: None) -> dc.RunCancelled:
        self.cancelled.append(p.stream_id)
        self.cancel_seen.set()
        return dc.RunCancelled(cancelled=True)

    async def create(self, p: dc.CreateContextParams, _: None) -> dc.CodeContext:
        return self._new(f"c{len(self.contexts) + 1}", p.language, p.cwd)

    async def list(self, _: NoParams, __: None) -> dc.CodeContextList:
        return dc.CodeContextList(contexts=list(self.contexts.values()), languages=[*LANGUAGES])

    async def restart(self, p: dc.ContextRef, _: None) -> dc.CodeContext:
        return self._get(p.context_id)

    async def delete(self, p: dc.ContextRef, _: None) -> dc.ContextDeleted:
        gone = self.contexts.pop(p.context_id, None)
        return dc.ContextDeleted(id=p.context_id, deleted=gone is not None)

    async def interrupt(self, p: dc.ContextRef, _: None) -> dc.ContextInterrupted:
        return dc.ContextInterrupted(id=self._get(p.context_id).id, interrupted=False)

    def _get(self, context_id: str) -> dc.CodeContext:
        if context_id not in self.contexts:
            raise NotFound(f"no code context {context_id} on this machine")
        return self.contexts[context_id]

    def _new(self, cid: str, language: str | None, cwd: str | None) -> dc.CodeContext:
        lang = language or "python"
        if lang not in LANGUAGES:
            raise LanguageUnavailable(f"no kernel for {lang!r}", data={"languages": [*LANGUAGES]})
        ctx = self.contexts.setdefault(cid, dc.CodeContext(id=cid, language=lang,
                                                           cwd=cwd or self.home))  # fmt: skip
        return ctx
