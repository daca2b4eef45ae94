"""The parts of an HTTP/1.1 exchange that both of the CLI's transports frame alike (asyncio's
``StreamTransport`` and the blocking one of ``fleet.client.blocking``): a request's headers
and an answer's, as h11 has them. No I/O and no asyncio here, so that the blocking path's
start pays for neither."""

from __future__ import annotations

from base.version import package_version

TYPE_CHECKING = False  # typing's, without importing typing
if TYPE_CHECKING:
    import urllib.parse
    from collections.abc import Mapping

    import h11

#: The longest head (status line and headers) of an answer read, and each read's size.
HEAD_LIMIT = 64 * 1024
READ_SIZE = 64 * 1024


def joined_headers(head: h11.Response) -> dict[str, str]:
    """h11's (lower-cased) header list; a repeated header's values joined, as HTTP joins them."""
    joined: dict[str, str] = {}
    for name, value in head.headers:
        key, text = name.decode("latin-1"), value.decode("latin-1")
        joined[key] = f"{joined[key]}, {text}" if key in joined else text
    return joined


def request_headers(
    url: urllib.parse.SplitResult, headers: Mapping[str, str], body: object
) -> list[tuple[str, str]]:
    """The request's headers, with its framing (``body``: None, bytes, or chunks to come): h11
    writes a body only as they announce it."""
    named = {k.lower() for k in headers}
    framing = [] if body is None or {"content-length", "transfer-encoding"} & named else (
        [("Content-Length", str(len(body)))] if isinstance(body, bytes)
        else [("Transfer-Encoding", "chunked")]
    )  # fmt: skip
    # The audit log keeps a call's User-Agent: it says which client made it.
    agent = [] if "user-agent" in named else [("User-Agent", f"fleetd-client/{package_version()}")]
    return [("Host", url.netloc), ("Connection", "close"), *agent, *headers.items(), *framing]


def content_type(headers: Mapping[str, str]) -> str:
    """An answer's media type, lower-cased, without parameters (aiohttp's default where there
    is none)."""
    value = headers.get("content-type") or "application/octet-stream"
    return value.split(";", 1)[0].strip().lower()
