"""Servers a test runs inside a machine, with nothing but the standard library (a machine's
python3 has no fleetd dependencies): ``python3 machine_servers.py MODE [PORT]``. Each listens on
PORT (by default 0: a port the kernel gives), then prints ``listening <port>`` (the test reads
it from the process's output: nothing guesses a port).

- ``http``: GET /headers answers the request's headers as JSON, GET /big?n=N answers N bytes,
  GET /sw.js a script that claims a service worker scope of ``/`` (and clears the site's
  data), GET /plant a page that tries to set the platform's cookies (and cookies for every
  host under ``localhost``) by its headers and by script, GET /redirect?to=URL a 302 to URL,
  POST /echo answers its body, anything else a small page;
- ``ws``: a WebSocket echo server (RFC 6455: text and binary echoed, ping answered, close
  returned);
- ``upper``: raw TCP: every byte upper-cased back, and ``bye`` after the client's EOF (a
  protocol that needs the half-close);
- ``source``: raw TCP: reads a byte count on one line, sends that many bytes and closes
  (throughput).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import struct
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

PAGE = b"<html><body>hello from the machine</body></html>"
#: What a hostile page sets: the platform's preview cookie for every machine's previews and for
#: the whole origin, a platform-like session cookie, one with no name that a browser sends as
#: ``fleet_preview=...``, and a cookie of its own for every host under ``localhost``.
PLANTED = ("fleet_preview=planted; Path=/machines/", "fleet_preview=planted; Path=/",
           "__Host-fleet_session=planted; Path=/; Secure", "=fleet_preview=nameless; Path=/",
           "tenant=b; Path=/; Domain=localhost")  # fmt: skip
PLANT_PAGE = b"""<html><body>planted<script>
for (const c of ["fleet_preview=script; path=/machines/", "fleet_preview=script; path=/",
                 "fleet_preview=script; path=/; domain=localhost",
                 "tenant_script=b; path=/; domain=localhost"]) document.cookie = c;
document.title = "planted";
</script></body></html>"""
_WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


class Http(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    #: Headers and body go out in separate writes: without it, Nagle and the peer's delayed
    #: ACK add 40 ms to every kept-alive request.
    disable_nagle_algorithm = True

    def _answer(self, body: bytes, kind: str = "text/html") -> None:
        self.send_response(200)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        if self.path == "/headers":
            self._answer(json.dumps(dict(self.headers.items())).encode(), "application/json")
        elif self.path.startswith("/big?n="):
            self._answer(b"x" * int(self.path.split("=", 1)[1]), "application/octet-stream")
        elif self.path == "/sw.js":  # a page that wants more than its own path
            body = b"self.addEventListener('fetch', () => {});"
            self.send_response(200)
            self.send_header("Content-Type", "text/javascript")
            self.send_header("Service-Worker-Allowed", "/")
            self.send_header("Clear-Site-Data", '"*"')
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        elif self.path == "/plant":
            self.send_response(200)
            for line in PLANTED:
                self.send_header("Set-Cookie", line)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(PLANT_PAGE)))
            self.end_headers()
            self.wfile.write(PLANT_PAGE)
        elif self.path.startswith("/redirect?"):
            self.send_response(302)
            self.send_header("Location", parse_qs(urlsplit(self.path).query)["to"][0])
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif self.path == "/go":
            self.send_response(302)
            self.send_header("Location", "/headers")
            self.send_header("Content-Length", "0")
            self.end_headers()
        else:
            self._answer(PAGE)

    def do_POST(self) -> None:
        self._answer(self.rfile.read(int(self.headers["Content-Length"])), "text/plain")

    def log_message(self, format: str, *args: object) -> None:
        pass


async def _ws(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
    key = next(line.split(":", 1)[1].strip() for line in head.split("\r\n")
               if line.lower().startswith("sec-websocket-key:"))  # fmt: skip
    accept = base64.b64encode(hashlib.sha1((key + _WS_GUID).encode()).digest()).decode()  # noqa: S324
    head = ("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Accept: {accept}\r\n\r\n")  # fmt: skip
    writer.write(head.encode())
    while True:
        b0, b1 = await reader.readexactly(2)
        n = b1 & 0x7F
        if n == 126:
            (n,) = struct.unpack(">H", await reader.readexactly(2))
        elif n == 127:
            (n,) = struct.unpack(">Q", await reader.readexactly(8))
        mask = await reader.readexactly(4) if b1 & 0x80 else b"\0\0\0\0"
        data = bytes(c ^ mask[i % 4] for i, c in enumerate(await reader.readexactly(n)))
        opcode = b0 & 0x0F
        reply = 0xA if opcode == 0x9 else opcode
        size = (bytes([n]) if n < 126 else bytes([126]) + struct.pack(">H", n) if n < 65536
                else bytes([127]) + struct.pack(">Q", n))  # fmt: skip
        writer.write(bytes([0x80 | reply]) + size + data)
        await writer.drain()
        if opcode == 0x8:
            writer.close()
            return


async def _upper(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while data := await reader.read(65536):
        writer.write(data.upper())
        await writer.drain()
    writer.write(b"bye\n")
    await writer.drain()
    writer.close()


async def _source(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    line = await reader.readline()
    if not line.strip():  # a probe that connected and left
        writer.close()
        return
    left = int(line)
    block = bytes(256 * 1024)
    while left > 0:
        writer.write(block[: min(left, len(block))])
        left -= len(block)
        await writer.drain()
    writer.close()


def _listening(port: int) -> None:
    print(f"listening {port}", flush=True)


async def _serve(mode: str, port: int) -> None:
    handler = {"ws": _ws, "upper": _upper, "source": _source}[mode]
    server = await asyncio.start_server(handler, "127.0.0.1", port)
    _listening(server.sockets[0].getsockname()[1])
    async with server:
        await server.serve_forever()


def main() -> None:
    mode, port = sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 0
    if mode == "http":
        http = ThreadingHTTPServer(("127.0.0.1", port), Http)
        _listening(http.server_address[1])
        http.serve_forever()
    else:
        asyncio.run(_serve(mode, port))


if __name__ == "__main__":
    main()
