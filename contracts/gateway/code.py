"""Gateway methods of the code interpreter: ``machines.code.*`` (contracts.daemon.code).

Each is its daemon method with ``machineId`` added, checked as ``machines.exec`` is (the same
scope: running code in a machine is running a command in it; an archived machine answers
Conflict; a stopped or paused one is woken as an exec wakes it).
"""

from __future__ import annotations

from typing import Annotated

import msgspec

from contracts.daemon import code as dc
from contracts.daemon.code import (
    KERNEL_START_S,
    CodeContext,
    CodeContextList,
    CodeRunParams,
    CodeRunResult,
    ContextDeleted,
    ContextInterrupted,
    ContextRef,
    CreateContextParams,
)
from contracts.errors import (
    BadPath,
    CodeContextsLimit,
    Conflict,
    DaemonTimeout,
    DaemonUnavailable,
    Forbidden,
    InvalidParams,
    KernelDied,
    LanguageUnavailable,
    MachineStopped,
    NotFound,
    ToolError,
)
from contracts.ids import ID_LENGTH, MACHINE_ID_RE
from contracts.rpc.jsonrpc import AnySpec, ClientMethod, MethodSpec, Params
from contracts.rpc.pass_through import PassThrough

_MachineId = Annotated[
    str, msgspec.Meta(pattern=MACHINE_ID_RE.pattern, min_length=ID_LENGTH, max_length=ID_LENGTH)
]


class MachineCodeRunParams(CodeRunParams, kw_only=True):
    machine_id: _MachineId


class MachineCreateContextParams(CreateContextParams, kw_only=True):
    machine_id: _MachineId


class MachineCodeRef(Params, kw_only=True):
    machine_id: _MachineId


class MachineContextRef(ContextRef, kw_only=True):
    machine_id: _MachineId


_CODE = (NotFound, Forbidden, Conflict, MachineStopped, DaemonUnavailable, DaemonTimeout,
         InvalidParams, ToolError)  # fmt: skip

MACHINES_CODE_RUN: MethodSpec[MachineCodeRunParams, CodeRunResult] = MethodSpec(
    "machines.code.run", MachineCodeRunParams, CodeRunResult,
    "Run code in a stateful kernel of the machine (its default context for the language, or "
    "contextId): the results as MIME bundles, stdout, stderr and the error, once it is done.",
    (*_CODE, LanguageUnavailable, KernelDied, CodeContextsLimit, BadPath),
    scope="machines:exec", budget="exec", hand_written=True, tool="code_run", streams=True,
)  # fmt: skip
MACHINES_CODE_CREATE_CONTEXT: MethodSpec[MachineCreateContextParams, CodeContext] = MethodSpec(
    "machines.code.createContext", MachineCreateContextParams, CodeContext,
    "Start a kernel of a language (default python) in a working directory: a new context.",
    (*_CODE, LanguageUnavailable, CodeContextsLimit, BadPath),
    scope="machines:exec", passes=PassThrough(dc.CODE_CREATE_CONTEXT, takes_s=KERNEL_START_S),
)  # fmt: skip
MACHINES_CODE_LIST_CONTEXTS: MethodSpec[MachineCodeRef, CodeContextList] = MethodSpec(
    "machines.code.listContexts", MachineCodeRef, CodeContextList,
    "The machine's code contexts, and the languages it has a kernel for.", _CODE,
    scope="machines:exec", reads=True, passes=PassThrough(dc.CODE_LIST_CONTEXTS, look=True),
)  # fmt: skip
MACHINES_CODE_RESTART_CONTEXT: MethodSpec[MachineContextRef, CodeContext] = MethodSpec(
    "machines.code.restartContext", MachineContextRef, CodeContext,
    "Restart a context's kernel: its state is cleared.", _CODE,
    scope="machines:exec",
    client=ClientMethod("machines_code_restart_context", "machine_id context_id"),
    passes=PassThrough(dc.CODE_RESTART_CONTEXT, takes_s=KERNEL_START_S),
)  # fmt: skip
MACHINES_CODE_DELETE_CONTEXT: MethodSpec[MachineContextRef, ContextDeleted] = MethodSpec(
    "machines.code.deleteContext", MachineContextRef, ContextDeleted,
    "Shut a context's kernel down and forget the context.", _CODE,
    scope="machines:exec",
    client=ClientMethod("machines_code_delete_context", "machine_id context_id"),
    passes=PassThrough(dc.CODE_DELETE_CONTEXT),
)  # fmt: skip
MACHINES_CODE_INTERRUPT: MethodSpec[MachineContextRef, ContextInterrupted] = MethodSpec(
    "machines.code.interrupt", MachineContextRef, ContextInterrupted,
    "Interrupt what runs in a context (SIGINT, as Jupyter does); its state is kept.", _CODE,
    scope="machines:exec", client=ClientMethod("machines_code_interrupt", "machine_id context_id"),
    passes=PassThrough(dc.CODE_INTERRUPT),
)  # fmt: skip

CODE_METHODS: tuple[AnySpec, ...] = (
    MACHINES_CODE_RUN,
    MACHINES_CODE_CREATE_CONTEXT,
    MACHINES_CODE_LIST_CONTEXTS,
    MACHINES_CODE_RESTART_CONTEXT,
    MACHINES_CODE_DELETE_CONTEXT,
    MACHINES_CODE_INTERRUPT,
)
