"""The machine's desktop: ``tool.desktop.*`` (contracts.daemon.desktop).

One display per machine. Its programs (daemon/desktop/programs.py) are the daemon's children,
each the leader of a process group of its own, with the environment every process of the
machine gets (daemon/processes/env.py) and ``DISPLAY``. What runs is written down in the display's
record (``~/.fleet/desktop/display.json``: each program's pid and start time), not kept in the
daemon's memory, so the next daemon of the machine (a handover, a self-update, the new
identity of a fork or a machine made from a memory snapshot) finds the same display and goes
on with it. A record whose X server is gone is no display; a program is only ever signalled
after its start time was checked (a pid that was reused is left alone).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import select
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

import msgspec
import structlog

from base import procinfo
from base.retry import Backoff, retry_until
from contracts.daemon import desktop as dd
from contracts.errors import DesktopNotRunning, DesktopUnavailable, InvalidParams, ToolError
from contracts.rpc.jsonrpc import NoParams, handles
from daemon.desktop import image as desktop_image, input as desktop_input, programs as dp
from daemon.processes.children import reap, signal_group
from daemon.processes.env import ProcessEnv

log = structlog.get_logger(__name__)

#: Under the home: the display's record and its programs' logs.
DESKTOP_DIR = ".fleet/desktop"
_RECORD = "display.json"
_STOP_GRACE_S = 5.0
_POLL_S = 0.05
#: The longest a screenshot after actions waits for the screen to settle.
SETTLE_MAX_S = 1.0
#: How long one xdotool run, or the browser's hand-over of a URL, may take.
_STEP_TIMEOUT_S = 15.0


class _Running(msgspec.Struct, kw_only=True):
    """A display's record: what runs, so that any daemon of the machine finds it."""

    display: str
    width: int
    height: int
    dpi: int
    fbdir: str
    #: Each program's (pid, start ticks), by name.
    procs: dict[str, tuple[int, int]]
    view_port: int | None = None
    view_only_port: int | None = None

    def alive(self, name: str) -> bool:
        pid, ticks = self.procs.get(name, (0, 0))
        if pid <= 0:
            return False
        reap(pid)  # our child that ended is a zombie until reaped
        return procinfo.is_alive(pid, ticks)


class Desktop:
    def __init__(self, *, home: Path, env: ProcessEnv, max_pixels: int) -> None:
        self._home = home
        self._dir = home / DESKTOP_DIR
        self._env = env
        self._max_pixels = max_pixels
        self._lock = asyncio.Lock()

    # --- the methods --------------------------------------------------------------------------
    @handles(dd.DESKTOP_START)
    async def start(self, p: dd.DesktopStartParams, _: None) -> dd.DesktopInfo:
        async with self._lock:
            running = self._running()
            if running is None:
                running = await self._start(p)
            return self._info(running)

    @handles(dd.DESKTOP_STOP)
    async def stop(self, _: NoParams, __: None) -> dd.DesktopInfo:
        async with self._lock:
            running = self._running()
            if running is not None:
                await self._stop(running)
                log.info("desktop.stopped", display=running.display)
            return self._info(None)

    @handles(dd.DESKTOP_GET)
    async def get(self, _: NoParams, __: None) -> dd.DesktopInfo:
        return self._info(self._running())

    @handles(dd.DESKTOP_SCREENSHOT)
    async def screenshot(self, p: dd.ScreenshotParams, _: None) -> dd.Screenshot:
        running = self._need()
        frame = await asyncio.to_thread(desktop_image.read_frame, self._fb(running))
        return await asyncio.to_thread(desktop_image.encode, frame, p.format, p.scale,
                                       self._max_pixels)  # fmt: skip

    @handles(dd.DESKTOP_ACT)
    async def act(self, p: dd.ActParams, _: None) -> dd.ActResult:
        running = self._need()
        for n, action in enumerate(p.actions):
            off = desktop_input.outside(action, running.width, running.height)
            if off is not None:
                raise InvalidParams(f"action {n} ({action.__struct_config__.tag}) is at "
                                    f"{off}, off the {running.width}x{running.height} screen",
                                    field=f"$.actions[{n}]")  # fmt: skip
        xdotool = self._program(dp.find(self._env().get("PATH")).input, dp.INPUT)
        env = self._env({"DISPLAY": running.display})
        for action in p.actions:
            await _run_step(xdotool, desktop_input.step(action), env)
        x, y = await _mouse(xdotool, env)
        shot = None
        if p.screenshot is not None:
            frame = await self._settled(running)
            shot = await asyncio.to_thread(desktop_image.encode, frame, p.screenshot.format,
                                           p.screenshot.scale, self._max_pixels)  # fmt: skip
        return dd.ActResult(done=len(p.actions), x=x, y=y, screenshot=shot)

    @handles(dd.DESKTOP_OPEN)
    async def open(self, p: dd.OpenParams, _: None) -> dd.Opened:
        async with self._lock:
            running = self._need()
            browser = self._program(dp.find(self._env().get("PATH")).browser, "chromium")
            argv = dp.browser_argv(browser, Path(running.fbdir) / "chromium", running.width,
                                   running.height, p.url)  # fmt: skip
            env = self._env({"DISPLAY": running.display})
            if running.alive("browser"):  # the running browser takes the URL (a new tab)
                helper = await asyncio.create_subprocess_exec(
                    *argv, env=env, cwd=self._home, stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                )  # fmt: skip
                await _wait_ended(helper, "the browser's hand-over of the URL")
            else:
                running.procs["browser"] = self._spawn("browser", argv, env)
                self._write(running)
                log.info("desktop.browser_started", pid=running.procs["browser"][0])
            return dd.Opened(url=p.url)

    # --- the display ----------------------------------------------------------------------------
    async def _start(self, p: dd.DesktopStartParams) -> _Running:
        programs = dp.find(self._env().get("PATH"))
        x_server = self._program(programs.x_server, dp.X_SERVER)
        self._dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        fbdir = Path(tempfile.mkdtemp(prefix="fleet-desktop-"))
        read, write = os.pipe()
        try:
            argv = dp.x_server_argv(x_server, write, fbdir, p)
            procs = {"x": self._spawn("x", argv, self._env(), pass_fds=(write,))}
            os.close(write)
            write = -1
            number = await asyncio.to_thread(_read_display, read, dd.START_TIMEOUT_S)
        finally:
            os.close(read)
            if write >= 0:
                os.close(write)
        running = _Running(display=f":{number}", width=p.width, height=p.height, dpi=p.dpi,
                           fbdir=str(fbdir), procs=procs)  # fmt: skip
        if number is None:
            await self._stop(running)
            raise ToolError(f"the X server did not start: {self._log_tail('x')}")
        env = self._env({"DISPLAY": running.display})
        if programs.window_manager is not None:
            running.procs["wm"] = self._spawn("wm", list(programs.window_manager), env)
        if programs.live_view:
            await self._start_view(running, programs, env)
        self._write(running)
        await asyncio.to_thread(desktop_image.warm)
        log.info("desktop.started", display=running.display, width=p.width, height=p.height,
                 live_view=running.view_port is not None)  # fmt: skip
        return running

    async def _start_view(self, running: _Running, programs: dp.Programs,
                          env: dict[str, str]) -> None:  # fmt: skip
        assert programs.vnc
        assert programs.bridge
        assert programs.novnc
        for port, name in dp.VNC_SOCKETS.items():
            socket = Path(running.fbdir) / name
            view_only = port == dd.VIEW_ONLY_PORT
            running.procs[f"vnc-{port}"] = self._spawn(
                f"vnc-{port}", dp.vnc_argv(programs.vnc, running.display, socket,
                                           view_only=view_only), env)  # fmt: skip
            running.procs[f"view-{port}"] = self._spawn(
                f"view-{port}", dp.bridge_argv(programs.bridge, programs.novnc, port, socket),
                env)  # fmt: skip
        if await _listening(list(dp.VNC_SOCKETS), dd.START_TIMEOUT_S):
            running.view_port, running.view_only_port = dd.VIEW_PORT, dd.VIEW_ONLY_PORT
        else:
            tail = self._log_tail(f"view-{dd.VIEW_PORT}")
            log.warning("desktop.live_view_unavailable", log=tail)

    async def _stop(self, running: _Running) -> None:
        live = [(n, pid, ticks) for n, (pid, ticks) in running.procs.items() if running.alive(n)]
        for _, pid, ticks in live:
            signal_group(pid, ticks, signal.SIGTERM)
        gone = asyncio.gather(*(_ended(running, n) for n, _, _ in live))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(gone, _STOP_GRACE_S)
        for name, pid, ticks in live:
            if running.alive(name):
                signal_group(pid, ticks, signal.SIGKILL)
        shutil.rmtree(running.fbdir, ignore_errors=True)
        with contextlib.suppress(FileNotFoundError):
            (self._dir / _RECORD).unlink()

    def _spawn(self, name: str, argv: list[str], env: dict[str, str],
               pass_fds: tuple[int, ...] = ()) -> tuple[int, int]:  # fmt: skip
        """Start ``argv`` as a process group of its own, its output in its log; (pid, ticks)."""
        logfile = os.open(self._dir / f"{name}.log",
                          os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)  # fmt: skip
        try:
            proc = subprocess.Popen(
                argv, env=env, cwd=self._home, stdin=subprocess.DEVNULL, stdout=logfile,
                stderr=logfile, start_new_session=True, pass_fds=pass_fds,
            )  # fmt: skip
        except OSError as exc:
            raise ToolError(f"{argv[0]} did not start: {exc}") from None
        finally:
            os.close(logfile)
        ticks = procinfo.start_ticks(proc.pid) or 0
        return proc.pid, ticks

    # --- the record -----------------------------------------------------------------------------
    def _running(self) -> _Running | None:
        """The display that runs, from its record (None: none, or its X server is gone)."""
        try:
            raw = (self._dir / _RECORD).read_bytes()
            running = msgspec.json.decode(raw, type=_Running)
        except (OSError, msgspec.DecodeError):
            return None
        return running if running.alive("x") else None

    def _need(self) -> _Running:
        running = self._running()
        if running is None:
            raise DesktopNotRunning("the machine's display does not run: "
                                    "machines.desktop.start it first")  # fmt: skip
        return running

    def _write(self, running: _Running) -> None:
        tmp = self._dir / f"{_RECORD}.tmp"
        tmp.write_bytes(msgspec.json.encode(running))
        tmp.replace(self._dir / _RECORD)

    def _info(self, running: _Running | None) -> dd.DesktopInfo:
        if running is None:
            return dd.DesktopInfo(running=False, width=0, height=0, dpi=0)
        return dd.DesktopInfo(
            running=True, width=running.width, height=running.height, dpi=running.dpi,
            display=running.display, browser=dp.find(self._env().get("PATH")).browser is not None,
            view_port=running.view_port, view_only_port=running.view_only_port,
        )  # fmt: skip

    def _fb(self, running: _Running) -> Path:
        return Path(running.fbdir) / "Xvfb_screen0"

    def _program(self, found: str | None, name: str) -> str:
        if found is None:
            raise DesktopUnavailable(f"this machine has no {name} (docs/desktop.md says which "
                                     "machines have the desktop's programs)",
                                     data={"missing": name})  # fmt: skip
        return found

    def _log_tail(self, name: str) -> str:
        try:
            with open(self._dir / f"{name}.log", "rb") as f:
                f.seek(0, os.SEEK_END)
                f.seek(max(0, f.tell() - 2000))
                return f.read().decode(errors="replace").strip()
        except OSError:
            return ""

    async def _settled(self, running: _Running) -> desktop_image.Frame:
        """The screen once two reads a moment apart show the same pixels (a click's repaint
        done), or as it is after ``SETTLE_MAX_S``."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + SETTLE_MAX_S
        frame = await asyncio.to_thread(desktop_image.read_frame, self._fb(running))
        while loop.time() < deadline:
            await asyncio.sleep(desktop_image.SETTLE_STEP_S)
            again = await asyncio.to_thread(desktop_image.read_frame, self._fb(running))
            if again.pixels == frame.pixels:
                return again
            frame = again
        return frame


async def _ended(running: _Running, name: str) -> None:
    """Once ``name`` of ``running`` has ended (reaped, if it is our child)."""

    async def gone() -> bool:
        return not running.alive(name)

    await retry_until(gone, backoff=Backoff(_POLL_S, _POLL_S, jitter=False))


def _read_display(fd: int, timeout_s: float) -> int | None:
    """The display number Xvfb writes on ``-displayfd`` once it accepts clients (None: it
    ended, or said nothing in time)."""
    got = b""
    while b"\n" not in got:
        ready, _, _ = select.select([fd], [], [], timeout_s)
        if not ready:
            return None
        chunk = os.read(fd, 64)
        if not chunk:
            return None
        got += chunk
    try:
        return int(got.split(b"\n", 1)[0])
    except ValueError:
        return None


async def _run_step(xdotool: str, step: desktop_input.Step, env: dict[str, str]) -> None:
    if not step.args:
        await asyncio.sleep(step.sleep_s)
        return
    proc = await asyncio.create_subprocess_exec(
        xdotool, *step.args, env=env, stdin=subprocess.PIPE if step.stdin else subprocess.DEVNULL,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        _, err = await asyncio.wait_for(proc.communicate(step.stdin), _STEP_TIMEOUT_S)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise ToolError(f"xdotool {step.args[0]} did not finish in {_STEP_TIMEOUT_S:g}s") from None
    if proc.returncode != 0:
        raise ToolError(f"xdotool {step.args[0]} failed: {err.decode(errors='replace')[:500]}")


async def _mouse(xdotool: str, env: dict[str, str]) -> tuple[int, int]:
    proc = await asyncio.create_subprocess_exec(
        xdotool, "getmouselocation", "--shell", env=env, stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    out, _ = await asyncio.wait_for(proc.communicate(), _STEP_TIMEOUT_S)
    where = dict(line.split("=", 1) for line in out.decode().split() if "=" in line)
    try:
        return int(where["X"]), int(where["Y"])
    except (KeyError, ValueError):
        return 0, 0


async def _wait_ended(proc: asyncio.subprocess.Process, what: str) -> None:
    try:
        await asyncio.wait_for(proc.wait(), _STEP_TIMEOUT_S)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise ToolError(f"{what} did not finish in {_STEP_TIMEOUT_S:g}s") from None


async def _listening(ports: list[int], timeout_s: float) -> bool:
    """Whether each of ``ports`` accepts connections on the loopback within ``timeout_s``."""

    async def accepts() -> bool:
        for port in ports:
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", port)
            except OSError:
                return False
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
        return True

    backoff = Backoff(_POLL_S, 0.5, jitter=False)
    return await retry_until(accepts, backoff=backoff, budget_s=timeout_s)
