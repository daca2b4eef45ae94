"""The daemon's code interpreter: stateful Jupyter kernels, one per context.

A context is one kernel of one language with its working directory; what one call defines (a
variable, an import) the next call in the same context sees. A call without ``contextId`` runs
in the machine's default context for its language (made on first use). The kernels are the
daemon's children: they run as the machine's user, in its sandbox, with the environment its
background processes get (the daemon's without its secrets, then ``~/.fleet/.env``).

A result is Jupyter's MIME bundle (``display_data`` and ``execute_result`` ``data``) with
``isMain``: true for the ``execute_result`` (the value of the cell's last expression).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec

from contracts.daemon.streams import StreamId
from contracts.errors import (
    BadPath,
    CodeContextsLimit,
    DaemonTimeout,
    DaemonUnavailable,
    InvalidParams,
    KernelDied,
    LanguageUnavailable,
    NotFound,
    ToolError,
)
from contracts.rpc.jsonrpc import AnySpec, MethodSpec, NoParams, Params, Result
from contracts.validation import check_env_name

#: As ``tool.execCommand``'s (contracts.daemon.rpc imports this module: not taken from it).
MAX_CODE_TIMEOUT_S = 3600.0
#: The language of a context when none is given.
DEFAULT_LANGUAGE = "python"
DEFAULT_CODE_TIMEOUT_S = 300.0
#: How long a new kernel has to start and answer; a call that starts one may take this long
#: on top of its own timeout.
KERNEL_START_S = 60.0
#: How long a kernel interrupted at a call's timeout has to stop before it is given up
#: (killed: the next call starts a new one).
INTERRUPT_GRACE_S = 10.0
#: The code of one call, in characters.
MAX_CODE_CHARS = 1_000_000
#: The key of a MIME bundle that says it is the ``execute_result``.
IS_MAIN = "isMain"

Language = Annotated[str, msgspec.Meta(pattern=r"^[a-z][a-z0-9_+-]{0,31}$")]
ContextId = Annotated[str, msgspec.Meta(pattern=r"^[a-z0-9][a-z0-9-]{0,63}$")]
#: ``{"text/plain": ..., "image/png": <base64>, "text/html": ..., "isMain": bool}``.
MimeBundle = dict[str, Any]


def default_context_id(language: str) -> str:
    """The id of a language's default context."""
    return f"default-{language}"


class CodeRunParams(Params, kw_only=True):
    code: Annotated[str, msgspec.Meta(max_length=MAX_CODE_CHARS)]
    #: Omitted: the context's language, or ``python`` for the default context.
    language: Language | None = None
    #: Omitted: the machine's default context for ``language``.
    context_id: ContextId | None = None
    #: Past it the kernel is interrupted (SIGINT) and the answer's error is a ``TimeoutError``;
    #: the context keeps its state.
    timeout_s: Annotated[float, msgspec.Meta(gt=0, le=MAX_CODE_TIMEOUT_S)] = DEFAULT_CODE_TIMEOUT_S
    #: Set for this call only (restored after it).
    env: dict[str, str] | None = None

    def __post_init__(self) -> None:
        for name in self.env or {}:
            check_env_name(name, "env")


class CodeError(Result, kw_only=True):
    """An exception the code raised (or its timeout): Jupyter's ``ename``, ``evalue`` and
    ``traceback``."""

    name: str
    value: str
    traceback: list[str]


class CodeRunResult(Result, kw_only=True):
    #: The kernel's count of this execution (``In [n]``); None when it did not say.
    execution_count: int | None
    results: list[MimeBundle]
    #: The code's output in the order it came, one item per chunk the kernel sent.
    stdout: list[str]
    stderr: list[str]
    error: CodeError | None
    #: The context it ran in.
    context_id: str
    #: True when the output passed the answer's size cap: what came after it was left out.
    truncated: bool = False


class CodeRunStreamParams(CodeRunParams, kw_only=True):
    #: Each part goes to ``subjects.exec_output(machineId, streamId)`` as it happens (the
    #: subject a streamed command's output takes).
    stream_id: StreamId


#: What a streamed run's part is.
CodePartKind = Literal["stdout", "stderr", "result", "error"]


class CodeRunPart(Result, kw_only=True, omit_defaults=True):
    """One part of a streamed run, as the kernel sends it: a ``stdout`` or ``stderr`` chunk
    (``text``), a ``result`` (a MIME bundle) or the ``error``. The parts are what the answer
    holds, in the order they came (``seq`` from 0), within the same cap: a part the answer
    leaves out is not sent either. A timeout's ``TimeoutError`` comes as a last error part."""

    seq: int
    kind: CodePartKind
    text: str | None = None
    result: MimeBundle | None = None
    error: CodeError | None = None


class StreamRef(Params, kw_only=True):
    stream_id: StreamId


class RunCancelled(Result, kw_only=True):
    #: False: no run of that stream was under way (it had ended, or never came).
    cancelled: bool


class CreateContextParams(Params, kw_only=True):
    language: Language = DEFAULT_LANGUAGE
    #: The kernel's working directory (``~`` and relative paths: under the home); omitted: the
    #: home.
    cwd: Annotated[str, msgspec.Meta(min_length=1, max_length=4096)] | None = None


class CodeContext(Result, kw_only=True):
    id: str
    language: str
    #: Its working directory, as an absolute path on the machine.
    cwd: str


class CodeContextList(Result, kw_only=True):
    contexts: list[CodeContext]
    #: The languages the machine has a kernel for.
    languages: list[str]


class ContextRef(Params, kw_only=True):
    context_id: ContextId


class ContextDeleted(Result, kw_only=True):
    id: str
    #: False: there was no such context.
    deleted: bool


class ContextInterrupted(Result, kw_only=True):
    id: str
    #: False: nothing was running in it.
    interrupted: bool


_CODE = (DaemonUnavailable, DaemonTimeout, InvalidParams, ToolError)

CODE_RUN = MethodSpec(
    "tool.code.run",
    CodeRunParams,
    CodeRunResult,
    "Run code in a context's kernel; its results, output and error once it is done.",
    (*_CODE, NotFound, LanguageUnavailable, KernelDied, CodeContextsLimit, BadPath),
    wakes="exec",
)
CODE_RUN_STREAM = MethodSpec(
    "tool.code.runStream",
    CodeRunStreamParams,
    CodeRunResult,
    "tool.code.run, with each part of its output published as it happens (CodeRunPart).",
    CODE_RUN.errors,
    wakes="exec",
)
CODE_CANCEL_RUN = MethodSpec(
    "tool.code.cancelRun",
    StreamRef,
    RunCancelled,
    "End a streamed run whose caller left: interrupted (SIGINT) if it runs, never started if "
    "it waits for its context; the context keeps its state.",
    _CODE,
)
CODE_CREATE_CONTEXT = MethodSpec(
    "tool.code.createContext",
    CreateContextParams,
    CodeContext,
    "Start a kernel of a language in a working directory: a new context.",
    (*_CODE, LanguageUnavailable, CodeContextsLimit, BadPath),
    wakes="exec",
)
CODE_LIST_CONTEXTS = MethodSpec(
    "tool.code.listContexts", NoParams, CodeContextList, "The machine's code contexts.", _CODE
)
CODE_RESTART_CONTEXT = MethodSpec(
    "tool.code.restartContext",
    ContextRef,
    CodeContext,
    "Restart a context's kernel: its state is cleared.",
    (*_CODE, NotFound),
    wakes="exec",
)
CODE_DELETE_CONTEXT = MethodSpec(
    "tool.code.deleteContext",
    ContextRef,
    ContextDeleted,
    "Shut a context's kernel down and forget the context.",
    _CODE,
    wakes="exec",
)
CODE_INTERRUPT = MethodSpec(
    "tool.code.interrupt",
    ContextRef,
    ContextInterrupted,
    "Interrupt what runs in a context (SIGINT, as Jupyter does); its state is kept.",
    (*_CODE, NotFound),
    wakes="exec",
)

CODE_METHODS: tuple[AnySpec, ...] = (
    CODE_RUN,
    CODE_RUN_STREAM,
    CODE_CANCEL_RUN,
    CODE_CREATE_CONTEXT,
    CODE_LIST_CONTEXTS,
    CODE_RESTART_CONTEXT,
    CODE_DELETE_CONTEXT,
    CODE_INTERRUPT,
)
