"""The console tests' browser (tests/browser.py) against a real change of the host's network:
chromium drops a load's waiting requests when an address appears on any interface, as every
Docker network a test makes does; the page is loaded again, whole."""

from __future__ import annotations

import contextlib
import os
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.browser import NETWORK_CHANGED, browser_page

#: More module scripts than chromium's 6 connections to one host: most wait for a connection.
MODULES = 24
#: chromium reports an address change after its own delay (about 2 s on Linux).
CHROMIUM_NOTICES_S = 30.0


class HeldPage:
    """A page of MODULES module scripts; the first load's answers wait for ``release``."""

    def __init__(self, on_first_module: threading.Event) -> None:
        self.first_module = on_first_module
        self.release = threading.Event()
        self.loads = 0

    def handler(self) -> type[BaseHTTPRequestHandler]:
        served = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path == "/":
                    served.loads += 1
                    tags = "".join(f'<script type="module" src="/m{i}.js"></script>'
                                   for i in range(MODULES))  # fmt: skip
                    self.answer("text/html", f"<!doctype html><title>t</title>{tags}")
                    return
                served.first_module.set()
                if served.loads == 1:
                    served.release.wait(CHROMIUM_NOTICES_S)
                self.answer("text/javascript", "window.loaded = (window.loaded || 0) + 1;")

            def answer(self, kind: str, body: str) -> None:
                data = body.encode()
                self.send_response(200)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(data)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    self.wfile.write(data)  # a request chromium dropped is closed

            def log_message(self, *_: object) -> None:
                pass

        return Handler


@contextmanager
def served(page: HeldPage) -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), page.handler())  # a port the kernel gives
    port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        page.release.set()
        server.shutdown()
        server.server_close()
        thread.join(10)


@contextmanager
def address_added_when(event: threading.Event) -> Iterator[None]:
    """A bridge with an address (as Docker makes for each network), made on this host once
    ``event`` is set."""
    name = f"fltnc{os.getpid() % 100000}"

    def add() -> None:
        if event.wait(CHROMIUM_NOTICES_S):
            ip = ["ip", "link", "add", name, "type", "bridge"]
            subprocess.run(ip, check=True)
            subprocess.run(["ip", "addr", "add", "198.18.77.1/32", "dev", name], check=True)
            subprocess.run(["ip", "link", "set", name, "up"], check=True)

    adder = threading.Thread(target=add, daemon=True)
    adder.start()
    try:
        yield
    finally:
        event.set()
        adder.join(CHROMIUM_NOTICES_S)
        subprocess.run(["ip", "link", "del", name], check=False, capture_output=True)


@pytest.mark.timeout(120)
def test_a_load_chromium_drops_for_a_network_change_is_loaded_again(tmp_path: Path) -> None:
    first_module = threading.Event()
    page = HeldPage(first_module)
    with (
        served(page) as url,
        address_added_when(first_module),
        browser_page(tmp_path / "profile") as b,
    ):

        def failed(request: object) -> None:
            if NETWORK_CHANGED in (getattr(request, "failure", None) or ""):
                page.release.set()  # the first load's waiting requests are dropped: answer

        b.page.on("requestfailed", failed)
        b.page.goto(url)
        loaded = b.page.evaluate("window.loaded")
        assert b.dropped, f"chromium dropped nothing, so this test tried nothing: {b.seen}"
        assert page.loads >= 2
        assert loaded == MODULES, b.seen
        assert b.errors == []
