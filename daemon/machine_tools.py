"""The daemon's own methods on its machine: write a file, run a command, clone a repo, its
version and health, background processes, its log, listening ports, selfUpdate and stop. The
rest are the methods of the parts ``daemon.compose.compose`` makes (files, streams, sessions,
tunnels, transfers, code kernels)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from base.version import git_sha, package_version
from contracts.daemon import rpc as d
from contracts.daemon.rpc import (
    ExecCommandParams,
    ExecCommandResult,
    GetVersionResult,
    GitCloneParams,
    HealthResult,
    ProcessInfo,
    ProcessList,
    ProcessLogs,
    ProcessLogsParams,
    ProcessRef,
    ProcessStartParams,
    SelfUpdateParams,
    SelfUpdateResult,
    WriteFileParams,
    WriteFileResult,
)
from contracts.errors import NotSupported
from contracts.ports import LIST_PORTS, PortList
from contracts.rpc.jsonrpc import NoParams, handles
from daemon import gitclone
from daemon.code.kernels import CodeKernels
from daemon.ports.listening import list_ports
from daemon.processes import tools
from daemon.processes.env import ProcessEnv
from daemon.processes.exec_streams import daemon_log
from daemon.supervision import update
from daemon.supervision.lifecycle import Lifecycle
from daemon.supervision.stops import Stops

#: Above this, tool.writeFile writes in a thread: not "at once" (``daemon.server``).
THREAD_WRITE_BYTES = 256 * 1024


class MachineTools:
    """``life``: the daemon's life on its machine (None: a swarm daemon, which runs no
    background process and is not updated in place)."""

    def __init__(self, *, home: Path, env: ProcessEnv, output_cap: int, life: Lifecycle | None,
                 stops: Stops, kernels: CodeKernels) -> None:  # fmt: skip
        self._home = home
        self._env = env
        self._output_cap = output_cap
        self._life = life
        self._stops = stops
        self._kernels = kernels
        self._umask = tools.current_umask()
        self._started = time.monotonic()

    @handles(d.DAEMON_LOG)
    async def _daemon_log(self, params: d.DaemonLogParams, _: None) -> d.DaemonLogResult:
        return await daemon_log(params, None)

    @handles(LIST_PORTS)
    async def _list_ports(self, params: NoParams, _: None) -> PortList:
        return await list_ports(self._kernels.sockets())

    @handles(d.WRITE_FILE)
    async def _write_file(self, params: WriteFileParams, _: None) -> WriteFileResult:
        if len(params.content) < THREAD_WRITE_BYTES:
            return tools.write_file(self._home, params, self._umask)
        return await asyncio.to_thread(tools.write_file, self._home, params, self._umask)

    @handles(d.EXEC_COMMAND)
    async def _exec_command(self, params: ExecCommandParams, _: None) -> ExecCommandResult:
        if self._life is None:
            return await tools.exec_command(self._home, params, self._env, self._output_cap)
        procs = self._life.procs  # tracked while it runs: doctor finds it if we die mid-way
        home = self._home
        cwd = str(tools.resolve_path(home, params.cwd, "$.cwd")) if params.cwd else str(home)
        return await tools.exec_command(
            home, params, self._env, self._output_cap,
            on_spawn=lambda pid: procs.track_exec(pid, params.command, cwd),
            on_exit=procs.untrack_exec,
        )  # fmt: skip

    @handles(d.GIT_CLONE)
    async def _git_clone(self, params: GitCloneParams, _: None) -> ExecCommandResult:
        return await self._exec_command(gitclone.clone_command(params), None)

    @handles(d.GET_VERSION)
    async def _get_version(self, _: NoParams, __: None) -> GetVersionResult:
        return GetVersionResult(version=package_version(), git_sha=git_sha())

    @handles(d.HEALTH)
    async def _health(self, params: d.HealthParams, _: None) -> HealthResult:
        missing = [
            f for i, f in enumerate(params.files)
            if not tools.resolve_path(self._home, f, f"$.files[{i}]").is_file()
        ]  # fmt: skip
        return HealthResult(
            ok=True, uptime_s=round(time.monotonic() - self._started, 3), missing=missing
        )

    def _lifecycle(self) -> Lifecycle:
        if self._life is None:
            raise NotSupported("this daemon runs without background processes (swarm daemon)")
        return self._life

    @handles(d.PROCESS_START)
    async def _process_start(self, params: ProcessStartParams, _: None) -> ProcessInfo:
        return await self._lifecycle().procs.start(params)

    @handles(d.PROCESS_LIST)
    async def _process_list(self, _: NoParams, __: None) -> ProcessList:
        return self._lifecycle().procs.list()

    @handles(d.PROCESS_KILL)
    async def _process_kill(self, params: ProcessRef, _: None) -> ProcessInfo:
        return await self._lifecycle().procs.kill(params)

    @handles(d.PROCESS_LOGS)
    async def _process_logs(self, params: ProcessLogsParams, _: None) -> ProcessLogs:
        return self._lifecycle().procs.logs(params)

    @handles(d.SELF_UPDATE)
    async def _self_update(self, params: SelfUpdateParams, _: None) -> SelfUpdateResult:
        """Switch to the installed code at targetRef and re-execute in place after answering
        (same pid: background processes stay our children and keep running)."""
        self._lifecycle()
        code_dir, sha = await asyncio.to_thread(update.installed_code, params.target_ref)
        running = git_sha()
        if sha == running:
            return SelfUpdateResult(restarting=False, from_git_sha=running, to_git_sha=sha)
        # Stopping waits for in-flight requests, this one included: the answer goes out first.
        self._stops.request(f"self-update from {running} to {sha}", "exec", code_dir)
        return SelfUpdateResult(restarting=True, from_git_sha=running, to_git_sha=sha)

    @handles(d.STOP)
    async def _stop(self, _: NoParams, __: None) -> d.StopResult:
        """Archive: the platform asks before it revokes our access, so that the ``stopping``
        report still gets out. Stopping waits for in-flight requests: this answer goes first."""
        self._stops.request("asked to stop by the platform")
        return d.StopResult(stopping=True)
