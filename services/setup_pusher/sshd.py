"""The machine's SSH server, where its provider ships one: the docker image has openssh-server
and a config for it (``contracts.daemon.machine_files.SSHD_CONFIG``). At setup the platform makes
the
machine's host key (once: it is kept in the home) and starts ``sshd`` as one of the machine's
tracked processes (restarted if it dies), as the machine's user, on its loopback only. A
daemon starts it without the daemon's own environment, so the machine's token is not in it.
Each session starts as ``daemon/ssh_session.py`` (the config's ForceCommand): the machine's
environment, the pushed ``.env`` included, as every process in it has (daemon/processes/env.py).

Reach it through a tunnel: ``ssh -o ProxyCommand='fleet machines tunnel %h 22' fleet@<id>``,
with a key set by ``instances.setSshKeys``. SSH is an extra: a failure here is logged and the
machine's setup goes on.
"""

from __future__ import annotations

import structlog

from contracts.daemon import rpc as d
from contracts.daemon.machine_files import SSHD_CONFIG, SSHD_HOST_KEY
from contracts.errors import Conflict, FleetError
from contracts.models import Machine
from controlplane.calls.daemon_client import MachineClient

log = structlog.get_logger(__name__)

#: Providers whose machines run an SSH server on their loopback.
SSH_PROVIDERS = frozenset({"docker"})
SSHD_TAG = "sshd"
SSHD_ARGV = ["/usr/sbin/sshd", "-D", "-e", "-f", SSHD_CONFIG]
_KEYGEN = ["sh", "-c", f"test -f {SSHD_HOST_KEY} || ssh-keygen -q -t ed25519 -N '' -C '' "
           f"-f {SSHD_HOST_KEY}"]  # fmt: skip


async def start_sshd(mc: MachineClient, machine: Machine) -> bool:
    """Start the machine's SSH server if its provider has one; True once it runs."""
    if machine.provider not in SSH_PROVIDERS or machine.environment_image:
        return False  # an environment's image has not the machine image's sshd and config
    try:
        keygen = await mc.run(*_KEYGEN, timeout_s=60)
        if keygen.exit_code != 0:
            log.warning("setup.sshd_keygen_failed", machine_id=machine.id,
                        stderr=keygen.stderr[-500:])  # fmt: skip
            return False
        params = d.ProcessStartParams(command=SSHD_ARGV, tag=SSHD_TAG, restart="always")
        await mc.start_process(params)
    except Conflict:  # running already: a setup delivered again
        return True
    except FleetError as exc:
        log.warning("setup.sshd_failed", machine_id=machine.id, code=exc.code, error=exc.message)
        return False
    log.debug("setup.sshd_started", machine_id=machine.id)
    return True
