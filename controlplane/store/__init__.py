"""State in Redis: ``Store`` owns the connection and the keys (``Keys``), and makes one
record object per concern (``store.tokens``, ``store.stops``, ...), each given the connection,
the keys and nothing else it does not use. Nothing outside this package touches Redis.

Offers ``Store``, ``Keys`` and the hash fields the services read, and the records' value types;
``disk`` (an instance's disk ledger's fields: ``disk.home(machine_id)``) is used qualified.
"""

from base.lazy_front import lazy_front

TYPE_CHECKING = False  # typing's, without importing typing

__all__ = [
    "F_DAEMON_GIT_SHA",
    "F_DAEMON_VERSION",
    "F_EXTERNAL_ID",
    "F_HOST_ID",
    "F_SEALED_CREDENTIAL",
    "NO_MACHINE",
    "AutoStopRule",
    "BootWindow",
    "CodemodeRecords",
    "CreateOnce",
    "E2bSandbox",
    "Head",
    "HostRecord",
    "Once",
    "QueueBound",
    "SessionRecord",
    "Store",
    "StoredCa",
    "StoredSecret",
    "StoredWebhook",
    "Target",
    "TokenHolder",
    "TooManySecrets",
    "TooManyWebhooks",
    "Transition",
    "disk",
    "parse_member",
    "session_record",
    "token_record",
]

if TYPE_CHECKING:
    from controlplane.store import disk as disk
    from controlplane.store.boot_watch import BootWindow
    from controlplane.store.codemode import CodemodeRecords
    from controlplane.store.creates import CreateOnce, Once
    from controlplane.store.e2b import E2bSandbox, TokenHolder
    from controlplane.store.hosts import HostRecord
    from controlplane.store.keys import (
        F_DAEMON_GIT_SHA,
        F_DAEMON_VERSION,
        F_EXTERNAL_ID,
        F_HOST_ID,
        F_SEALED_CREDENTIAL,
    )
    from controlplane.store.secrets import StoredCa, StoredSecret, TooManySecrets
    from controlplane.store.stages import Transition
    from controlplane.store.stop import AutoStopRule
    from controlplane.store.store import Store
    from controlplane.store.tokens import token_record
    from controlplane.store.users import SessionRecord, session_record
    from controlplane.store.webhooks import (
        NO_MACHINE,
        Head,
        QueueBound,
        StoredWebhook,
        Target,
        TooManyWebhooks,
        parse_member,
    )
else:
    __getattr__ = lazy_front(
        __name__,
        {
            "boot_watch": ("BootWindow",),
            "codemode": ("CodemodeRecords",),
            "creates": (
                "CreateOnce",
                "Once",
            ),
            "hosts": ("HostRecord",),
            "keys": (
                "F_DAEMON_GIT_SHA",
                "F_DAEMON_VERSION",
                "F_EXTERNAL_ID",
                "F_HOST_ID",
                "F_SEALED_CREDENTIAL",
            ),
            "secrets": (
                "StoredCa",
                "StoredSecret",
                "TooManySecrets",
            ),
            "stages": ("Transition",),
            "e2b": ("E2bSandbox", "TokenHolder"),
            "stop": ("AutoStopRule",),
            "store": ("Store",),
            "tokens": ("token_record",),
            "users": (
                "SessionRecord",
                "session_record",
            ),
            "webhooks": (
                "Head",
                "NO_MACHINE",
                "QueueBound",
                "StoredWebhook",
                "Target",
                "TooManyWebhooks",
                "parse_member",
            ),
        },
    )
