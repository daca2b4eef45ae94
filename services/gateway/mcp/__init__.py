"""``/mcp``: codemode's tools over the Model Context Protocol (streamable HTTP, an ASGI app
served from aiohttp), on the gateway's own port.

``tools`` (the tools, defined once and served twice: here and by ``fleet mcp``; the desktop's
``computer`` tool among them) is a public module the front does not import: it loads the MCP
SDK, which the gateway loads only on the first ``/mcp`` request.
"""

from base.lazy_front import lazy_front

TYPE_CHECKING = False  # typing's, without importing typing

__all__ = ["McpEndpoint", "add_mcp_route"]

if TYPE_CHECKING:
    from services.gateway.mcp.endpoint import McpEndpoint, add_mcp_route
else:
    __getattr__ = lazy_front(
        __name__,
        {
            "endpoint": (
                "McpEndpoint",
                "add_mcp_route",
            )
        },
    )
