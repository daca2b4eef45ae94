"""The TypeScript SDK (sdk/typescript) in a real browser: its built ESM bundle, loaded into
Debian's chromium (Playwright, as the console's tests drive it), against `fleet up`.

The page is a document of the gateway's own origin (its GET /healthz, under the gateway's
Content-Security-Policy); the browser's requests for ``/__sdk_test__/...`` on that origin are
answered by the test (``page.route``) with the SDK's dist/esm files. So the SDK's fetch and
WebSocket requests are same-origin, as for an app the gateway's host serves. (The document is
the gateway's, not a routed one: chromium's Local Network Access checks block a WebSocket to a
loopback address from a document that came from no address.) There the SDK takes its browser
paths: calls and the event stream through the page's fetch (GET /events read as server-sent
events, the token in its Authorization header), and a terminal through the page's own
WebSocket, which cannot send a header and so carries a single-use ``events.ticket`` in its URL
instead of the token."""

from __future__ import annotations

import mimetypes
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page, Request, Route

from contracts.bus.subjects import EventKind
from tests.browser import CHROMIUM, browser_page
from tests.e2e.conftest import FleetUp

#: The SDK's build (dist/) is shared with test_typescript_sdk.py's: one worker builds it.
pytestmark = pytest.mark.xdist_group("typescript_sdk")
PREFIX = "/__sdk_test__/"
#: Run in the page: the SDK's surface a browser app uses, each result reported back.
FLOW = """async ([url, token]) => {
  const { Fleet, FleetError } = await import("/__sdk_test__/esm/index.js");
  const out = { node: typeof process !== "undefined" };
  const fleet = new Fleet({ url, token });
  const inst = await fleet.instances.create({ name: "ts-sdk-browser" });
  out.instanceId = inst.id;
  const created = await fleet.machines.create({ instanceId: inst.id });
  const machine = await fleet.machines.waitReady(created.id, { timeoutMs: 300000 });
  out.machine = { id: machine.id, status: machine.status, instanceId: machine.instanceId };
  const r = await fleet.machines.exec(machine.id, ["echo", "hello from the browser"], {
    timeoutS: 60,
  });
  out.exec = [r.exitCode, r.stdout, r.stderr];
  const stop = new AbortController();
  const timer = setTimeout(() => stop.abort(), 120000);
  for await (const event of fleet.events({ machineId: machine.id, signal: stop.signal })) {
    out.event = {
      type: event.type,
      eventId: event.eventId,
      machineId: event.machineId,
      occurredAt: event.occurredAt,
    };
    break;
  }
  clearTimeout(timer);
  const terminal = await fleet.terminals.open(machine.id, { cols: 80, rows: 24 });
  terminal.write("echo term-$((6*7))\\n");
  let screen = "";
  const decoder = new TextDecoder();
  for await (const chunk of terminal) {
    screen += decoder.decode(chunk, { stream: true });
    if (screen.includes("term-42")) break;
  }
  out.terminal = screen.includes("term-42");
  await terminal.close();
  const err = await fleet.machines.get("m-0000000000000000").catch((e) => e);
  out.error = {
    isFleetError: err instanceof FleetError,
    code: err.code,
    name: err.name,
    httpStatus: err.httpStatus,
    retryable: err.retryable,
    message: String(err.message),
  };
  return out;
}"""


@pytest.fixture
def page(tmp_path: Path) -> Iterator[Page]:
    if not CHROMIUM.exists():
        pytest.fail(
            f"the SDK's browser test needs Debian's chromium at {CHROMIUM}: "
            "apt-get install -y chromium (.ci/run installs it)"
        )
    with browser_page(tmp_path / "chromium-profile") as b:
        try:
            yield b.page
        finally:
            print("\n".join(["--- the SDK's page:", *b.seen[-80:]]))
    assert b.errors == [], f"JavaScript errors in the SDK's page: {b.errors}"


def _serve(dist: Path) -> Callable[[Route], None]:
    """The route handler: the files of dist/ (never a path out of it)."""

    def handle(route: Route) -> None:
        path = route.request.url.split(PREFIX, 1)[1].split("?", 1)[0]
        file = (dist / path).resolve()
        if not file.is_relative_to(dist.resolve()) or not file.is_file():
            route.fulfill(status=404, body="not in dist/")
            return
        kind = mimetypes.guess_type(file.name)[0] or "application/octet-stream"
        if file.suffix == ".js":
            kind = "text/javascript"
        route.fulfill(status=200, content_type=kind, body=file.read_bytes())

    return handle


@pytest.mark.timeout(600)
def test_the_sdk_in_a_browser_against_a_live_stack(
    built: Path,
    shared_fleet_up: FleetUp,
    page: Page,
) -> None:
    """In chromium, from the gateway's origin: create an instance and a machine, wait for it,
    exec, read a typed event, a terminal's echo over the page's WebSocket (a ticket, never
    the token, in its URL), and a typed FleetError for a missing machine."""
    up = shared_fleet_up
    page.route(f"{up.url}{PREFIX}**", _serve(built))
    sockets: list[str] = []
    page.on("websocket", lambda ws: sockets.append(ws.url))
    requests: list[Request] = []
    page.on("request", lambda r: requests.append(r))  # Playwright wraps no builtin method
    page.goto(f"{up.url}/healthz")
    out = page.evaluate(FLOW, [up.url, up.token])

    assert out["node"] is False, "the page has a Node `process`: not a browser's runtime"
    machine = out["machine"]
    assert machine["status"] == "ready", out
    assert machine["instanceId"] == out["instanceId"], out
    assert out["exec"] == [0, "hello from the browser\n", ""], out
    event = out["event"]
    assert event is not None, f"no event for the machine: {out}"
    assert event["machineId"] == machine["id"], out
    assert event["type"] in {k.value for k in EventKind}, out
    assert isinstance(event["eventId"], str), out
    assert event["eventId"], out
    assert isinstance(event["occurredAt"], str), out
    assert event["occurredAt"], out
    # The browser's event stream is GET /events through fetch, read as server-sent events.
    streams = [(r.resource_type, r.headers.get("accept")) for r in requests if "/events" in r.url]
    assert ("fetch", "text/event-stream") in streams, streams
    assert out["terminal"] is True, out
    # The page's WebSocket: same origin, a ticket in its URL, never the token.
    ws_prefix = up.url.replace("http", "ws", 1) + f"/machines/{machine['id']}/sessions/"
    (socket,) = sockets
    assert socket.startswith(ws_prefix), sockets
    assert "ticket=" in socket, sockets
    assert up.token not in socket, sockets
    error = out["error"]
    assert error["isFleetError"] is True, out
    assert (error["code"], error["name"], error["httpStatus"], error["retryable"]) == (
        1004,
        "NotFound",
        404,
        False,
    ), out
    assert "m-0000000000000000" in error["message"], out
