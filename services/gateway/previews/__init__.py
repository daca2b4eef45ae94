"""A machine's web ports in a browser: the preview listener (an origin of its own, never the
console's), its tunnel route, and what passes between a browser and the program header by
header. Who may open a preview (``machines.previewTicket``) is the rpc package's ``PortOps``.
"""

from base.lazy_front import lazy_front

TYPE_CHECKING = False  # typing's, without importing typing

__all__ = ["PortTarget", "add_tunnel_route", "make_preview_app", "serve_port"]

if TYPE_CHECKING:
    from services.gateway.previews.preview import (
        Target as PortTarget,
        add_tunnel_route,
        make_preview_app,
        serve_port,
    )
else:
    __getattr__ = lazy_front(
        __name__,
        {
            "preview": (
                "Target as PortTarget",
                "add_tunnel_route",
                "make_preview_app",
                "serve_port",
            )
        },
    )
