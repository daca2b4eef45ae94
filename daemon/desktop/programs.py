"""The programs a desktop runs, found on the machine's ``PATH``, and how each is started.

- **The display**: ``Xvfb``, an X server with a screen in memory only, whose framebuffer is a
  file (``-fbdir``: daemon/desktop/image.py reads it), listening on its Unix socket only (no
  TCP), on the first free display number (``-displayfd`` says which).
- **A window manager**: ``matchbox-window-manager`` (each window fills the screen, as a
  kiosk's or a phone's: what an agent sees is one window, whole), else ``openbox``; none is
  needed for the rest to work.
- **The browser**: Chromium, as the machine's user, with its profile (and its cache) beside the
  framebuffer in the machine's ``/tmp``, which on a gVisor machine is in the sandbox's memory:
  Chromium keeps files open after deleting them (its metrics' memory-mapped files), which gVisor
  can checkpoint in its own memory but not on the home's file system, so a profile in the home
  would make every pause and fork with memory fail. Its flags: no GPU (there is none), no
  first-run pages, none of its background traffic (updates, sync, safe browsing lists, metrics),
  shared memory in ``/tmp`` (a machine's ``/dev/shm`` may be small or missing), and
  ``--no-sandbox``: Chromium's own sandbox needs user namespaces or a set-user-ID helper, which
  a machine's seccomp filter and ``no_new_privs`` refuse; the machine's sandbox (namespaces,
  seccomp and cgroup, or gVisor's kernel) is the boundary around it and everything else the
  machine runs (docs/desktop.md).
- **The live view**: ``x11vnc`` (one that takes input and one ``-viewonly``) behind
  ``websockify``, which serves noVNC's page and carries its websocket. Each x11vnc listens on a
  Unix socket in the display's private directory and on no TCP port: a port of the machine's
  loopback is reached by a ``ports`` tunnel or preview, and a VNC server there, which asks no
  password, would give that token the mouse and keyboard that only ``machines:exec`` may drive.
  The port that takes input is the websockify of ``VIEW_PORT``, which the gateway opens only for
  ``machines:exec`` (services/gateway/streams/tunnels.py ``port_scope``). ``-rfbport 0`` alone
  is not enough: libvncserver still listens on ``[::]:5900`` unless ``-rfbportv6 0`` says no.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from contracts.daemon import desktop as dd

X_SERVER = "Xvfb"
INPUT = "xdotool"
WINDOW_MANAGERS: tuple[tuple[str, ...], ...] = (
    ("matchbox-window-manager", "-use_titlebar", "no", "-use_cursor", "yes"),
    ("openbox",),
)
BROWSERS = ("chromium", "chromium-browser", "google-chrome")
VNC_SERVER = "x11vnc"
WEBSOCKET_BRIDGE = "websockify"
NOVNC_DIRS = ("/usr/share/novnc",)
#: The VNC servers' Unix sockets, in the display's directory, behind the live view's ports.
VNC_SOCKETS = {dd.VIEW_PORT: "vnc-input.sock", dd.VIEW_ONLY_PORT: "vnc-view.sock"}
BROWSER_FLAGS = (
    "--no-sandbox", "--test-type", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
    "--no-default-browser-check", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--disable-breakpad",
    "--disable-default-apps", "--disable-extensions", "--metrics-recording-only",
    "--safebrowsing-disable-auto-update", "--password-store=basic", "--use-mock-keychain",
    "--disable-features=Translate,MediaRouter,OptimizationHints",
    "--hide-crash-restore-bubble", "--noerrdialogs", "--start-maximized",
)  # fmt: skip


@dataclass(frozen=True)
class Programs:
    """What this machine has of the desktop's programs (None: missing)."""

    x_server: str | None
    input: str | None
    window_manager: tuple[str, ...] | None
    browser: str | None
    vnc: str | None
    bridge: str | None
    novnc: str | None

    @property
    def live_view(self) -> bool:
        return None not in (self.vnc, self.bridge, self.novnc)


def find(path: str | None) -> Programs:
    """The desktop's programs on ``path`` (the machine's commands' ``PATH``)."""

    def which(name: str) -> str | None:
        return shutil.which(name, path=path)

    wm = next(((found, *wm[1:]) for wm in WINDOW_MANAGERS if (found := which(wm[0]))), None)
    browser = next((found for b in BROWSERS if (found := which(b))), None)
    novnc = next((d for d in NOVNC_DIRS if (Path(d) / "vnc.html").is_file()), None)
    return Programs(x_server=which(X_SERVER), input=which(INPUT), window_manager=wm,
                    browser=browser, vnc=which(VNC_SERVER), bridge=which(WEBSOCKET_BRIDGE),
                    novnc=novnc)  # fmt: skip


def x_server_argv(program: str, fd: int, fbdir: Path, p: dd.DesktopStartParams) -> list[str]:
    return [program, "-displayfd", str(fd), "-screen", "0", f"{p.width}x{p.height}x24",
            "-dpi", str(p.dpi), "-fbdir", str(fbdir), "-nolisten", "tcp", "-noreset"]  # fmt: skip


def browser_argv(program: str, profile: Path, width: int, height: int, url: str) -> list[str]:
    return [program, *BROWSER_FLAGS, f"--user-data-dir={profile}",
            f"--disk-cache-dir={profile / 'cache'}",
            f"--window-size={width},{height}", "--window-position=0,0", "--", url]  # fmt: skip


def vnc_argv(program: str, display: str, socket: Path, *, view_only: bool) -> list[str]:
    argv = [program, "-display", display, "-unixsock", str(socket), "-rfbport", "0",
            "-rfbportv6", "0", "-noipv6", "-forever", "-shared", "-nopw", "-quiet",
            "-noxdamage"]  # fmt: skip
    # A viewer of the view-only server sets no clipboard either: pasted, it would be input.
    return [*argv, "-viewonly", "-seldir", "send"] if view_only else argv


def bridge_argv(program: str, novnc: str, port: int, socket: Path) -> list[str]:
    return [program, "--web", novnc, f"--unix-target={socket}", f"127.0.0.1:{port}"]
