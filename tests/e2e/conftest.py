"""`fleet up` as a user runs it: a real process tree on ports it reports, driven through the CLI."""

from __future__ import annotations

import os
import selectors
import signal
import subprocess
import sys
import time
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from base.lifeline import die_with_parent
from fleet.up import banner_ports
from providers.local.supervision import exit_records
from tests.shared_servers import TEST_AUDIT_MAX_BYTES

FLEET = str(Path(sys.executable).with_name("fleet"))


@dataclass
class FleetUp:
    proc: subprocess.Popen[bytes]
    url: str
    token: str
    data_dir: Path
    banner: str
    #: The gateway's preview listener (machines' pages, never on the console's origin).
    preview_port: int = 0

    def cli(
        self, *args: str, timeout: float = 60, stdin: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "FLEET_URL": self.url, "FLEET_TOKEN": self.token}
        return subprocess.run(
            [FLEET, *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            input=stdin,
            check=False,
        )

    def stop(self, timeout: float = 60, killed: Collection[int] = ()) -> int:
        """Ctrl-C; its exit code once every daemon ended by itself (but those of ``killed``,
        the pids the test SIGKILLed itself)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)  # what Ctrl-C does
            self.proc.wait(timeout)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        assert_no_daemon_killed(self.data_dir, killed)
        return self.proc.returncode


def ok(result: subprocess.CompletedProcess[str]) -> str:
    """The stdout of a CLI run that must succeed; its exit code and both outputs if not."""
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    return result.stdout


def assert_no_daemon_killed(data_dir: Path, by_test: Collection[int] = ()) -> None:
    """From the local provider's exit records: every daemon archived or stopped with the stack
    ended by itself (exit code, or within its SIGTERM grace), none was SIGKILLed (but by the
    test: ``by_test``)."""
    killed = [
        r for r in exit_records(data_dir)
        if (r.get("endedBy") == "SIGKILL" or r.get("code") == -signal.SIGKILL)
        and r.get("pid") not in by_test
    ]  # fmt: skip
    assert not killed, f"daemons SIGKILLed: {killed}"


def read_until(proc: subprocess.Popen[bytes], marker: str, timeout: float = 60) -> str:
    """The process's stdout up to the line containing ``marker``. Raw reads on the fd: a
    buffered reader would hide lines it already holds from select()."""
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    sel = selectors.DefaultSelector()
    sel.register(fd, selectors.EVENT_READ)
    seen = b""
    deadline = time.monotonic() + timeout
    while marker.encode() not in seen:
        if not sel.select(timeout=max(0.0, deadline - time.monotonic())):
            break
        chunk = os.read(fd, 65536)
        if not chunk:
            break
        seen += chunk
    text = seen.decode(errors="replace")
    if marker not in text:
        raise AssertionError(f"no {marker!r} from fleet up; it printed:\n{text}")
    return text


def start_fleet_up(
    data_dir: Path,
    *extra: str,
    env: dict[str, str] | None = None,
    timeout: float = 60,
) -> FleetUp:
    """`fleet up` with a clean environment (no FLEET_* from the caller) plus ``env``, on ports
    the kernel gives (``--port 0``: tests run beside each other), read from its banner within
    ``timeout``."""
    env = (
        {k: v for k, v in os.environ.items() if not k.startswith("FLEET_")}
        | {"FLEET_AUDIT_MAX_BYTES": str(TEST_AUDIT_MAX_BYTES)}
        | (env or {})
    )
    argv = [FLEET, "up", "--port", "0"]
    # A test worker that dies (a timeout, a crash) stops it as Ctrl-C would.
    proc = subprocess.Popen(
        die_with_parent([*argv, "--data-dir", str(data_dir), *extra], signal.SIGINT),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        banner = read_until(proc, "Ctrl-C stops everything", timeout)
    except BaseException:
        proc.send_signal(signal.SIGINT)  # nobody else owns this process yet: never leak it
        proc.wait(60)
        if proc.stdout is not None:
            proc.stdout.close()
        raise
    token = (data_dir / "admin-token").read_text().strip()
    url, preview = banner_ports(banner)
    return FleetUp(proc, url, token, data_dir, banner, preview)


#: The TypeScript SDK's sources and its own node_modules (``./run test`` installs them).
SDK = Path(__file__).resolve().parents[2] / "sdk" / "typescript"


@pytest.fixture(scope="session")
def built() -> Path:
    """The TypeScript SDK, built (dist/: ESM, CommonJS, .d.ts) from its sources, once per
    worker: here, so that its two modules (test_typescript_sdk.py and its browser's, one xdist
    group: one worker, one at a time) share one build, and no build removes dist/ under the
    other's tests."""
    assert (SDK / "node_modules" / "typescript").is_dir(), (
        "sdk/typescript/node_modules is missing: `./run test` installs it"
    )
    done = subprocess.run(["node", "scripts/build.mjs"], cwd=SDK, capture_output=True,
                          text=True, timeout=300, check=False)  # fmt: skip
    said = f"{done.stdout}\n{done.stderr}"
    assert done.returncode == 0, f"the SDK's build exited {done.returncode}:\n{said}"
    return SDK / "dist"


@pytest.fixture
def fleet_up(tmp_path: Path) -> Iterator[FleetUp]:
    """A `fleet up` of the test's own, for a test that kills, restarts or reconfigures it, or
    that counts what every tenant has (every instance, the host's running machines): a test
    that only needs one running takes ``shared_fleet_up``."""
    # The sandboxed machines may read the test's repository (bare_repo) and nothing else of it.
    share = {"FLEET_SANDBOX_SHARE": str(tmp_path / "repo.git")}
    up = start_fleet_up(tmp_path / "data", env=share)
    yield up
    up.stop()


@pytest.fixture(scope="session")
def shared_fleet_up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FleetUp]:
    """One `fleet up` for this worker's tests that only need one running, each in tenants of
    its own: every such test makes its own instances and finds its machines by their ids, so
    it neither sees nor touches another's, whatever ran before it. None of them stops, kills,
    restarts or reconfigures it, drains its host or counts what every tenant has (those take
    ``fleet_up``). Session-scoped, not grouped: each worker that runs one of them makes one."""
    up = start_fleet_up(tmp_path_factory.mktemp("shared-up") / "data")
    yield up
    assert up.stop() == 0
