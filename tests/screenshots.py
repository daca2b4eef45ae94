"""The console's screenshots (``docs/screenshots/*.png``), made from the running console:

    .venv/bin/python -m tests.screenshots docs/screenshots

starts ``fleet up`` on free ports with a data dir of its own, makes demo data through the API
(two instances, platform and instance env vars, access tokens, a ready machine with a web
server listening), then drives the console in Debian's chromium (``tests/browser.py``) at a
fixed viewport: it sets a network policy, opens a terminal, runs notebook cells, forks the
machine, runs code, and saves one PNG per entry of ``SHOTS``. Every page is checked to show what
it should before it is shot, so a page that no longer draws fails the script (exit code 1), as
does a JavaScript error.
``tests/e2e/test_screenshots.py`` runs it into a tmp dir and checks ``SHOTS`` against the
console's pages and the screenshots the docs show.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import re
import sys
import tempfile
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from playwright.sync_api import Locator, Page, expect

from fleet.client import FleetClient
from tests.browser import CHROMIUM, WAIT_MS, browser_page
from tests.e2e.conftest import FleetUp, start_fleet_up
from tests.waiters import wait_until

#: Every screenshot is of the browser's viewport at this size (PNG files of 50-200 KB).
VIEWPORT = (1280, 800)
#: Screenshot name (``<name>.png``) -> the console module (services/gateway/static) it shows.
SHOTS = {
    "sign-in": "page-signin.js",
    "machines": "page-machines.js",
    "machine-detail": "page-machine-detail.js",
    "terminal": "terminal.js",
    "ports": "ports-panel.js",
    "desktop": "desktop-panel.js",
    "notebook": "notebook.js",
    "fork": "machine-actions.js",
    "instances": "page-instances.js",
    "env-vars": "page-env.js",
    "network": "page-network.js",
    "webhooks": "page-webhooks.js",
    "access-tokens": "page-tokens.js",
    "codemode": "page-codemode.js",
    "hosts": "page-hosts.js",
    "audit-log": "page-audit.js",
}
ENV = [  # name, value, for the demo instance (else the platform)
    ("HTTP_TIMEOUT", "30", False),
    ("GREETING", "hello from the platform", False),
    ("GREETING", "hello from demo", True),
    ("DATABASE_URL", "postgres://dev:s3cret@db:5432/app", True),
]
CODE = """\
instances = (await fleet.instances.list())["instances"]
print(len(instances), "instances:", ", ".join(i["name"] for i in instances))
machines = (await fleet.machines.list())["machines"]
{m["id"]: m["status"] for m in machines}
"""
TERMINAL_INPUT = ["echo hello from $(hostname)", "python3 --version", "ls -a ~"]
#: The Notebook's cells: state, output, an image made from bytes (no matplotlib), HTML.
NOTEBOOK = [
    "import math\nrows = [(n, math.factorial(n)) for n in range(1, 7)]\n"
    "print('computed', len(rows), 'rows')\nrows[-1]",
    "import struct, zlib\nfrom IPython.display import Image, display\n"
    "w, h = 240, 60\nraw = b''.join(b'\\0' + bytes(v for x in range(w) for v in "
    "(40 + x * 200 // w, 90 + y * 2, 220 - x * 120 // w)) for y in range(h))\n"
    "chunk = lambda t, d: struct.pack('>I', len(d)) + t + d + struct.pack('>I', "
    "zlib.crc32(t + d))\n"
    "display(Image(data=b'\\x89PNG\\r\\n\\x1a\\n' + chunk(b'IHDR', struct.pack('>IIBBBBB', w, h, "
    "8, 2, 0, 0, 0)) + chunk(b'IDAT', zlib.compress(raw)) + chunk(b'IEND', b'')))",
    "from IPython.display import HTML\nHTML('<table border=1><tr><th>n</th><th>n!</th></tr>' + "
    "''.join(f'<tr><td>{n}</td><td>{f}</td></tr>' for n, f in rows[-3:]) + '</table>')",
]


@dataclass(frozen=True)
class Demo:
    instance_id: str
    machine_id: str
    #: Where the machine's web server listens (inside the machine).
    port: int


async def make_demo(up: FleetUp) -> Demo:
    """Instances, env vars, tokens (one used), and a ready machine serving HTTP."""
    async with FleetClient(up.url, up.token) as fleet:
        demo = await fleet.create_instance("demo")
        await fleet.create_instance("api-service")
        for name, value, own in ENV:
            await fleet.set_env(name, value, demo.id if own else None)
        ci = await fleet.create_token("ci-runner", demo.id)
        await fleet.create_token("release-bot")
        machine = await fleet.create_machine(demo.id)
        await fleet.wait_for(machine.id, {"ready"}, timeout_s=180)
        # Port 0: the kernel's; it prints "Serving HTTP on 127.0.0.1 port N ..." once it listens.
        argv = ["python3", "-u", "-m", "http.server", "--bind", "127.0.0.1", "0"]
        await fleet.start_process(machine.id, argv, tag="web")
        said: list[int] = []

        async def listening() -> bool:
            logs = await fleet.process_logs(machine.id, tag="web")
            said[:] = [int(m[1]) for line in logs.lines if (m := re.search(r" port (\d+)", line))]
            return bool(said)

        await wait_until(listening, timeout=60, every=0.2)  # each check asks the machine
        port = said[0]
    async with FleetClient(up.url, ci.token) as as_ci:
        await as_ci.list_machines()  # the token's "last used"
    return Demo(demo.id, machine.id, port)


class Shooter:
    """The console in one tab; ``shot`` saves the viewport as ``<out>/<name>.png``."""

    def __init__(self, page: Page, up: FleetUp, out: Path) -> None:
        self.page, self.up, self.out = page, up, out
        self.made: list[str] = []

    def shot(self, name: str) -> None:
        if name not in SHOTS:
            raise ValueError(f"{name!r} is not in SHOTS")
        self.page.mouse.move(0, 0)  # no hover state in the picture
        self.page.screenshot(path=str(self.out / f"{name}.png"))
        self.made.append(name)

    def top_of(self, section: Locator) -> None:
        """Scroll so that ``section`` starts at the top of the viewport."""
        section.evaluate("(e) => e.scrollIntoView({block: 'start'})")

    def go(self, route: str) -> None:
        self.page.goto(f"{self.up.url}/{route}")


def sign_in(s: Shooter) -> None:
    s.go("")
    expect(s.page.get_by_test_id("signin-form")).to_be_visible()
    s.shot("sign-in")
    s.page.get_by_test_id("signin-token").fill(s.up.token)
    s.page.get_by_test_id("signin-submit").click()
    expect(s.page.get_by_test_id("live-status")).to_have_attribute("data-state", "live")


def machine_detail(s: Shooter, demo: Demo) -> None:
    s.go(f"#/machines/{demo.machine_id}")
    expect(s.page.get_by_test_id("machine-id")).to_have_text(demo.machine_id)
    ready = s.page.locator("[data-testid=timeline-event][data-type=ready]")
    expect(ready).to_have_count(1)
    effective = s.page.get_by_test_id("effective-env")
    expect(effective.locator("[data-name=GREETING]")).to_have_attribute("data-wins", "instance")
    s.shot("machine-detail")


#: New terminals opened before the script gives up on one showing its shell's prompt.
TERMINAL_TRIES = 3


def terminal(s: Shooter) -> None:
    rows = s.page.locator("[data-testid=terminal] .xterm-rows")
    tabs = s.page.get_by_test_id("terminal-tab")
    for attempt in range(1, TERMINAL_TRIES + 1):
        before = tabs.count()
        s.page.get_by_test_id("terminal-new").click()
        try:
            # The new terminal shown (not a reattached one's prompt), then its shell's prompt.
            expect(tabs.nth(before)).to_have_attribute("aria-selected", "true")
            expect(rows).to_contain_text("$", timeout=20_000)
            break
        except AssertionError:
            # Chromium drops a WebSocket when the host's network changes (the suite's Docker
            # tests add bridges all the time; tests/browser.py), and the console's terminal
            # does not reattach by itself: the page again, and a new terminal.
            if attempt == TERMINAL_TRIES:
                raise
            print(f"terminal: no prompt within 20 s (try {attempt}); loading the page again")
            s.page.reload()
            expect(s.page.get_by_test_id("machine-id")).to_be_visible()
    s.page.locator("[data-testid=terminal] .xterm").click()
    for line in TERMINAL_INPUT:
        s.page.keyboard.type(line)
        s.page.keyboard.press("Enter")
    expect(rows).to_contain_text("hello from ")
    expect(rows).to_contain_text("Python 3")
    expect(rows).to_contain_text(".fleet")
    s.top_of(s.page.get_by_test_id("machine-terminal"))
    s.shot("terminal")


def ports(s: Shooter, demo: Demo) -> None:
    expect(s.page.locator(f'[data-testid=port-row][data-port="{demo.port}"]')).to_be_visible()
    s.top_of(s.page.locator("section.card", has=s.page.get_by_test_id("ports-table")))
    s.shot("ports")


#: True once an image shows a browser's page: an eighth of its pixels pure white (an empty
#: display is black, a browser still loading is grey).
PAGE_SHOWN = """(img) => {
  if (!img.complete || !img.naturalWidth) return false;
  const c = document.createElement("canvas");
  [c.width, c.height] = [img.naturalWidth, img.naturalHeight];
  const g = c.getContext("2d");
  g.drawImage(img, 0, 0);
  const d = g.getImageData(0, 0, c.width, c.height).data;
  let white = 0;
  for (let i = 0; i < d.length; i += 4)
    if (d[i] === 255 && d[i + 1] === 255 && d[i + 2] === 255) white++;
  return white > d.length / 4 / 8;
}"""


def desktop(s: Shooter, demo: Demo) -> None:
    """The machine's display with its browser at the machine's web server."""
    url = f"http://127.0.0.1:{demo.port}/"
    done = s.up.cli("machines", "desktop", demo.machine_id, "--print", "--open", url)
    assert done.returncode == 0, done.stderr
    s.page.reload()
    screen = s.page.get_by_test_id("desktop-screen")
    expect(screen).to_have_attribute("src", re.compile("^data:image/png;base64,"))
    s.page.wait_for_function(PAGE_SHOWN, arg=screen.element_handle())
    s.top_of(s.page.get_by_test_id("machine-desktop"))
    s.shot("desktop")


def notebook(s: Shooter) -> None:
    cells = s.page.get_by_test_id("notebook-cell")
    for n, code in enumerate(NOTEBOOK):
        cells.nth(n).get_by_test_id("notebook-code").fill(code)
        cells.nth(n).get_by_test_id("notebook-run").click()
        expect(cells.nth(n)).to_have_attribute("data-state", "done")
    expect(cells.nth(0).get_by_test_id("notebook-text")).to_have_text("(6, 720)")
    expect(cells.nth(1).get_by_test_id("notebook-image")).to_be_visible()
    frame = cells.nth(2).frame_locator("iframe")
    expect(frame.locator("td").first).to_have_text("4")
    s.top_of(s.page.get_by_test_id("machine-notebook"))
    s.shot("notebook")


def fork(s: Shooter, demo: Demo) -> str:
    """Fork the machine from its page; the fork's id."""
    s.page.evaluate("window.scrollTo(0, 0)")
    s.page.get_by_test_id("action-fork").click()
    notice = s.page.get_by_test_id("notice")
    expect(notice).to_contain_text(f"Forked {demo.machine_id}")
    s.shot("fork")
    found = re.search(r"new machine (m-[0-9a-f]{16})", notice.inner_text())
    if found is None:
        raise AssertionError(f"no fork's id in {notice.inner_text()!r}")
    return found.group(1)


def network(s: Shooter, demo: Demo) -> None:
    s.go(f"#/network/{demo.instance_id}")
    expect(s.page.get_by_test_id("network-instance")).to_have_value(demo.instance_id)
    s.page.get_by_test_id("network-default-select").select_option("deny")
    s.page.get_by_test_id("network-allow").fill(
        "pypi.org\nfiles.pythonhosted.org\n*.github.com:443"
    )
    s.page.get_by_test_id("network-deny").fill("192.0.2.0/24")
    s.page.get_by_test_id("network-save").click()
    expect(s.page.get_by_test_id("network-applied")).to_have_text(
        "Applied to 1 of 1 running machine(s)."
    )
    s.page.evaluate("window.scrollTo(0, 0)")  # Save scrolled down; its notice is at the top
    s.shot("network")


def env_vars(s: Shooter, demo: Demo) -> None:
    s.go(f"#/env/{demo.instance_id}")
    expect(s.page.get_by_test_id("env-row")).to_have_count(3)
    expect(s.page.get_by_test_id("env-table")).not_to_contain_text("s3cret")  # masked
    s.shot("env-vars")


class _Receiver(BaseHTTPRequestHandler):
    """A webhook endpoint on this host that takes every event (204)."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length", "0")))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def webhooks(s: Shooter, demo: Demo, receiver: str) -> None:
    """An endpoint added from the page (its secret shown once), and its test event delivered."""
    s.go(f"#/webhooks/{demo.instance_id}")
    s.page.get_by_test_id("webhook-url").fill(receiver)
    s.page.get_by_test_id("webhook-events").fill("machine.ready machine.failed")
    s.page.get_by_test_id("webhook-create").click()
    expect(s.page.get_by_test_id("webhook-secret")).to_contain_text("whsec_")
    card = s.page.get_by_test_id("webhook")
    expect(card.get_by_test_id("webhook-state")).to_have_text("ok")
    card.get_by_test_id("webhook-test").click()
    delivered = card.locator('[data-testid=delivery-row][data-outcome="delivered"]')
    for _ in range(60):  # the test event's delivery follows its queueing by moments
        card.get_by_test_id("webhook-refresh").click()
        if delivered.count() >= 1:
            break
        s.page.wait_for_timeout(500)
    expect(delivered).to_have_count(1)
    s.shot("webhooks")


def instances(s: Shooter) -> None:
    s.page.get_by_test_id("nav-instances").click()
    expect(s.page.get_by_test_id("instance-row")).to_have_count(2)
    s.shot("instances")


def access_tokens(s: Shooter, demo: Demo) -> None:
    s.page.get_by_test_id("nav-tokens").click()
    expect(s.page.get_by_test_id("token-row")).to_have_count(2)
    s.page.get_by_test_id("token-name").fill("laptop")
    s.page.get_by_test_id("token-scope").select_option(demo.instance_id)
    s.page.get_by_test_id("token-create").click()
    expect(s.page.get_by_test_id("token-secret")).to_be_visible()
    ci = s.page.locator("[data-testid=token-row][data-name=ci-runner]")
    expect(ci.get_by_test_id("token-last-used")).not_to_have_text("never")
    s.shot("access-tokens")


def codemode(s: Shooter) -> None:
    s.page.get_by_test_id("nav-codemode").click()
    s.page.get_by_test_id("codemode-code").fill(CODE)
    s.page.get_by_test_id("codemode-run").click()
    expect(s.page.get_by_test_id("codemode-status")).to_have_text("ok")
    expect(s.page.get_by_test_id("codemode-logs")).to_contain_text("2 instances: ")
    s.top_of(s.page.get_by_test_id("codemode-run"))  # the run's events and its result card
    s.page.evaluate("window.scrollBy(0, -16)")
    s.shot("codemode")


def hosts(s: Shooter) -> None:
    s.page.get_by_test_id("nav-hosts").click()
    expect(s.page.get_by_test_id("host-row")).to_have_count(1)
    expect(s.page.get_by_test_id("host-state")).to_have_text("active")
    s.shot("hosts")


def machines(s: Shooter, demo: Demo, forked: str) -> None:
    s.page.get_by_test_id("nav-machines").click()
    for mid in (demo.machine_id, forked):
        row = s.page.locator(f'[data-testid=machine-row][data-machine-id="{mid}"]')
        expect(row.get_by_test_id("machine-status")).to_have_text("ready")
    s.shot("machines")


def audit_log(s: Shooter) -> None:
    s.page.get_by_test_id("nav-audit").click()
    expect(s.page.locator("[data-testid=audit-row][data-method='machines.fork']")).to_have_count(1)
    s.shot("audit-log")


def drive(s: Shooter, demo: Demo, receiver: str) -> None:
    """Every shot, in an order where each page has what it shows (the fork ready by Machines)."""
    sign_in(s)
    machine_detail(s, demo)
    terminal(s)
    ports(s, demo)
    desktop(s, demo)
    notebook(s)
    network(s, demo)
    env_vars(s, demo)
    webhooks(s, demo, receiver)
    instances(s)
    access_tokens(s, demo)
    s.go(f"#/machines/{demo.machine_id}")
    forked = fork(s, demo)
    codemode(s)
    hosts(s)
    machines(s, demo, forked)
    audit_log(s)


def screenshots(out: Path, work: Path) -> list[str]:
    """Start a stack in ``work``, make the demo, save every shot into ``out``; the names saved."""
    if not CHROMIUM.exists():
        raise SystemExit(f"screenshots need Debian's chromium at {CHROMIUM}")
    out.mkdir(parents=True, exist_ok=True)
    expect.set_options(timeout=WAIT_MS)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    receiver = f"http://127.0.0.1:{server.server_address[1]}/hook"
    up = start_fleet_up(work / "data", env={"FLEET_WEBHOOK_ALLOW_PRIVATE": "127.0.0.1/32"})
    try:
        demo = asyncio.run(make_demo(up))
        with browser_page(work / "chromium-profile", VIEWPORT) as b:
            s = Shooter(b.page, up, out)
            try:
                drive(s, demo, receiver)
            except BaseException:
                print("\n".join(["--- the console's page:", *b.seen[-80:]]), file=sys.stderr)
                raise
        if b.errors:
            raise AssertionError(f"JavaScript errors in the console: {b.errors}")
    finally:
        up.stop()
        server.shutdown()
        server.server_close()
    missing = sorted(set(SHOTS) - set(s.made))
    if missing:
        raise AssertionError(f"shots not made: {missing}")
    return s.made


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.screenshots", description=__doc__)
    parser.add_argument("out", type=Path, help="the folder for the PNG files")
    parser.add_argument(
        "--work", type=Path, help="the stack's data dir and the browser's profile go here "
        "(default: a temporary folder, removed at the end)"
    )  # fmt: skip
    args = parser.parse_args(argv)
    with contextlib.ExitStack() as stack:
        work = args.work or Path(stack.enter_context(tempfile.TemporaryDirectory("-shots")))
        made = screenshots(args.out, work)
    print(f"{len(made)} screenshots: {', '.join(made)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
