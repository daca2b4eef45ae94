"""`fleet machines list` and `fleet machines exec`, the commands scripts run in loops, on a
blocking path: one HTTP/1.1 exchange (``fleet.client.blocking``), its JSON read by the standard
library; no asyncio, no msgspec, no method specs, so that a call starts about as fast as a bare
urllib call (bench 30).

A form this path does not take goes the full way (``entry.py``), which prints what it always
printed: ``--help``, a usage error, ``exec --json`` or ``--user root``, an instance given by its
name, an id of the wrong shape, and an answer that is an error before anything ran (refused,
unreachable, a wrong token: ``list`` only reads, and ``exec``'s command starts only once its
answer is a stream). Once an exec's stream began, what ends it is said here, as the full way
says it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from datetime import datetime

from contracts.daemon.exec_limits import DEFAULT_EXEC_TIMEOUT_S, MAX_EXEC_TIMEOUT_S
from contracts.gateway import wire_names as wire
from contracts.ids import INSTANCE_ID_RE, MACHINE_ID_RE
from fleet import DEFAULT_URL
from fleet.cli.defaults import (
    EXIT_API,
    EXIT_FAILED,
    EXIT_OK,
    EXIT_TIMEOUT,
    EXIT_UNREACHABLE,
    add_common_flags,
    default_token,
    error_text,
    split_remote,
    timed_out_text,
)
from fleet.cli.tables import machines_table
from fleet.client import (
    MAX_EVENT_LINE,
    STREAM_MARGIN_S,
    Broken,
    EventLines,
    EventTooLong,
    post,
)

TYPE_CHECKING = False  # typing's, without importing typing
if TYPE_CHECKING:
    from typing import Any, NoReturn

#: The most of machines.list's answer read (its machines' JSON; the gateway's own cap is lower).
MAX_ANSWER_BYTES = 64 * 1024 * 1024
#: A call's time limit, as ``FleetClient``'s default.
CALL_TIMEOUT_S = 60.0
_OUTPUT, _RESULT = wire.SSE_OUTPUT.encode(), wire.SSE_RESULT.encode()


def list_arguments(p: argparse.ArgumentParser) -> None:
    """`machines list`'s own arguments, for this path's parser and the full one alike."""
    p.add_argument("--instance")


def exec_arguments(p: argparse.ArgumentParser) -> None:
    """`machines exec`'s own arguments (its command follows ``--``)."""
    p.add_argument("machine_id")
    p.add_argument("--cwd", help="relative to the machine's home")
    p.add_argument("--timeout", type=float, help="seconds before the command is killed")
    p.add_argument("--user", choices=["root"],
                   help="run as root inside the machine (gvisor machines only)")  # fmt: skip


class _Declined(Exception):
    """Not a form this path takes: the full way runs it."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise _Declined(message)


def _parser() -> _Parser:
    flags = _Parser(add_help=False)
    add_common_flags(flags)
    top = _Parser(add_help=False, parents=[flags])
    machines = top.add_subparsers(dest="cmd", required=True).add_parser("machines", add_help=False)
    sub = machines.add_subparsers(dest="sub", required=True)
    list_arguments(sub.add_parser("list", add_help=False, parents=[flags]))
    exec_arguments(sub.add_parser("exec", add_help=False, parents=[flags]))
    return top


def run(argv: list[str]) -> int | None:
    """The command's exit code; None when this path does not take it."""
    ours, remote = split_remote(argv)
    try:
        args = _parser().parse_args(ours)
    except _Declined:
        return None
    url = args.url if hasattr(args, "url") else os.environ.get("FLEET_URL", DEFAULT_URL)
    if not url.startswith(("http://", "https://")):
        return None
    call = _Call(url, getattr(args, "token", None) or default_token())
    as_json = getattr(args, "json", False)
    if args.sub == "list":
        return _list(call, args.instance, as_json)
    if as_json or args.user or not remote or not MACHINE_ID_RE.fullmatch(args.machine_id):
        return None
    if args.timeout is not None and not 0 < args.timeout <= MAX_EXEC_TIMEOUT_S:
        return None  # the gateway's refusal, the full way's words
    return _exec(call, args.machine_id, remote, args.timeout, args.cwd)


class _Call:
    def __init__(self, url: str, token: str) -> None:
        self.url = url
        self.headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}

    def body(self, method: str, params: dict[str, object]) -> bytes:
        return json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}).encode()


def _list(call: _Call, instance: str | None, as_json: bool) -> int | None:
    if instance is not None and not INSTANCE_ID_RE.fullmatch(instance):
        return None  # a name: the full way finds its id
    body = call.body(wire.MACHINES_LIST, {} if instance is None else {"instanceId": instance})
    try:
        with post(call.url, wire.RPC_PATH, call.headers, body, CALL_TIMEOUT_S) as answer:
            raw = answer.read(MAX_ANSWER_BYTES) if answer.status == 200 else b""
    except TimeoutError:
        print(timed_out_text(call.url), file=sys.stderr)
        return EXIT_TIMEOUT
    except Broken:
        return None  # it only reads: the full way asks again, and says why it cannot
    try:
        machines = json.loads(raw)["result"]["machines"]
        text = (json.dumps(machines, ensure_ascii=False, separators=(",", ":")) if as_json
                else machines_table([WireView(m) for m in machines]))  # fmt: skip
    except (ValueError, LookupError, TypeError, AttributeError):
        return None  # an error, or an answer this path cannot read: the full way says it
    print(text)
    return EXIT_OK


def _exec(call: _Call, machine_id: str, argv: list[str], timeout_s: float | None,
          cwd: str | None) -> int | None:  # fmt: skip
    wait = timeout_s or DEFAULT_EXEC_TIMEOUT_S
    params: dict[str, object] = {"machineId": machine_id, "command": argv, "timeoutS": wait}
    if cwd is not None:
        params["cwd"] = cwd
    body = call.body(wire.MACHINES_EXEC_STREAM, params)
    try:
        with post(call.url, wire.RPC_STREAM_PATH, call.headers, body,
                  wait + STREAM_MARGIN_S) as answer:  # fmt: skip
            if answer.content_type != "text/event-stream":
                return None  # refused before its command started: the full way says why
            return _print_stream(answer.lines(MAX_EVENT_LINE))
    except TimeoutError:
        print(timed_out_text(call.url), file=sys.stderr)
        return EXIT_TIMEOUT
    except Broken as exc:
        if not exc.sent:
            return None  # nothing reached the gateway: the full way says why
        print(f"fleet: {exc}", file=sys.stderr)
        return EXIT_UNREACHABLE
    except EventTooLong as exc:
        print(f"fleet: {exc}", file=sys.stderr)
        return EXIT_UNREACHABLE


def _print_stream(lines: Any) -> int:
    events = EventLines()
    for raw in lines:
        ended = events.feed(raw)
        if ended is None or (data := ended[1]) is None:
            continue
        if ended[0] == _OUTPUT:
            stream, text = _chunk(data)
            out = sys.stderr if stream == "stderr" else sys.stdout
            out.write(text)
            out.flush()
        elif ended[0] == _RESULT:
            return _exec_result(data)
    return _the_full_ways_end(None)


def _chunk(data: bytes) -> tuple[str, str]:
    """An ``output`` event's (stream, text)."""
    with contextlib.suppress(ValueError):
        chunk = json.loads(data)
        if isinstance(chunk, dict) and isinstance(text := chunk.get("data"), str):
            return str(chunk.get("stream")), text
    raise Broken(f"an output event this client cannot read: {data[:200]!r}", sent=True)


def _exec_result(data: bytes) -> int:
    """The ``result`` event: the command's end; an error or an answer of another shape is
    decoded the full way's way."""
    with contextlib.suppress(ValueError):
        answer = json.loads(data)
        result = answer.get("result") if isinstance(answer, dict) else None
        if (
            isinstance(result, dict)
            and type(result.get("exitCode")) is int
            and all(type(result.get(k, False)) is bool for k in ("timedOut", "truncated"))
        ):
            return exec_ended(WireView(result))
    return _the_full_ways_end(data)


def _the_full_ways_end(data: bytes | None) -> int:
    """An answer that is an error (or none came): decoded by the specs, loaded only now, so
    that it is said in the full way's words and codes."""
    from contracts.errors import FleetError
    from contracts.gateway.live import MACHINES_EXEC_STREAM
    from contracts.rpc.jsonrpc import decode_result

    try:
        if data is None:
            raise FleetError("the stream ended without a result")
        return exec_ended(decode_result(MACHINES_EXEC_STREAM, data))
    except FleetError as exc:
        print(error_text(exc.code, exc.message), file=sys.stderr)
        return EXIT_API


def exec_ended(result: Any) -> int:
    """What a streamed command's end says on stderr, and fleet's exit code for it."""
    if result.timed_out:
        print("fleet: the command timed out and was killed", file=sys.stderr)
    if result.truncated:
        print("fleet: the output was cut at the daemon's output cap", file=sys.stderr)
    return command_exit(result.exit_code)


def command_exit(code: int) -> int:
    """fleet's exit code for a remote command's: its own, or ``EXIT_FAILED`` for one that is no
    exit status (a signal's, negative)."""
    return code if 0 <= code < 256 else EXIT_FAILED


class WireView:
    """An object of the API's JSON read by its model's names: ``status_reason`` reads
    ``statusReason`` (the models' camelCase renaming), a ``..._at`` time as a ``datetime``;
    a field the answer leaves out reads None."""

    __slots__ = ("_doc",)

    def __init__(self, doc: dict[str, Any]) -> None:
        self._doc = doc

    def __getattr__(self, name: str) -> Any:
        head, *rest = name.split("_")
        value = self._doc.get(head + "".join(w.capitalize() for w in rest))
        if name.endswith("_at") and isinstance(value, str):
            return datetime.fromisoformat(value)
        return value
