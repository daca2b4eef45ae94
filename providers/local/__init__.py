"""The ``local`` provider: machines as processes on this host, each in a sandbox of its own
(bubblewrap, or gVisor's ``runsc``: providers.gvisor), with its home on this host's disk.

Offers ``LocalProvider`` and what other parts need of local machines: their warm pools (bwrap
and gvisor), their homes' file system (``homes``, used qualified: ``homes.prepare``), an
image's root file system unpacked for them, and the stop of every local machine of a data dir.
"""

from base.lazy_front import lazy_front

TYPE_CHECKING = False  # typing's, without importing typing

__all__ = [
    "INHERITED_ENV",
    "POOL_SLOT_FILE",
    "UP_MARKER",
    "GvisorPoolBackend",
    "LocalPoolBackend",
    "LocalProvider",
    "daemon_argv",
    "homes",
    "machine_roots",
    "pid_alive",
    "spawn_detached",
    "stop_all_local",
]

if TYPE_CHECKING:
    from providers.local import homes as homes
    from providers.local.gvisor_pool import GvisorPoolBackend
    from providers.local.pool import UP_MARKER, LocalPoolBackend
    from providers.local.processes import (
        INHERITED_ENV,
        POOL_SLOT_FILE,
        daemon_argv,
        machine_roots,
        pid_alive,
        spawn_detached,
    )
    from providers.local.provider import LocalProvider
    from providers.local.supervision import stop_all_local
else:
    __getattr__ = lazy_front(
        __name__,
        {
            "gvisor_pool": ("GvisorPoolBackend",),
            "pool": (
                "LocalPoolBackend",
                "UP_MARKER",
            ),
            "processes": (
                "INHERITED_ENV",
                "POOL_SLOT_FILE",
                "daemon_argv",
                "machine_roots",
                "pid_alive",
                "spawn_detached",
            ),
            "provider": ("LocalProvider",),
            "supervision": ("stop_all_local",),
        },
    )
