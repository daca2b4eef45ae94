"""The machine's code interpreter: one Jupyter kernel per context (contracts.daemon.code).

Each kernel is a child of the daemon (``jupyter_client``'s ``AsyncKernelManager``, started from
an explicit argv of the platform's own runtime, no kernelspec installed anywhere): it runs as the
machine's user, in its sandbox, cgroup and egress policy, with the environment every process of
the machine gets (``daemon.processes.env``), in the context's working directory. ``jupyter_client``
is
imported on the first call, in a thread: a daemon nobody runs code on pays nothing for it at
start.

One execution at a time per context (a lock): Jupyter kernels run their requests in order
anyway, and the answer is read off the IOPub messages of that one request. Past a call's
timeout the kernel is interrupted (SIGINT to its process group, as Jupyter does) and the state
stays; a kernel that does not stop then is killed. A kernel found dead answers ``KernelDied``
and is forgotten: the next call in the context starts a new one.

``tool.code.runStream`` is ``tool.code.run`` that also publishes each part of the answer as it
is taken (``CodeRunPart``: a chunk of stdout or stderr, a result, the error) on the subject a
streamed command's output takes, ``daemon.<machineId>.output.<streamId>``. Its caller gone,
``tool.code.cancelRun`` ends it: interrupted if it runs, never started if it still waits for its
context.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import importlib.util
import queue
import shlex
import shutil
import tempfile
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
import structlog

from contracts.bus import subjects
from contracts.daemon import code as dc
from contracts.errors import CodeContextsLimit, KernelDied, LanguageUnavailable, NotFound, ToolError
from contracts.rpc.jsonrpc import NoParams, handles
from daemon.code.launch import kernel_launch
from daemon.code.output import RunOutput
from daemon.ports.listening import listener_inodes, started_with
from daemon.processes import tools
from daemon.processes.env import ProcessEnv
from daemon.processes.exec_streams import Publish

log = structlog.get_logger(__name__)

#: Each language's kernel: the module of the platform's runtime that serves it (run with this
#: interpreter), and the program the machine must have for it.
KERNELS: dict[str, tuple[str, str | None]] = {
    "python": ("ipykernel_launcher", None),
    "bash": ("bash_kernel", "bash"),
}
#: Where the kernels' connection files go (their ports and HMAC key), under the home.
_RUNTIME_DIR = ".fleet/kernels"
# A kernel's channels are Unix sockets (ZeroMQ's ipc transport), each in a directory of its own
# made by mkdtemp (the user's alone, a short path: a socket's is at most 107 bytes, which a
# home's can pass). Not TCP: a gvisor machine restored with its loopback TCP connections to
# its kernels (a resume, a fork) now and then made libzmq abort the daemon ("Assertion failed:
# _decoder (src/stream_engine_base.cpp:244)"), and its kernels ended with it.
#: How often a run waiting on its kernel looks whether the kernel is still alive.
_POLL_S = 1.0
_ENCODE = msgspec.json.Encoder()
#: Takes each part of a streamed run, in order.
SendPart = Callable[[dc.CodeRunPart], Awaitable[None]]
#: Takes each IOPub message of a request (its type, its content).
Take = Callable[[str, dict[str, Any]], Awaitable[None]]


@dataclass
class _Context:
    info: dc.CodeContext
    km: Any = None  # AsyncKernelManager, once started
    kc: Any = None  # its AsyncKernelClient
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    running: bool = False
    #: The stream of the run that executes (None: none, or an unstreamed one).
    stream: str | None = None
    #: The listening sockets its kernel opened as it started: the platform's, not the user's
    #: (daemon/ports/listening.py lists none of them).
    sockets: frozenset[int] = frozenset()


@functools.cache
def _jupyter() -> tuple[Any, Any]:
    """``AsyncKernelManager`` and a spec manager that knows only the argv it is given."""
    from jupyter_client.kernelspec import KernelSpec, KernelSpecManager
    from jupyter_client.manager import AsyncKernelManager

    class OneSpec(KernelSpecManager):  # type: ignore[misc]
        """The one kernel a manager starts: never looked up on disk."""

        spec: dict[str, Any]

        def get_kernel_spec(self, kernel_name: str) -> Any:
            return KernelSpec(**self.spec)

    return AsyncKernelManager, OneSpec


class KeptKernels:
    """Kernels a daemon left to the next in its process, by home: a fork or a machine made from
    a memory snapshot is restored with its source's daemon and kernels, and that daemon goes on
    in the same process as the new machine (exit mode ``identity``): the kernels, its children,
    go on with it. Made once by the process (``daemon.__main__``), handed to each daemon's
    ``CodeKernels``."""

    def __init__(self) -> None:
        self._by_home: dict[Path, dict[str, _Context]] = {}

    def keep(self, home: Path, contexts: dict[str, _Context]) -> None:
        self._by_home[home] = contexts

    def take(self, home: Path) -> dict[str, _Context]:
        return self._by_home.pop(home, {})


class CodeKernels:
    def __init__(self, *, home: Path, env: ProcessEnv, contexts_max: int,
                 room: Callable[[], int], machine_id: str = "", publish: Publish | None = None,
                 kept: KeptKernels | None = None) -> None:  # fmt: skip
        """``kept``: what a daemon before this one in the process left running (none by
        default)."""
        self._home = home
        self._machine_id = machine_id
        #: Where a streamed run's parts go (none: tool.code.runStream answers as run does).
        self._publish = publish
        self._env = env
        self._max = contexts_max
        #: The most an answer may hold, in bytes (one NATS message, less its envelope).
        self._room = room
        self._kept = kept or KeptKernels()
        self._contexts: dict[str, _Context] = self._kept.take(home)
        #: Streamed runs under way (waiting for their context or running), and those of them
        #: cancelled.
        self._streams: dict[str, _Context] = {}
        self._cancelled: set[str] = set()

    def sockets(self) -> frozenset[int]:
        """The listening sockets the contexts' kernels opened as they started."""
        return frozenset[int]().union(*(ctx.sockets for ctx in self._contexts.values()))

    def languages(self) -> list[str]:
        path = self._env().get("PATH")
        return sorted(lang for lang, (module, program) in KERNELS.items()
                      if importlib.util.find_spec(module) is not None
                      and (program is None or shutil.which(program, path=path)))  # fmt: skip

    # --- the methods --------------------------------------------------------------------------
    @handles(dc.CODE_RUN)
    async def run(self, p: dc.CodeRunParams, _: None) -> dc.CodeRunResult:
        return await self._run(self._for_run(p), p, None)

    @handles(dc.CODE_RUN_STREAM)
    async def run_stream(self, p: dc.CodeRunStreamParams, _: None) -> dc.CodeRunResult:
        publish, subject = self._publish, subjects.exec_output(self._machine_id, p.stream_id)

        async def send(part: dc.CodeRunPart) -> None:
            if publish is not None:
                await publish(subject, _ENCODE.encode(part))

        ctx = self._for_run(p)
        self._streams[p.stream_id] = ctx
        try:
            return await self._run(ctx, p, send, p.stream_id)
        finally:
            self._streams.pop(p.stream_id, None)
            self._cancelled.discard(p.stream_id)

    @handles(dc.CODE_CANCEL_RUN)
    async def cancel_run(self, p: dc.StreamRef, _: None) -> dc.RunCancelled:
        ctx = self._streams.get(p.stream_id)
        if ctx is None:
            return dc.RunCancelled(cancelled=False)
        self._cancelled.add(p.stream_id)
        if ctx.stream == p.stream_id:
            await self._interrupt(ctx)
        log.info("code.run_cancelled", context_id=ctx.info.id)
        return dc.RunCancelled(cancelled=True)

    async def _run(self, ctx: _Context, p: dc.CodeRunParams, send: SendPart | None,
                   stream: str | None = None) -> dc.CodeRunResult:  # fmt: skip
        async with ctx.lock:
            await self._ensure_kernel(ctx)
            if p.env:
                await self._quiet(ctx, _env_code(ctx.info.language, p.env, set_=True))
            try:
                if stream in self._cancelled:
                    raise ToolError("the run was cancelled before it started (its caller left)")
                # From here to its execution's start nothing awaits: a cancel sees either
                # this stream not yet running (and the check above ends it) or running.
                ctx.stream = stream
                return await self._execute(ctx, p.code, p.timeout_s, send)
            finally:
                ctx.stream = None
                if p.env and ctx.km is not None:
                    await self._quiet(ctx, _env_code(ctx.info.language, p.env, set_=False))

    @handles(dc.CODE_CREATE_CONTEXT)
    async def create(self, p: dc.CreateContextParams, _: None) -> dc.CodeContext:
        ctx = self._add(uuid.uuid4().hex[:12], p.language, p.cwd)
        try:
            async with ctx.lock:
                await self._ensure_kernel(ctx)
        except BaseException:
            self._contexts.pop(ctx.info.id, None)
            raise
        return ctx.info

    @handles(dc.CODE_LIST_CONTEXTS)
    async def list(self, _: NoParams, __: None) -> dc.CodeContextList:
        return dc.CodeContextList(contexts=[c.info for c in self._contexts.values()],
                                  languages=self.languages())  # fmt: skip

    @handles(dc.CODE_RESTART_CONTEXT)
    async def restart(self, p: dc.ContextRef, _: None) -> dc.CodeContext:
        ctx = self._get(p.context_id)
        await self._interrupt(ctx)  # a run under way ends, and lets the lock go
        async with ctx.lock:
            await _shutdown(ctx)
            await self._ensure_kernel(ctx)
        log.info("code.context_restarted", context_id=ctx.info.id)
        return ctx.info

    @handles(dc.CODE_DELETE_CONTEXT)
    async def delete(self, p: dc.ContextRef, _: None) -> dc.ContextDeleted:
        ctx = self._contexts.pop(p.context_id, None)
        if ctx is not None:
            await _shutdown(ctx)
            log.info("code.context_deleted", context_id=p.context_id)
        return dc.ContextDeleted(id=p.context_id, deleted=ctx is not None)

    @handles(dc.CODE_INTERRUPT)
    async def interrupt(self, p: dc.ContextRef, _: None) -> dc.ContextInterrupted:
        ctx = self._get(p.context_id)
        return dc.ContextInterrupted(id=ctx.info.id, interrupted=await self._interrupt(ctx))

    async def close_all(self, *, keep: bool = False) -> None:
        """Every kernel shut down (the daemon is going), or ``keep``: left running for the next
        daemon of this process and home."""
        if keep:
            kept, self._contexts = self._contexts, {}
            self._kept.keep(self._home, kept)
            log.info("code.kernels_kept", contexts=len(kept))
            return
        contexts, self._contexts = list(self._contexts.values()), {}
        for ctx in contexts:
            await _shutdown(ctx)

    # --- contexts -----------------------------------------------------------------------------
    def _for_run(self, p: dc.CodeRunParams) -> _Context:
        if p.context_id is None:
            language = p.language or dc.DEFAULT_LANGUAGE
            cid = dc.default_context_id(language)
            return self._contexts.get(cid) or self._add(cid, language, None)
        ctx = self._get(p.context_id)
        if p.language is not None and p.language != ctx.info.language:
            raise ToolError(f"context {ctx.info.id} runs {ctx.info.language}, not {p.language}")
        return ctx

    def _get(self, context_id: str) -> _Context:
        ctx = self._contexts.get(context_id)
        if ctx is None:
            raise NotFound(f"no code context {context_id} on this machine",
                           data={"contextId": context_id})  # fmt: skip
        return ctx

    def _add(self, cid: str, language: str, cwd: str | None) -> _Context:
        langs = self.languages()
        if language not in langs:
            raise LanguageUnavailable(f"this machine has no kernel for {language!r}; it has "
                                      f"{', '.join(langs)}", data={"languages": langs})  # fmt: skip
        if len(self._contexts) >= self._max:
            raise CodeContextsLimit(f"this machine has {self._max} code contexts, as many as "
                                    "it may (FLEET_CODE_CONTEXTS_MAX): delete one first",
                                    data={"limit": self._max})  # fmt: skip
        where = tools.working_dir(self._home, cwd)
        ctx = _Context(dc.CodeContext(id=cid, language=language, cwd=str(where)))
        self._contexts[cid] = ctx
        return ctx

    # --- kernels ------------------------------------------------------------------------------
    async def _ensure_kernel(self, ctx: _Context) -> None:
        """A live kernel for the context: a dead one is reported (and forgotten), a missing
        one started."""
        if ctx.km is not None:
            if await ctx.km.is_alive():
                return
            await self._died(ctx, "before this call")
        manager, specs = await asyncio.to_thread(_jupyter)
        module, _ = KERNELS[ctx.info.language]
        runtime = self._home / _RUNTIME_DIR
        runtime.mkdir(parents=True, exist_ok=True, mode=0o700)
        argv, env = await kernel_launch(ctx.info.language, module, self._env(), self._home)
        spec = {"argv": argv,
                "display_name": ctx.info.language, "language": ctx.info.language,
                "interrupt_mode": "signal"}  # fmt: skip
        connection = runtime / f"{ctx.info.id}-{uuid.uuid4().hex}.json"
        sockets = await asyncio.to_thread(tempfile.mkdtemp, prefix="fleet-kernel-")
        try:
            km = manager(kernel_name=ctx.info.language, kernel_spec_manager=specs(),
                         connection_file=str(connection), transport="ipc",
                         ip=f"{sockets}/{ctx.info.id}")  # fmt: skip
            km.kernel_spec_manager.spec = spec
            listening = await asyncio.to_thread(listener_inodes)
            await km.start_kernel(cwd=ctx.info.cwd, env=env)
        except BaseException:  # no kernel: its sockets' directory goes with it
            await asyncio.to_thread(shutil.rmtree, sockets, True)
            raise
        kc = km.client()
        kc.start_channels()
        ctx.km, ctx.kc = km, kc
        try:
            await _wait_ready(kc, dc.KERNEL_START_S)
        except (RuntimeError, TimeoutError) as exc:
            await _shutdown(ctx)
            raise ToolError(f"the {ctx.info.language} kernel did not start: {exc}") from None
        ctx.sockets = await asyncio.to_thread(started_with, listening, _pid(km))
        log.info("code.kernel_started", context_id=ctx.info.id, language=ctx.info.language,
                 pid=_pid(km))  # fmt: skip

    async def _died(self, ctx: _Context, when: str) -> None:
        # How it ended (negative: the signal that ended it), read before the shutdown forgets it.
        code = None if ctx.km is None else _exit_code(ctx.km)
        await _shutdown(ctx)
        log.warning("code.kernel_died", context_id=ctx.info.id, when=when, exit_code=code)
        raise KernelDied(f"the kernel of context {ctx.info.id} died {when}: its state is "
                         "gone; the next call starts a new one",
                         data={"contextId": ctx.info.id})  # fmt: skip

    async def _interrupt(self, ctx: _Context) -> bool:
        if ctx.km is None or not ctx.running:
            return False
        await ctx.km.interrupt_kernel()
        return True

    async def _execute(self, ctx: _Context, code: str, timeout_s: float,
                       send: SendPart | None) -> dc.CodeRunResult:  # fmt: skip
        out = RunOutput(self._room())

        async def take(kind: str, content: dict[str, Any]) -> None:
            part = out.take(kind, content)
            if part is not None and send is not None:
                await send(part)

        msg_id = ctx.kc.execute(code, store_history=True, allow_stdin=False)
        ctx.running = True
        try:
            timed_out = await self._collect(ctx, msg_id, timeout_s, take)
        finally:
            ctx.running = False
        await _drain_reply(ctx, msg_id)
        if timed_out:
            part = out.timed_out(timeout_s)
            if send is not None:
                await send(part)
        return out.answer(ctx.info.id)

    async def _collect(self, ctx: _Context, msg_id: str, timeout_s: float,
                       take: Take) -> bool:  # fmt: skip
        """Hand each IOPub message of the request to ``take`` until its kernel is idle again;
        whether it was interrupted at its timeout."""
        loop = asyncio.get_running_loop()
        deadline, timed_out = loop.time() + timeout_s, False
        while True:
            left = deadline - loop.time()
            if left <= 0:
                if timed_out:  # interrupted, and still not idle: give it up
                    await self._died(ctx, "after its interrupt at the call's timeout")
                timed_out = True
                await ctx.km.interrupt_kernel()
                deadline = loop.time() + dc.INTERRUPT_GRACE_S
                continue
            try:
                msg = await ctx.kc.get_iopub_msg(timeout=min(left, _POLL_S))
            except queue.Empty:
                if not await ctx.km.is_alive():
                    await self._died(ctx, "while the code ran")
                continue
            if msg.get("parent_header", {}).get("msg_id") != msg_id:
                continue  # an earlier (interrupted) request's, or the kernel's own
            kind, content = msg["msg_type"], msg["content"]
            if kind == "status" and content.get("execution_state") == "idle":
                return timed_out
            await take(kind, content)

    async def _quiet(self, ctx: _Context, code: str) -> None:
        """Run ``code`` silently (no history, no output kept): a call's ``env`` set, then
        restored."""
        msg_id = ctx.kc.execute(code, silent=True, store_history=False, allow_stdin=False)
        await self._collect(ctx, msg_id, dc.INTERRUPT_GRACE_S, _ignore)
        await _drain_reply(ctx, msg_id)


async def _ignore(_: str, __: dict[str, Any]) -> None:
    """What a silent request says is not kept."""


async def _wait_ready(kc: Any, timeout_s: float) -> None:
    """jupyter_client's ``wait_for_ready`` without its last step, a wait for IOPub to be quiet
    for 0.2 s, which every kernel start paid: a kernel is ready once it answered
    ``kernel_info`` and IOPub brought a message (subscribed: a run's output is not lost). What
    IOPub or the shell channel still hold then is other requests' (a run reads its own)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        kc.kernel_info()
        with contextlib.suppress(queue.Empty):
            reply = await kc.get_shell_msg(timeout=_POLL_S)
            if reply["msg_type"] == "kernel_info_reply":
                await kc.get_iopub_msg(timeout=0.2)
                kc._handle_kernel_info_reply(reply)  # the protocol version it speaks
                return
        if not await kc.is_alive():
            raise RuntimeError("the kernel died before it answered kernel_info")
        if loop.time() > deadline:
            raise TimeoutError(f"the kernel did not answer kernel_info in {timeout_s:g}s")


async def _drain_reply(ctx: _Context, msg_id: str) -> None:
    """Read the shell channel up to the request's reply, so no reply is left queued."""
    with contextlib.suppress(queue.Empty):
        while (await ctx.kc.get_shell_msg(timeout=_POLL_S)).get("parent_header", {}).get(
            "msg_id"
        ) != msg_id:
            pass


async def _shutdown(ctx: _Context) -> None:
    km, kc, ctx.km, ctx.kc, ctx.sockets = ctx.km, ctx.kc, None, None, frozenset()
    if kc is not None:
        kc.stop_channels()
    if km is not None:
        try:
            await km.shutdown_kernel(now=True)
        except (OSError, RuntimeError, TimeoutError) as exc:  # gone already: nothing to keep
            log.warning("code.kernel_shutdown_failed", context_id=ctx.info.id, error=repr(exc))
        # Its sockets' directory (jupyter_client removes the sockets; every kernel is on ipc).
        await asyncio.to_thread(shutil.rmtree, Path(km.ip).parent, True)


def _pid(km: Any) -> int | None:
    process = getattr(km.provisioner, "process", None)
    return getattr(process, "pid", None)


def _exit_code(km: Any) -> int | None:
    process = getattr(km.provisioner, "process", None)
    return getattr(process, "returncode", None)


def _env_code(language: str, env: Mapping[str, str], *, set_: bool) -> str:
    """The code that sets a call's variables in the kernel's environment (``set_``), or puts
    back what they were."""
    names = sorted(env)
    if language == "bash":
        if set_:
            sets = " ".join(f"{k}={shlex.quote(env[k])}" for k in names)
            return f"__fleet_env=$(declare -p {' '.join(names)} 2>/dev/null); export {sets}"
        return f'unset {" ".join(names)}; eval "$__fleet_env"; unset __fleet_env'
    if set_:
        return (f"import os as __fleet_os\n__fleet_env = {{k: __fleet_os.environ.get(k) "
                f"for k in {names!r}}}\n__fleet_os.environ.update({dict(env)!r})")  # fmt: skip
    return ("for __k, __v in __fleet_env.items():\n"
            "    __fleet_os.environ.pop(__k, None) if __v is None "
            "else __fleet_os.environ.__setitem__(__k, __v)\n"
            "del __fleet_env, __fleet_os")  # fmt: skip
