"""Sessions: a command that the daemon keeps running with or without clients, and its
scrollback: on a pseudo-terminal (an interactive session), or on pipes (``pty: false``: a
command whose stdout and stderr stay apart and whose stdin may be closed).

Daemon methods (``session.*``) open, list, resize, signal, write to and close sessions;
``session.attach`` opens a byte stream (contracts.daemon.streams) to one. Both directions carry
*records*, so that different things share one ordered stream: ``kind (1 byte) length (4
bytes, big-endian) payload``.

- The daemon sends ``OUTPUT`` (terminal bytes, or a pipe session's stdout), ``STDERR`` (a pipe
  session's stderr) and ``NOTICE``, a JSON object
  (``{"type":"dropped","bytes":N}``: output the client was too slow for and will never see).
  The stream's end frame carries the command's exit code (128 + n for a signal n).
- The platform sends ``INPUT`` (the bytes a user types) and ``RESIZE`` (columns and rows, two
  big-endian 16-bit numbers), so a resize lands exactly between the keys typed before and
  after it. An attach without ``input_records`` takes raw typed bytes instead, and its resizes
  come by ``session.resize``.
"""

from __future__ import annotations

import struct
from enum import IntEnum
from typing import Annotated

import msgspec

from contracts.daemon.streams import DEFAULT_CHUNK, MAX_CHUNK
from contracts.rpc.jsonrpc import Params, Result
from contracts.validation import check_env_name

#: What a session keeps of its output for the next client that attaches.
SCROLLBACK_BYTES = 1024 * 1024
#: Sessions per machine, running or exited but not yet closed.
MAX_SESSIONS = 32
#: A client that takes nothing for this long while the session waits on it is no longer waited
#: for (and told how much it missed), so one stalled viewer cannot freeze a session for others.
STALL_S = 2.0

#: The receive window of an attach stream, each side: small, so a keystroke never queues
#: behind much output.
ATTACH_WINDOW = 8 * DEFAULT_CHUNK

#: The longest ``session.write`` waits for a command to take its input, then answers the bytes
#: it took: a command that reads nothing holds no call for ever.
WRITE_WAIT_S = 5.0
#: The longest ``timeoutS`` a session may be given (a day).
MAX_TIMEOUT_S = 86_400
#: The signals ``session.signal`` sends (POSIX's numbers, as ``kill -l`` lists them).
SIGNALS = frozenset({1, 2, 3, 9, 10, 12, 14, 15, 18, 19, 20})

SessionId = Annotated[str, msgspec.Meta(pattern=r"^[0-9a-f]{16}$")]
Cols = Annotated[int, msgspec.Meta(ge=1, le=1000)]
Rows = Annotated[int, msgspec.Meta(ge=1, le=1000)]
SessionName = Annotated[
    str, msgspec.Meta(min_length=1, max_length=64, pattern=r"^[^\x00-\x1f\x7f]+$")
]
#: An argument as long as Linux takes one (MAX_ARG_STRLEN: a ``bash -c`` script of 128 KiB);
#: ``sessions.list`` shows the first LISTED_COMMAND_BYTES of a command.
MAX_ARG_BYTES = 128 * 1024
Argv = Annotated[list[Annotated[str, msgspec.Meta(max_length=MAX_ARG_BYTES)]],
                 msgspec.Meta(min_length=1, max_length=256)]  # fmt: skip


class SessionOpenParams(Params, kw_only=True):
    #: argv, never run through a shell; default: the user's login shell.
    command: Argv | None = None
    cwd: str | None = None
    cols: Cols = 80
    rows: Rows = 24
    name: SessionName | None = None
    env: dict[str, str] | None = None
    #: False: the command runs on pipes, its stderr apart from its stdout (no terminal).
    pty: bool = True
    #: With ``pty`` false: False gives the command an empty stdin (as ``< /dev/null``).
    stdin: bool = True
    #: The command's process group is killed this long after it started.
    timeout_s: Annotated[float, msgspec.Meta(gt=0, le=MAX_TIMEOUT_S)] | None = None

    def __post_init__(self) -> None:
        if self.command is not None and not self.command[0]:
            raise ValueError("field `command` must start with a program name")
        # No argv, environment or path holds a NUL: the daemon could not start the process.
        if self.command is not None and any("\x00" in arg for arg in self.command):
            raise ValueError("field `command` must not hold a NUL character")
        if self.cwd is not None and "\x00" in self.cwd:
            raise ValueError("field `cwd` must not hold a NUL character")
        for name, value in (self.env or {}).items():
            check_env_name(name, "env")
            if "\x00" in value:
                raise ValueError(f"field `env` value of {name} must not hold a NUL character")


class SessionInfo(Result, kw_only=True):
    session_id: str
    name: str
    command: list[str]
    cwd: str
    cols: int
    rows: int
    pid: int
    #: Unix time the command started.
    started_at: float
    running: bool
    #: Once it exited: its code (128 + n for signal n).
    exit_code: int | None = None
    #: Clients attached right now.
    attached: int = 0
    #: Bytes of output the session has produced in all.
    output_bytes: int = 0
    #: ``sessions.list`` shows at most LISTED_COMMAND_BYTES of a command: True when this one
    #: was cut there (``sessions.open`` answered it whole).
    command_truncated: bool = False
    #: False: a pipe session (``SessionOpenParams.pty``).
    pty: bool = True


#: The bytes of a session's command that ``sessions.list`` shows (each argument counted with
#: one byte more): a list of MAX_SESSIONS sessions always fits in one answer.
LISTED_COMMAND_BYTES = 4096


def listed(info: SessionInfo) -> SessionInfo:
    """``info`` as ``sessions.list`` shows it: its command cut to LISTED_COMMAND_BYTES."""
    shown: list[str] = []
    room = LISTED_COMMAND_BYTES
    for arg in info.command:
        size = len(arg.encode()) + 1
        if size > room:
            cut = arg.encode()[: max(room - 1, 0)].decode(errors="ignore")
            shown += [cut] if cut else []
            return msgspec.structs.replace(info, command=shown, command_truncated=True)
        shown.append(arg)
        room -= size
    return info


class SessionList(Result, kw_only=True):
    sessions: list[SessionInfo]


class SessionRef(Params, kw_only=True):
    session_id: SessionId


class SessionResizeParams(Params, kw_only=True):
    session_id: SessionId
    cols: Cols
    rows: Rows


class SessionAttachParams(Params, kw_only=True):
    session_id: SessionId
    chunk_size: Annotated[int, msgspec.Meta(ge=1024, le=MAX_CHUNK)] = DEFAULT_CHUNK
    window: Annotated[int, msgspec.Meta(ge=1024, le=16 * MAX_CHUNK)] = ATTACH_WINDOW
    #: The platform's side carries records (INPUT, RESIZE), not raw typed bytes.
    input_records: bool = False


class SessionSignalParams(Params, kw_only=True):
    session_id: SessionId
    #: Sent to the session's process group: one of SIGNALS (9: SIGKILL, 15: SIGTERM, ...).
    signal: int

    def __post_init__(self) -> None:
        if self.signal not in SIGNALS:
            raise ValueError(f"field `signal` must be one of {sorted(SIGNALS)}")


class SessionSignaled(Result, kw_only=True):
    #: False: the session's command had exited already.
    signaled: bool


class SessionWriteParams(Params, kw_only=True):
    session_id: SessionId
    #: Bytes for the command's stdin (its terminal's input, on a pty); base64 in JSON.
    data: Annotated[bytes, msgspec.Meta(max_length=MAX_CHUNK)]
    #: Then close a pipe session's stdin (the command reads end of file).
    eof: bool = False


class SessionWritten(Result, kw_only=True):
    #: Bytes the command's input took (0 once it closed its stdin or exited).
    written: int


class SessionClosed(Result, kw_only=True):
    #: False: there was no such session (closed already).
    closed: bool


# --- records on an attach stream -------------------------------------------------------------
class RecordKind(IntEnum):
    OUTPUT = 0
    NOTICE = 1
    INPUT = 2
    RESIZE = 3
    STDERR = 4


#: What each side may send.
FROM_MACHINE = frozenset({RecordKind.OUTPUT, RecordKind.STDERR, RecordKind.NOTICE})
FROM_PLATFORM = frozenset({RecordKind.INPUT, RecordKind.RESIZE})

_RECORD = struct.Struct(">BI")
_SIZE = struct.Struct(">HH")
RECORD_HEADER = _RECORD.size
#: The largest record a reader accepts.
MAX_RECORD = MAX_CHUNK


class Dropped(msgspec.Struct, tag_field="type", tag="dropped"):
    bytes: int


Notice = Dropped
_NOTICE = msgspec.json.Decoder(Notice)


def encode_record(kind: RecordKind, payload: bytes) -> bytes:
    return _RECORD.pack(kind, len(payload)) + payload


def encode_notice(notice: Notice) -> bytes:
    return encode_record(RecordKind.NOTICE, msgspec.json.encode(notice))


def encode_resize(cols: int, rows: int) -> bytes:
    return encode_record(RecordKind.RESIZE, _SIZE.pack(cols, rows))


class RecordError(ValueError):
    """Bytes that are not records."""


class RecordReader:
    """Records out of stream chunks (a record may span chunks); holds at most one record.
    Only the ``kinds`` the other side may send are taken."""

    def __init__(self, kinds: frozenset[RecordKind] = FROM_MACHINE) -> None:
        self._buf = bytearray()
        self._kinds = kinds

    def feed(self, chunk: bytes) -> list[tuple[RecordKind, bytes]]:
        self._buf += chunk
        out: list[tuple[RecordKind, bytes]] = []
        while len(self._buf) >= RECORD_HEADER:
            kind, size = _RECORD.unpack_from(self._buf)
            if kind not in self._kinds or size > MAX_RECORD:
                raise RecordError(f"bad record header (kind {kind}, {size} bytes)")
            if len(self._buf) < RECORD_HEADER + size:
                break
            out.append((RecordKind(kind), bytes(self._buf[RECORD_HEADER : RECORD_HEADER + size])))
            del self._buf[: RECORD_HEADER + size]
        return out


def decode_resize(payload: bytes) -> tuple[int, int]:
    """The columns and rows of a ``RESIZE`` record, each 1-1000 (as ``session.resize``)."""
    if len(payload) != _SIZE.size:
        raise RecordError(f"a resize record holds {_SIZE.size} bytes, not {len(payload)}")
    cols, rows = _SIZE.unpack(payload)
    if not (1 <= cols <= 1000 and 1 <= rows <= 1000):
        raise RecordError(f"a terminal of {cols}x{rows} is out of range (1-1000 each)")
    return cols, rows


def decode_notice(payload: bytes) -> Notice:
    try:
        return _NOTICE.decode(payload)
    except msgspec.DecodeError as exc:
        raise RecordError(f"bad notice: {exc}") from None
