"""The environment of every process the daemon starts in its machine: one rule, one place.

A command (``tool.execCommand``, ``tool.execStream``, ``tool.execPipe``), a terminal
(``session.open``), a background process, a cron job and a code kernel all get, lowest first:

1. the daemon's own environment (the image's variables) without the daemon's secrets, the
   image's variables the platform withheld from the daemon given back (``base.loader.restored``);
2. the container's variables (``~/.fleet/container.env``: a devcontainer's containerEnv and
   remoteEnv); then ``HOME``, the machine's home;
3. the pushed ``~/.fleet/.env``: platform and instance variables, secrets' placeholders, the
   egress proxy's and the CA bundle's variables;
4. the variables the call itself gives (a process's ``env``).

Both files are read when they changed (one stat per process otherwise), so a push reaches the
very next process; one that cannot be read (not a regular file, over its cap, not parsing)
leaves the last good values in use. The daemon makes one ``ProcessEnv`` and hands it to
everything that spawns.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from base.loader import restored
from base.tokenfd import RUNTIME_LIBS_VAR
from contracts.daemon.machine_files import CONTAINER_ENV_FILE, ENV_FILE
from daemon.processes.envload import EnvFile

#: Variables of the daemon's own that a process must never see.
PRIVATE_ENV = ("FLEET_MACHINE_TOKEN", RUNTIME_LIBS_VAR)
#: The container's variables are a few lines: more is not read.
CONTAINER_ENV_MAX = 256 * 1024


def compose(
    base: Mapping[str, str],
    home: Path,
    container: Mapping[str, str],
    dotenv: Mapping[str, str],
    call: Mapping[str, str] | None,
) -> dict[str, str]:
    """The rule itself (the module's docstring), from values already read."""
    env = restored({k: v for k, v in base.items() if k not in PRIVATE_ENV})
    env.update(container)
    env["HOME"] = str(home)
    env.update(dotenv)
    env.update(call or {})
    return env


class ProcessEnv:
    """The machine's environment for the next process: ``env(call_env)``."""

    def __init__(self, home: Path, environ: Mapping[str, str]) -> None:
        self.home = home
        self._environ = environ
        self._container = EnvFile(home / CONTAINER_ENV_FILE, CONTAINER_ENV_MAX, root=home)
        #: The pushed .env; its ``digest`` is what a background process was started with.
        self.dotenv = EnvFile(home / ENV_FILE, root=home)

    def __call__(self, call: Mapping[str, str] | None = None) -> dict[str, str]:
        return compose(self._environ, self.home, self._container.load(), self.dotenv.load(), call)
