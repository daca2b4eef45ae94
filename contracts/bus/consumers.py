"""The durable JetStream consumers of the pipeline stages, by name.

A durable name is the consumer's identity on the server: renaming one starts a new consumer at
the beginning of the stream and leaves the old one behind, so these values never change.

Per-machine work (archive, stop, start) goes to the machine's host: each host has its own
durable of those kinds (``host_durable``), which its provisioner replicas share; a replica acts
only on its host's machines (docs/hosts.md).
"""

from __future__ import annotations

import re
from enum import StrEnum


class Durable(StrEnum):
    #: machine.created: mint credentials, start the machine.
    PROVISIONER = "provisioner"
    #: machine.archived: revoke the machine's credentials, stop it.
    PROVISIONER_ARCHIVE = "provisioner-archive"
    #: machine.stopped: end a stopped machine's processes, keep its home.
    PROVISIONER_STOP = "provisioner-stop"
    #: machine.started: start a stopped machine again.
    PROVISIONER_START = "provisioner-start"
    #: machine.pause-requested: checkpoint a gvisor machine and end its sandbox.
    PROVISIONER_PAUSE = "provisioner-pause"
    #: machine.resume-requested: restore a paused machine.
    PROVISIONER_RESUME = "provisioner-resume"
    #: machine.daemon-status-reported: push the .env and clone the repos.
    SETUP_PUSHER = "setup_pusher"
    #: machine.setup-pushed: probe until healthy.
    PROBER = "prober"
    #: machine.provisioned: the boot watchdog.
    PROBER_BOOT = "prober-boot"
    #: machine.created: the placement watchdog (a create no host takes fails).
    PROBER_PLACEMENT = "prober-placement"
    #: config.env-changed: push the new .env to the running machines of the scope.
    SETUP_PUSHER_ENV = "setup_pusher-env"
    #: config.repos-changed: reconcile the running machines' checkouts.
    SETUP_PUSHER_REPOS = "setup_pusher-repos"
    #: machine.secret-used: the gateway's audit entry of a machine's first use of a secret.
    GATEWAY_AUDIT = "gateway-audit"
    #: machine.> (every kind): each event queued for the webhooks it goes to (services/webhooks).
    WEBHOOKS = "webhooks"


#: Read in stream order by one process at a time (``services/webhooks/fanout.py``), not by a
#: stage's ``@subscriber`` handler, which takes one kind's events at once.
ORDERED: frozenset[Durable] = frozenset({Durable.WEBHOOKS})

#: Per-machine work: a durable per host (``host_durable``), not one for all.
PER_HOST: frozenset[Durable] = frozenset(
    {Durable.PROVISIONER_ARCHIVE, Durable.PROVISIONER_STOP, Durable.PROVISIONER_START,
     Durable.PROVISIONER_PAUSE, Durable.PROVISIONER_RESUME}
)  # fmt: skip


def durable_name(durable: Durable, host_id: str) -> str:
    """The name of ``durable`` on the server for a process of host ``host_id``."""
    return host_durable(durable, host_id) if durable in PER_HOST else durable.value


def host_durable(durable: Durable, host_id: str) -> str:
    """``durable`` of one host: ``provisioner-archive@host-1``. Characters a durable name may
    not have (``.``, ``*``, ``>``, slashes, spaces) become ``_``."""
    return f"{durable.value}@{re.sub(r'[^A-Za-z0-9_@-]', '_', host_id)}"
