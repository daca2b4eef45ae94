"""``fleet up``: the whole stack on one host (``--ha``: clustered; ``--hosts N``: several
hosts), its embedded servers (nats-server, valkey, sentinels), its service processes, the
keeper that ends its machines with it, and ``fleet gc`` (``gc``, used qualified), which removes
what stacks that no longer run left on this host.
"""

from base.lazy_front import lazy_front

TYPE_CHECKING = False  # typing's, without importing typing

__all__ = [
    "SENTINEL_MASTER",
    "HaServers",
    "NatsServer",
    "ServerStartError",
    "UpOptions",
    "ValkeyServer",
    "banner_ports",
    "gc",
    "prepare",
    "prepare_sync",
    "up",
]

if TYPE_CHECKING:
    from fleet.up import gc as gc
    from fleet.up.docker_setup import prepare, prepare_sync
    from fleet.up.embedded import NatsServer, ServerStartError, ValkeyServer
    from fleet.up.embedded_ha import SENTINEL_MASTER, HaServers
    from fleet.up.options import UpOptions
    from fleet.up.stack import banner_ports, up
else:
    __getattr__ = lazy_front(
        __name__,
        {
            "docker_setup": (
                "prepare",
                "prepare_sync",
            ),
            "embedded": (
                "NatsServer",
                "ServerStartError",
                "ValkeyServer",
            ),
            "embedded_ha": (
                "HaServers",
                "SENTINEL_MASTER",
            ),
            "options": ("UpOptions",),
            "stack": (
                "banner_ports",
                "up",
            ),
        },
    )
