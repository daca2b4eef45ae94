"""What the soak (tests/soak.py) runs inside each machine, with nothing but the standard library
(a machine's python3 has no fleetd dependencies): ``python3 soak_inside.py MODE``.

- ``sink``: listens on ``127.0.0.1:SINK_PORT`` (the machine's own loopback), greets each
  connection with the number of the last line it holds, then appends every line it is sent to
  ``~/soak/via-tcp.log`` and acknowledges it; a line that does not follow the one before is
  still kept, and said in ``~/soak/sink.events``.
- ``writer``: appends numbered, checksummed lines to ``~/soak/direct.log`` (each line's
  checksum chains the one before, so a line lost, repeated, torn or out of order breaks the
  chain) and sends each over one kept connection to the sink, waiting for its acknowledgement
  before the next. Started again (a machine's stop and start), it goes on from its file's last
  line, and sends the sink that line again if the sink missed only that one (the writer may
  have been ended between its write and its send). A connection that breaks is said in
  ``~/soak/writer.events`` and made again: inside a machine none should, but across a stop.
  Its every start is said there too: a machine never stopped starts it once.

The soak's own side reads both files back (``chain``) and compares them.
"""

from __future__ import annotations

import hashlib
import os
import socket
import sys
import time
from typing import Any

SINK_PORT = 8700
DEV_PORT = 8000
#: Seconds between two lines.
PERIOD_S = 0.2
#: The chain's value before line 0.
START = "start"


def link(prev: str, n: int) -> str:
    return hashlib.sha256(f"{prev}:{n}".encode()).hexdigest()[:16]


def line_of(prev: str, n: int) -> tuple[str, str]:
    h = link(prev, n)
    return f"{n} {h}\n", h


def chain(text: str) -> tuple[int, list[str]]:
    """How many lines ``text`` holds, and what breaks its chain (each problem names its line)."""
    problems: list[str] = []
    if text and not text.endswith("\n"):
        problems.append(f"a torn last line: {text.rsplit(chr(10), 1)[-1]!r}")
    lines = [line for line in text.split("\n") if line] if text else []
    prev = START
    for k, line in enumerate(lines):
        n, _, h = line.partition(" ")
        if n != str(k):
            what = "repeated" if n.isdigit() and int(n) < k else "lost"
            problems.append(f"line {k} is numbered {n!r}: {what} lines")
            break
        if h != link(prev, k):
            problems.append(f"line {k}'s checksum {h!r} does not follow line {k - 1}'s")
            break
        prev = h
    return len(lines), problems


def _last(path: str) -> tuple[int, str]:
    """The last whole line's number and checksum in ``path`` (-1, START: none)."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 256))
            tail = f.read().decode()
    except FileNotFoundError:
        return -1, START
    whole = [line for line in tail.split("\n")[:-1] if line]
    if not whole:
        return -1, START
    n, _, h = whole[-1].partition(" ")
    return int(n), h


def _say(path: str, what: str) -> None:
    with open(path, "a") as f:
        f.write(f"{time.time():.3f} {what}\n")


def sink(home: str) -> None:
    via, events = f"{home}/soak/via-tcp.log", f"{home}/soak/sink.events"
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("127.0.0.1", SINK_PORT))
    server.listen(1)
    while True:
        conn, _ = server.accept()
        last, _ = _last(via)
        with conn, conn.makefile("rwb", buffering=0) as io, open(via, "ab", buffering=0) as out:
            io.write(f"last {last}\n".encode())
            for raw in io:
                n = int(raw.split(b" ", 1)[0])
                if n != last + 1:
                    _say(events, f"line {n} after line {last}")
                out.write(raw)
                last = n
                io.write(f"ok {n}\n".encode())
        _say(events, f"connection ended after line {last}")


def _connect(events: str) -> socket.socket:
    while True:
        try:
            return socket.create_connection(("127.0.0.1", SINK_PORT), timeout=60)
        except OSError as exc:
            _say(events, f"sink not reached: {exc}")
            time.sleep(0.5)


def writer(home: str) -> None:
    direct, events = f"{home}/soak/direct.log", f"{home}/soak/writer.events"
    n, h = _last(direct)
    _say(events, f"started at line {n}")  # more than once: the machine lost its processes
    fd = os.open(direct, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    pending: str | None = None  # the line written and not yet acknowledged
    if n >= 0:
        pending = f"{n} {h}\n"
    while True:
        conn = _connect(events)
        try:
            io = conn.makefile("rwb", buffering=0)
            greeting = io.readline().decode().split()
            sink_last = int(greeting[1])
            if pending is not None and sink_last == n - 1:
                _send(io, pending, n)
            elif sink_last != n:
                _say(events, f"the sink holds line {sink_last}, the file line {n}")
            pending = None
            while True:
                line, h = line_of(h, n + 1)
                n += 1
                os.write(fd, line.encode())
                pending = line
                _send(io, line, n)
                pending = None
                time.sleep(PERIOD_S)
        except (OSError, ValueError, IndexError) as exc:
            _say(events, f"connection broke at line {n}: {exc!r}")
            conn.close()


def _send(io: Any, line: str, n: int) -> None:
    io.write(line.encode())
    ack = io.readline().decode().strip()
    if ack != f"ok {n}":
        raise ValueError(f"the sink answered {ack!r} to line {n}")


def main() -> None:
    home = os.path.expanduser("~")
    os.makedirs(f"{home}/soak/www", exist_ok=True)
    {"sink": sink, "writer": writer}[sys.argv[1]](home)


if __name__ == "__main__":
    main()
