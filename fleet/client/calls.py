"""``FleetClient``'s hand-written calls (bound as its methods): the gateway methods whose specs
say ``hand_written`` (``codegen.pyclient.HAND_WRITTEN``), whose client side does more than send
its params, and second ways to call a generated one.

Create and rebuild send one ``idempotencyKey`` per logical call, so they are the methods
``call(..., resend_cut=True)`` sends again when the connection broke after the request went
out: the gateway may have run it, and the key makes running it again answer the same machine.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal

import msgspec

from contracts.daemon import code as dc
from contracts.daemon.machine_files import CronJob
from contracts.daemon.rpc import (
    DEFAULT_EXEC_TIMEOUT_S,
    DEFAULT_FILE_MODE,
    ExecCommandResult,
    WriteFileResult,
)
from contracts.gateway import (
    code as gc,
    codemode as cm,
    live,
    network as gn,
    rpc as g,
    sessions as gs,
)
from contracts.models import Machine, ProviderName, Runtime
from contracts.people import Scope
from contracts.rpc.jsonrpc import new_params
from contracts.rpc.rpc_params import invalid_params

if TYPE_CHECKING:  # the client binds these
    import aiohttp

    from fleet.client.core import ClientCore


async def create_machine(
    self: ClientCore,
    instance_id: str,
    provider: ProviderName | None = None,
    *,
    idempotency_key: str | None = None,
    runtime: Runtime | None = None,
) -> Machine:
    """The instance's machine, on ``provider`` (omitted: the platform's default), of
    ``runtime`` (omitted: the instance's, else the platform's). One key
    per logical create (``idempotency_key``, else a new random one), sent with each retry
    of it: a retry whose first answer was lost gets that machine, not a second one."""
    key = idempotency_key or uuid.uuid4().hex
    params = new_params(g.CreateMachineParams, instance_id=instance_id, provider=provider,
                        idempotency_key=key, runtime=runtime)  # fmt: skip
    return await self.call(g.MACHINES_CREATE, params, resend_cut=True)


async def rebuild_machine(
    self: ClientCore, instance_id: str, *, idempotency_key: str | None = None
) -> Machine:
    """Archive the instance's current machine and make a new one. One key per logical
    rebuild, as for ``create_machine``: a retry whose first answer was lost gets the machine
    that rebuild made, and neither archives it nor makes a third."""
    key = idempotency_key or uuid.uuid4().hex
    params = new_params(g.RebuildMachineParams, instance_id=instance_id, idempotency_key=key)
    return await self.call(g.MACHINES_REBUILD, params, resend_cut=True)


async def create_from_snapshot(self: ClientCore, instance_id: str, snapshot_id: str) -> Machine:
    """One more machine of the instance, with a copy of the snapshot's home (sent once:
    no idempotency key, so a lost answer is not retried)."""
    params = new_params(g.CreateMachineParams, instance_id=instance_id,
                        from_snapshot=snapshot_id)  # fmt: skip
    return await self.call(g.MACHINES_CREATE, params)


async def exec(
    self: ClientCore,
    machine_id: str,
    command: list[str],
    *,
    timeout_s: float | None = None,
    cwd: str | None = None,
    env: dict[str, str] | None = None,
    user: Literal["root"] | None = None,
) -> ExecCommandResult:
    """Run ``command`` on the machine as its user, or as root (``user="root"``: gvisor
    machines only)."""
    timeout = DEFAULT_EXEC_TIMEOUT_S if timeout_s is None else timeout_s
    params = new_params(g.MachineExecParams, machine_id=machine_id, command=command,
                        timeout_s=timeout, cwd=cwd, env=env, user=user)  # fmt: skip
    # The command may legitimately run long: wait for its own timeout, plus a margin.
    return await self.call(g.MACHINES_EXEC, params, timeout_s=timeout + 15.0)


async def machines_code_run(
    self: ClientCore,
    machine_id: str,
    code: str,
    *,
    language: str | None = None,
    context_id: str | None = None,
    timeout_s: float = dc.DEFAULT_CODE_TIMEOUT_S,
    env: dict[str, str] | None = None,
) -> dc.CodeRunResult:
    """Run ``code`` in a stateful kernel of the machine (its default context for
    ``language``, default python, or ``context_id``): results as MIME bundles, stdout, stderr,
    the error."""
    params = new_params(gc.MachineCodeRunParams, machine_id=machine_id, code=code,
                        language=language, context_id=context_id, timeout_s=timeout_s,
                        env=env)  # fmt: skip
    # The code may run until its timeout, after a kernel's start and an interrupt's grace.
    wait = timeout_s + dc.KERNEL_START_S + dc.INTERRUPT_GRACE_S + 15.0
    return await self.call(gc.MACHINES_CODE_RUN, params, timeout_s=wait)


async def exec_via_stream_method(
    self: ClientCore, machine_id: str, command: list[str], *, timeout_s: float | None = None,
    cwd: str | None = None, env: dict[str, str] | None = None,
) -> ExecCommandResult:  # fmt: skip
    """machines.execStream answered once (POST /rpc), for a path that buffers streams."""
    timeout = timeout_s or DEFAULT_EXEC_TIMEOUT_S
    params = new_params(live.MachineExecStreamParams, machine_id=machine_id, command=command,
                        timeout_s=timeout, cwd=cwd, env=env)  # fmt: skip
    return await self.call(live.MACHINES_EXEC_STREAM, params, timeout_s=timeout + 30.0)


async def write_file(
    self: ClientCore, machine_id: str, path: str, content: str, mode: int | None = None
) -> WriteFileResult:
    mode = DEFAULT_FILE_MODE if mode is None else mode
    params = new_params(g.MachineWriteFileParams, machine_id=machine_id, path=path,
                        content=content, mode=mode)  # fmt: skip
    return await self.call(g.MACHINES_WRITE_FILE, params)


async def add_repo(
    self: ClientCore, instance_id: str, url: str, branch: str, path: str, *,
    token: str | None = None, username: str | None = None,
) -> g.AddedRepo:  # fmt: skip
    """``token`` (and ``username``, default ``x-access-token``): for a private repo. Refused
    (RepoNotFound, BranchNotFound) if git on the platform finds no such repo or branch;
    ``.warning`` says when it could not ask."""
    username = g.DEFAULT_GIT_USERNAME if username is None else username
    params = new_params(g.AddRepoParams, instance_id=instance_id, url=url, branch=branch,
                        path=path, token=token, username=username)  # fmt: skip
    return await self.call(g.REPOS_ADD, params)


async def set_cron(self: ClientCore, instance_id: str, jobs: Sequence[CronJob]) -> g.CronSetResult:
    """Replace the instance's whole cron table; it is pushed to its running machine at
    once (``.machines``, ``.failed``) and to new machines at setup."""
    params = new_params(g.SetCronParams, instance_id=instance_id, jobs=list(jobs))
    return await self.call(g.CRON_SET, params)


async def create_scoped_token(
    self: ClientCore,
    name: str,
    *,
    scopes: Sequence[Scope] | None = None,
    instance_ids: Sequence[str] | None = None,
    expires_in_s: int | None = None,
    user: str | None = None,
) -> g.CreatedToken:
    """A personal access token; ``.token`` is the secret, shown this once."""
    params = new_params(
        g.CreateTokenParams, name=name, scopes=list(scopes) if scopes else None,
        instance_ids=list(instance_ids) if instance_ids else None,
        expires_in_s=expires_in_s, user=user,
    )  # fmt: skip
    return await self.call(g.TOKENS_CREATE, params)


async def set_network_policy(
    self: ClientCore,
    instance_id: str,
    *,
    default: Literal["allow", "deny"] = "allow",
    allow: list[str] | None = None,
    deny: list[str] | None = None,
) -> gn.NetworkPolicyResult:
    """Where the instance's machines may connect from now on (running ones too)."""
    try:
        egress = gn.EgressPolicy(default=default, allow=allow or [], deny=deny or [])
    except ValueError as exc:  # refused here as the gateway would: naming the entry
        raise invalid_params(msgspec.ValidationError(f"{exc} - at `$.egress`")) from None
    params = new_params(gn.SetNetworkPolicyParams, instance_id=instance_id, egress=egress)
    return await self.call(gn.INSTANCES_SET_NETWORK_POLICY, params)


async def code_run(
    self: ClientCore,
    code: str,
    *,
    machine_id: str | None = None,
    instance_id: str | None = None,
    timeout_s: float = cm.DEFAULT_TIMEOUT_S,
) -> cm.RunResult:
    params = new_params(cm.RunParams, code=code, machine_id=machine_id,
                        instance_id=instance_id, timeout_s=timeout_s)  # fmt: skip
    return await self.call(cm.CODEMODE_RUN, params, timeout_s=timeout_s + 30)


async def code_set_bridge(
    self: ClientCore, instance_id: str, bridge: cm.OpenApiBridge | cm.McpBridge
) -> cm.BridgeInfo:
    if isinstance(bridge, cm.OpenApiBridge):
        params = new_params(cm.SetBridgeParams, instance_id=instance_id, openapi=bridge)
    else:
        params = new_params(cm.SetBridgeParams, instance_id=instance_id, mcp=bridge)
    return await self.call(cm.CODEMODE_BRIDGES_SET, params)


async def open_session(
    self: ClientCore, machine_id: str, command: Sequence[str] | None = None, *, cols: int = 80,
    rows: int = 24, cwd: str | None = None, name: str | None = None,
) -> gs.OpenedSession:  # fmt: skip
    params = new_params(gs.SessionsOpenParams, machine_id=machine_id, cols=cols, rows=rows,
                        command=list(command) if command else None, cwd=cwd,
                        name=name)  # fmt: skip
    return await self.call(gs.SESSIONS_OPEN, params)


async def attach_session(
    self: ClientCore, machine_id: str, session_id: str
) -> aiohttp.ClientWebSocketResponse:
    """The session's WebSocket (binary: terminal bytes; text: JSON control). The caller
    closes it; closing it detaches, the session goes on."""
    return await self.websocket(
        gs.attach_path(machine_id, session_id), heartbeat=30.0, close_timeout_s=5.0
    )


async def events_url(self: ClientCore, machine_id: str | None = None) -> str:
    """A ``GET /events`` URL that needs no header, with a fresh ticket in it (for tools that
    cannot send one, as a browser's EventSource cannot; the ticket is good for one stream,
    for seconds)."""
    ticket = (await self.events_ticket()).ticket
    machine = f"&machineId={machine_id}" if machine_id else ""
    return f"{self.url}/events?ticket={ticket}{machine}"
