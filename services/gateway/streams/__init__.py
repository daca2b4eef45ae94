"""What the gateway streams: machine events (``GET /events``, one subscription fanned out),
a streamed call (``POST /rpc/stream``, ``POST /codemode/run``) through its one server-sent
events writer, and byte streams opened for a caller (terminals, file transfers, tunnels, a
path's changes watched) with their per-token slots; and the revocation round that ends what a
caller may no longer hold.
"""

from base.lazy_front import lazy_front

TYPE_CHECKING = False  # typing's, without importing typing

__all__ = [
    "ByteStreamOpener",
    "ByteStreamSlots",
    "EventHub",
    "EventsContext",
    "ExecStreamOps",
    "HeldParts",
    "RevocationTicker",
    "SessionOps",
    "StreamRules",
    "Tunnels",
    "WatchOps",
    "add_codemode_routes",
    "add_files_routes",
    "serve_download",
    "serve_tunnel_ws",
    "stream_events",
    "stream_rpc",
    "target",
    "upload",
]

if TYPE_CHECKING:
    from services.gateway.streams.codemode import add_codemode_routes
    from services.gateway.streams.events import EventsContext, stream_events
    from services.gateway.streams.events_hub import EventHub
    from services.gateway.streams.exec_stream import ExecStreamOps, HeldParts, stream_rpc
    from services.gateway.streams.files import add_files_routes, serve_download, upload
    from services.gateway.streams.opener import ByteStreamOpener
    from services.gateway.streams.revocation import RevocationTicker
    from services.gateway.streams.rules import StreamRules
    from services.gateway.streams.sessions import SessionOps
    from services.gateway.streams.slots import ByteStreamSlots
    from services.gateway.streams.tunnels import Tunnels, serve_tunnel_ws, target
    from services.gateway.streams.watch import WatchOps
else:
    __getattr__ = lazy_front(
        __name__,
        {
            "codemode": ("add_codemode_routes",),
            "events": (
                "EventsContext",
                "stream_events",
            ),
            "events_hub": ("EventHub",),
            "exec_stream": (
                "ExecStreamOps",
                "HeldParts",
                "stream_rpc",
            ),
            "files": (
                "add_files_routes",
                "serve_download",
                "upload",
            ),
            "opener": ("ByteStreamOpener",),
            "revocation": ("RevocationTicker",),
            "rules": ("StreamRules",),
            "sessions": ("SessionOps",),
            "slots": ("ByteStreamSlots",),
            "tunnels": (
                "Tunnels",
                "serve_tunnel_ws",
                "target",
            ),
            "watch": ("WatchOps",),
        },
    )
