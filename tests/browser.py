"""The browser of the console's tests: Debian's chromium, headless, driven by Playwright.

Chromium fails the requests still waiting for a connection with ``net::ERR_NETWORK_CHANGED``
whenever an address appears or goes on any of the host's interfaces
(https://issues.chromium.org/issues/41465264). The suite changes them all the time: every
Docker network a test makes adds a bridge with an address. A page whose scripts were dropped
that way never starts, so a load during which chromium reports a network change is loaded again;
whatever else fails is left to fail.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from playwright.sync_api import Page, Request, Response, sync_playwright

CHROMIUM = Path("/usr/bin/chromium")
# Without these, chromium's background networking hangs on a closed network.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
WAIT_MS = 60_000
NETWORK_CHANGED = "net::ERR_NETWORK_CHANGED"
#: Loads of one URL before a test gives up on the host's network settling.
LOADS = 4


class HostNetworkKeptChanging(AssertionError):
    pass


def steady_loads(page: Page, errors: list[str]) -> list[str]:
    """Make ``page.goto`` load again (up to ``LOADS`` times) while chromium drops requests of a
    load because the host's network changed; the JavaScript ``errors`` of a dropped load are
    forgotten with it. Returns the URLs dropped so, over the page's life."""
    dropped: list[str] = []
    this_load: list[str] = []

    def failed(request: Request) -> None:
        if request.failure is not None and NETWORK_CHANGED in request.failure:
            dropped.append(request.url)
            this_load.append(request.url)

    page.on("requestfailed", failed)
    goto = page.goto

    def goto_steadily(url: str, **options: Any) -> Response | None:
        this_load.clear()
        before = len(errors)
        response = goto(url, **options)
        for _ in range(LOADS - 1):
            if not this_load:
                return response
            this_load.clear()
            del errors[before:]
            response = page.reload(**options)
        if this_load:
            raise HostNetworkKeptChanging(f"{LOADS} loads of {url} lost {this_load}")
        return response

    page.goto = goto_steadily  # type: ignore[method-assign]
    return dropped


@dataclass
class Browsed:
    page: Page
    #: The page's JavaScript errors (those of a load dropped and loaded again forgotten).
    errors: list[str] = field(default_factory=list)
    #: What the page did (responses, failed requests, console lines), for a failure's report.
    seen: list[str] = field(default_factory=list)
    #: URLs chromium dropped because the host's network changed.
    dropped: list[str] = field(default_factory=list)


@contextmanager
def browser_page(profile: Path, viewport: tuple[int, int] = (1360, 900)) -> Iterator[Browsed]:
    """A fresh page, in its own profile, whose loads ride out the host's network changes."""
    with sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(profile),
            executable_path=str(CHROMIUM),
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": viewport[0], "height": viewport[1]},
        )
        try:
            # A page of our own, not the startup tab chromium opens with the profile: that one
            # may still be navigating when the test's first goto runs.
            tab = context.new_page()
            tab.set_default_timeout(WAIT_MS)
            b = Browsed(tab)
            tab.on("pageerror", lambda exc: b.errors.append(str(exc)))
            tab.on("console", lambda msg: b.seen.append(f"console {msg.type}: {msg.text}"))
            tab.on(
                "requestfailed",
                lambda r: b.seen.append(f"failed {r.method} {r.url}: {r.failure}"),
            )
            tab.on("response", lambda r: b.seen.append(f"{r.status} {r.request.method} {r.url}"))
            b.dropped = steady_loads(tab, b.errors)
            yield b
        finally:
            context.close()
