"""Benchmark 37: what a CLI call costs beyond the call itself, and what each service's import
costs. A stub of the gateway on this host's loopback (a thread of the benchmark's process,
answering ``machines.list`` with one machine on ``/rpc`` and ``machines.execStream`` with one
output chunk and its result on ``/rpc/stream``, at once) takes, interleaved so that all see the
same load: ``fleet machines list`` and ``fleet machines exec M -- true``, each against the floor
of any command, a bare Python process making the same request with urllib (and reading the
whole answer); then the CPU (user + sys) of importing each service's ``__main__`` against
``python -c pass``. Medians of N runs each. Targets: each call within 1.5x of its floor, each
import within 0.4 s.

``python -m bench.cli_start serve`` serves the stub alone (its URL on stdout, until Ctrl-C),
to time the commands by hand (``/usr/bin/time -v``, ``python -X importtime -m fleet ...``).
"""

from __future__ import annotations

import contextlib
import http.server
import os
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime

import msgspec

from bench.common import Figure, Report, temp_dir
from bench.stack import FLEET
from bench.startup import BARE, PYTHON, SERVICES, _cpu, _medians, _wall
from contracts.daemon_rpc import ExecCommandResult, OutputChunk
from contracts.gateway_live import RPC_STREAM_PATH, SSE_OUTPUT, SSE_RESULT
from contracts.gateway_types import MachineList
from contracts.models import Machine
from contracts.sse import frame
from contracts.status import MachineStatus

MACHINE_ID = "m-0123456789abcdef"
TOKEN = "bench-cli-start-token"
#: The floor of a command: the one request, its whole answer read, and nothing else.
RAW_CALL = """
import json, os, sys, urllib.request as u
path, method = sys.argv[1:3]
body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": {}}).encode()
req = u.Request(os.environ["FLEET_URL"] + path, data=body, headers={
    "Authorization": "Bearer " + os.environ["FLEET_TOKEN"], "Content-Type": "application/json"})
assert b"result" in u.urlopen(req, timeout=30).read()
"""


def _answer(result: msgspec.Struct) -> bytes:
    return msgspec.json.encode({"jsonrpc": "2.0", "id": 1, "result": result})


def _bodies() -> tuple[bytes, bytes]:
    """The stub's two answers: machines.list's JSON-RPC response, machines.execStream's
    server-sent events (one chunk of output, then the result)."""
    now = datetime.now(UTC)
    machine = Machine(id=MACHINE_ID, instance_id="i-0123456789abcdef", provider="local",
                      status=MachineStatus.READY, status_reason="", created_at=now,
                      updated_at=now)  # fmt: skip
    listed = _answer(MachineList(machines=[machine]))
    chunk = OutputChunk(seq=0, stream="stdout", data="")
    done = ExecCommandResult(exit_code=0, stdout="", stderr="")
    streamed = frame(SSE_OUTPUT, msgspec.json.encode(chunk)) + frame(SSE_RESULT, _answer(done))
    return listed, streamed


class _Stub(http.server.BaseHTTPRequestHandler):
    """The gateway as far as the two commands see it; every request answered at once."""

    protocol_version = "HTTP/1.1"  # as aiohttp's server: the client may keep the connection
    listed, streamed = _bodies()

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        stream = self.path == RPC_STREAM_PATH
        body = self.streamed if stream else self.listed
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream" if stream else "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass  # thousands of requests: none is news


@contextlib.contextmanager
def stub() -> Iterator[str]:
    """The stub served from a thread on a port the kernel gives: its base URL. A thread, not
    the event loop: the benchmark blocks on each command while the stub answers it."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Stub)
    thread = threading.Thread(target=server.serve_forever, name="cli-start-stub", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def _calls(report: Report, n: int, url: str) -> None:
    env = os.environ | {"FLEET_URL": url, "FLEET_TOKEN": TOKEN}
    fleet = [FLEET]  # the console script, as a user runs it
    argvs = {
        "raw list": [PYTHON, "-c", RAW_CALL, "/rpc", "machines.list"],
        "list": [*fleet, "machines", "list"],
        "raw exec": [PYTHON, "-c", RAW_CALL, RPC_STREAM_PATH, "machines.execStream"],
        "exec": [*fleet, "machines", "exec", MACHINE_ID, "--", "true"],
    }
    with temp_dir() as cwd:  # not the checkout: no .fleet-data token there to read
        got = _medians(n, {k: (lambda v=v: _wall(v, env, cwd)) for k, v in argvs.items()})
    for name, key in (("fleet machines list", "list"), ("fleet machines exec M -- true", "exec")):
        value, base = got[key], got[f"raw {key}"]
        report.add(Figure("37", f"{name}, wall (median)", value, "s", base,
                          "python + one urllib call", "<= 1.5x", value <= 1.5 * base))  # fmt: skip


def _imports(report: Report, m: int) -> None:
    probes = {"bare": lambda: _cpu(BARE)} | {
        s: (lambda s=s: _cpu([PYTHON, "-c", f"import services.{s}.__main__"])) for s in SERVICES
    }
    cpu = _medians(m, probes)
    for s in SERVICES:
        report.add(Figure("37", f"import services.{s}.__main__, CPU (median)", cpu[s], "s",
                          cpu["bare"], "python -c pass", "<= 0.4 s", cpu[s] <= 0.4))  # fmt: skip


async def run(report: Report, quick: bool) -> None:
    n, m = (11, 5) if quick else (31, 15)
    print(f"[37] CLI start against a stub gateway: {n} runs of each command; {m} of each "
          f"service's import ({', '.join(SERVICES)})")  # fmt: skip
    with stub() as url:
        _calls(report, n, url)
    _imports(report, m)
    report.note(f"37: medians of {n} runs of each command and {m} of each import; the stub "
                "answers in-process at once, so the figures are the CLI's own cost")  # fmt: skip


def _serve() -> None:
    with stub() as url:
        print(url, flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            threading.Event().wait()


if __name__ == "__main__":
    if sys.argv[1:] != ["serve"]:
        raise SystemExit("usage: python -m bench.cli_start serve")
    _serve()
