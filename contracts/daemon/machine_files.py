"""Where things live in a machine's home, and the formats of the files the platform pushes.

Both sides use these: the setup pusher writes the files, the daemon reads and watches them.
"""

from __future__ import annotations

from typing import Annotated

import msgspec

# The code directory's marker lives apart, importing nothing (``fleet --version`` reads it).
from contracts.daemon.code_files import CODE_SHA_FILE as CODE_SHA_FILE

#: The machine's configuration, relative to its home.
FLEET_DIR = ".fleet"
ENV_FILE = ".fleet/.env"
#: The container's variables (a devcontainer's containerEnv, then its remoteEnv), in the .env's
#: format: the daemon puts them in the environment of every process it starts.
CONTAINER_ENV_FILE = ".fleet/container.env"
CRON_FILE = ".fleet/cron.json"
CA_FILE = ".fleet/ca.pem"
ASKPASS_FILE = ".fleet/git-askpass"
#: The daemon's own files.
STATE_FILE = ".fleet/daemon.state.json"
LOCK_FILE = ".fleet/daemon.lock"
CONTROL_SECRET_FILE = ".fleet/daemon.secret"  # noqa: S105 - a path, not a secret
LOG_DIR = ".fleet/logs"
#: The machine's Python site: the virtual environment its code interpreter's kernels run on and
#: ``pip install`` in them installs into (daemon/code/site.py).
PYTHON_SITE_DIR = ".fleet/python"

CronName = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")]
#: Five fields, as in crontab(5): minute hour day-of-month month day-of-week.
CronSchedule = Annotated[str, msgspec.Meta(min_length=9, max_length=200)]


class CronJob(msgspec.Struct, rename="camel", kw_only=True, forbid_unknown_fields=True):
    name: CronName
    schedule: CronSchedule
    #: argv: never run through a shell.
    command: Annotated[list[str], msgspec.Meta(min_length=1, max_length=256)]
    cwd: str | None = None
    timeout_s: Annotated[float, msgspec.Meta(gt=0, le=86_400)] = 3600.0


class CronTable(msgspec.Struct, rename="camel", kw_only=True, forbid_unknown_fields=True):
    """The contents of ``~/.fleet/cron.json``."""

    jobs: list[CronJob] = msgspec.field(default_factory=list)


#: A docker machine's sshd: its config, in the image (providers/docker/image.py writes it),
#: and its host key, made at setup in the machine's home (services/setup_pusher/sshd.py).
SSHD_CONFIG = "/usr/local/lib/fleet/sshd_config"
SSHD_HOST_KEY = "/home/fleet/.fleet/ssh_host_ed25519_key"
