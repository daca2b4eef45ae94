"""The gateway's JSON-RPC methods (``POST /rpc``): each area's handlers (``@handles``),
validated params in, contract results out (a machine's ports and preview tickets, its desktop,
...), and what they share: admission (the one way into running a machine), wake on access, the
caller's path to a machine's daemon, and what only a machine's host can do.
"""

from base.lazy_front import lazy_front

TYPE_CHECKING = False  # typing's, without importing typing

__all__ = [
    "WAKES",
    "WAKING_PAGE_AFTER_S",
    "CodeOps",
    "CodemodeOps",
    "DaemonCalls",
    "DesktopOps",
    "EnvBuildOps",
    "EnvironmentOps",
    "ForkOps",
    "GatewayApi",
    "HostCalls",
    "HostClient",
    "HostOps",
    "LimitsOps",
    "MachineOps",
    "MetricsOps",
    "NetworkOps",
    "PeopleOps",
    "PortOps",
    "PreviewSessions",
    "RuntimeOps",
    "SecretOps",
    "StopOps",
    "Waker",
    "WebhookMakers",
    "WebhookOps",
    "add_user",
    "host_passing",
    "open_woken",
    "wake_for",
    "waking_page",
    "wants_waking_page",
]

if TYPE_CHECKING:
    from services.gateway.rpc.api import GatewayApi
    from services.gateway.rpc.code import CodeOps
    from services.gateway.rpc.codemode import CodemodeOps
    from services.gateway.rpc.daemon_calls import DaemonCalls
    from services.gateway.rpc.desktop import DesktopOps
    from services.gateway.rpc.env_builds import EnvBuildOps
    from services.gateway.rpc.environments import EnvironmentOps
    from services.gateway.rpc.fork import ForkOps
    from services.gateway.rpc.host_control import HostCalls, HostClient, host_passing
    from services.gateway.rpc.hosts import HostOps
    from services.gateway.rpc.limits import LimitsOps
    from services.gateway.rpc.machines import MachineOps
    from services.gateway.rpc.metrics import MetricsOps
    from services.gateway.rpc.network import NetworkOps
    from services.gateway.rpc.people import PeopleOps, add_user
    from services.gateway.rpc.ports import PortOps, PreviewSessions
    from services.gateway.rpc.runtime import RuntimeOps
    from services.gateway.rpc.secrets import SecretOps
    from services.gateway.rpc.stop import StopOps
    from services.gateway.rpc.wake import (
        WAKES,
        WAKING_PAGE_AFTER_S,
        Waker,
        open_woken,
        wake_for,
        waking_page,
        wants_waking_page,
    )
    from services.gateway.rpc.webhook_makers import WebhookMakers
    from services.gateway.rpc.webhooks import WebhookOps
else:
    __getattr__ = lazy_front(
        __name__,
        {
            "api": ("GatewayApi",),
            "code": ("CodeOps",),
            "codemode": ("CodemodeOps",),
            "daemon_calls": ("DaemonCalls",),
            "desktop": ("DesktopOps",),
            "env_builds": ("EnvBuildOps",),
            "environments": ("EnvironmentOps",),
            "fork": ("ForkOps",),
            "host_control": (
                "HostCalls",
                "HostClient",
                "host_passing",
            ),
            "hosts": ("HostOps",),
            "limits": ("LimitsOps",),
            "machines": ("MachineOps",),
            "metrics": ("MetricsOps",),
            "network": ("NetworkOps",),
            "people": (
                "PeopleOps",
                "add_user",
            ),
            "ports": (
                "PortOps",
                "PreviewSessions",
            ),
            "runtime": ("RuntimeOps",),
            "secrets": ("SecretOps",),
            "stop": ("StopOps",),
            "wake": (
                "WAKES",
                "WAKING_PAGE_AFTER_S",
                "Waker",
                "open_woken",
                "wake_for",
                "waking_page",
                "wants_waking_page",
            ),
            "webhook_makers": ("WebhookMakers",),
            "webhooks": ("WebhookOps",),
        },
    )
