"""`fleet up`'s service processes: each started as a child that ends with `fleet up`
(base.lifeline), restarted with backoff when it dies, stopped with SIGTERM (then SIGKILL)."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

from base.backoff import backoff_s
from base.lifeline import Children

_HEALTHY_AFTER_S = 30.0  # a service up this long has its restart backoff reset
_MAX_BACKOFF_S = 30.0


class ServiceProcess:
    def __init__(
        self,
        name: str,
        env: dict[str, str],
        log_dir: Path,
        module: str | None = None,
        *,
        children: Children,
    ) -> None:
        self.name = name
        #: What starts it: it ends with `fleet up`, however that ends.
        self.children = children
        #: The service's package (replicas of one service have names of their own).
        self.module = module or name
        self.env = env
        self.log_path = log_dir / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.started_at = 0.0
        self.restarts = 0
        self.next_start = 0.0

    def start(self) -> None:
        with open(self.log_path, "ab") as log:
            argv = [sys.executable, "-m", f"services.{self.module}"]
            # `fleet up` gone, nothing keeps a stop in order (the gateway first, the servers
            # last): a service ends at once (JetStream redelivers what it had in flight), the
            # servers with SIGTERM, which has them flush their stores.
            self.proc = self.children.popen(argv, log, self.name, self.env, signal.SIGKILL)
        self.started_at = time.monotonic()

    def check(self, now: float) -> str | None:
        """Restart the service if it died (after its backoff). Returns a line to print."""
        if self.proc is None or self.proc.poll() is None:
            if self.proc is None and now >= self.next_start:
                self.start()
                return f"restarted {self.name} (restart #{self.restarts})"
            return None
        code = self.proc.returncode
        self.proc = None
        if now - self.started_at > _HEALTHY_AFTER_S:
            self.restarts = 0
        self.restarts += 1
        delay = backoff_s(self.restarts, base=0.5, cap=_MAX_BACKOFF_S, jitter=False)
        self.next_start = now + delay
        return f"{self.name} exited with {code}; restarting in {delay:g}s (log: {self.log_path})"

    def stop(self, timeout_s: float = 25.0) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()  # SIGTERM: consumers drain in-flight handlers, then connections close
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def stop_services(procs: list[ServiceProcess]) -> None:
    for p in reversed(procs):
        p.stop()
