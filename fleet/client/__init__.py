"""The Python client of the gateway: ``FleetClient`` (every gateway method, typed: generated
ones and hand-written ones), ``MachineHandle`` (the client bound to one machine), and the
transports requests go through (``HttpTransport``, ``StreamTransport`` for a short-lived
process such as the CLI, ``MockTransport`` for tests); and one blocking request (``post``, with
``EventLines`` to read a streamed answer) for a command that makes one call without asyncio.
"""

from base.lazy_front import lazy_front

TYPE_CHECKING = False  # typing's, without importing typing

__all__ = [
    "MAX_EVENT_LINE",
    "STREAM_MARGIN_S",
    "BlockingAnswer",
    "Broken",
    "ConnectionFailed",
    "EventLines",
    "EventTooLong",
    "FleetClient",
    "HttpTransport",
    "MachineHandle",
    "MachineNotReady",
    "MockTransport",
    "Request",
    "Response",
    "StreamCut",
    "StreamTransport",
    "Transport",
    "post",
]

if TYPE_CHECKING:
    from fleet.client.blocking import BlockingAnswer, Broken, post
    from fleet.client.client import FleetClient, MachineHandle, MachineNotReady
    from fleet.client.sse_lines import MAX_EVENT_LINE, STREAM_MARGIN_S, EventLines, EventTooLong
    from fleet.client.transport import ConnectionFailed, HttpTransport, StreamCut, Transport
    from fleet.client.transport_mock import MockTransport, Request, Response
    from fleet.client.transport_streams import StreamTransport
else:
    __getattr__ = lazy_front(
        __name__,
        {
            "client": (
                "FleetClient",
                "MachineHandle",
                "MachineNotReady",
            ),
            "transport": (
                "ConnectionFailed",
                "HttpTransport",
                "StreamCut",
                "Transport",
            ),
            "transport_mock": (
                "MockTransport",
                "Request",
                "Response",
            ),
            "transport_streams": ("StreamTransport",),
            "blocking": ("BlockingAnswer", "Broken", "post"),
            "sse_lines": ("EventLines", "EventTooLong", "MAX_EVENT_LINE", "STREAM_MARGIN_S"),
        },
    )
