"""The durable JetStream consumers of the pipeline stages, by name.

A durable name is the consumer's identity on the server: renaming one starts a new consumer at
the beginning of the stream and leaves the old one behind, so these values never change.
"""

from __future__ import annotations

from enum import StrEnum


class Durable(StrEnum):
    #: machine.created: mint credentials, start the machine.
    PROVISIONER = "provisioner"
    #: machine.archived: revoke the machine's credentials, stop it.
    PROVISIONER_ARCHIVE = "provisioner-archive"
    #: machine.daemon-status-reported: push the .env and clone the repos.
    SETUP_PUSHER = "setup_pusher"
    #: machine.setup-pushed: probe until healthy.
    PROBER = "prober"
    #: machine.provisioned: the boot watchdog.
    PROBER_BOOT = "prober-boot"
    #: config.env-changed: push the new .env to the running machines of the scope.
    SETUP_PUSHER_ENV = "setup_pusher-env"
    #: config.repos-changed: reconcile the running machines' checkouts.
    SETUP_PUSHER_REPOS = "setup_pusher-repos"
