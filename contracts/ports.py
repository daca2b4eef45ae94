"""Ports of a machine: which ones listen, tunnels to them, and preview URLs.

A tunnel is a TCP connection the daemon opens to ``127.0.0.1:<port>`` inside its machine (its
own loopback: each machine has its own network namespace), joined to a byte stream (see
DESIGN.md, "Inside a machine: byte streams"). Clients of the gateway reach it through
``TUNNEL_PATH`` (a WebSocket: binary frames are the connection's bytes) or through a preview
URL (``PREVIEW_PREFIX``), which reverse-proxies HTTP and WebSocket to the port.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from contracts.credentials import credential
from contracts.daemon.streams import DEFAULT_CHUNK, DEFAULT_WINDOW, MAX_CHUNK, StreamOpened
from contracts.errors import (
    DaemonTimeout,
    DaemonUnavailable,
    Forbidden,
    InvalidParams,
    NotFound,
    NotSupported,
    PortUnreachable,
    ToolError,
    TooManyStreams,
)
from contracts.ids import ID_LENGTH, MACHINE_ID_RE
from contracts.rpc.jsonrpc import AnySpec, ClientMethod, MethodSpec, NoParams, Params, Result

Port = Annotated[int, msgspec.Meta(ge=1, le=65535)]
_MachineId = Annotated[
    str, msgspec.Meta(pattern=MACHINE_ID_RE.pattern, min_length=ID_LENGTH, max_length=ID_LENGTH)
]
Family = Literal["ipv4", "ipv6"]

#: The WebSocket a client opens for one tunnelled TCP connection (``fleet machines forward``
#: and ``tunnel``): binary frames carry the connection's bytes both ways; a text frame
#: ``{"type":"eof"}`` half-closes the sender's direction; the close frame ends it (1000: both
#: sides ended; 1011 with a reason: the tunnel broke).
TUNNEL_PATH = "/machines/{machineId}/tunnel/{port}"
#: Preview URLs: ``/machines/<machineId>/ports/<port>/<path>`` reverse-proxies to the port.
PREVIEW_PREFIX = "/machines/{machineId}/ports/{port}/"
#: The query parameter that carries a single-use preview ticket on a browser's first visit.
PREVIEW_TICKET_PARAM = "fleet_ticket"
#: The HttpOnly cookie a redeemed ticket becomes (scoped to its preview's origin and path).
PREVIEW_COOKIE = "fleet_preview"
#: Every cookie of the platform's is named so: a program behind a preview may neither set one
#: nor read one (``__Host-`` and ``__Secure-`` forms included).
PLATFORM_COOKIE_PREFIX = "fleet_"
#: Text control frames of the tunnel WebSocket.
EOF_FRAME = '{"type":"eof"}'


def tunnel_path(machine_id: str, port: int) -> str:
    return TUNNEL_PATH.format(machineId=machine_id, port=port)


def preview_prefix(machine_id: str, port: int) -> str:
    return PREVIEW_PREFIX.format(machineId=machine_id, port=port)


class ListeningPort(msgspec.Struct, rename="camel", kw_only=True, frozen=True, omit_defaults=True):
    port: int
    #: The address it is bound to, as the kernel has it (``0.0.0.0``, ``127.0.0.1``, ``::``).
    address: str
    family: Family
    #: From the environment's devcontainer.json (``portsAttributes``), when it names the port.
    label: str | None = None
    protocol: str | None = None


class ForwardedPort(msgspec.Struct, rename="camel", kw_only=True, frozen=True, omit_defaults=True):
    """A port the machine's environment forwards (devcontainer.json ``forwardPorts``): it has
    a preview URL (machines.previewTicket) whether or not anything listens on it yet."""

    port: int
    label: str | None = None
    #: ``http`` or ``https``, as ``portsAttributes`` says; None: not said.
    protocol: str | None = None
    #: Something listens on it now (it is in ``ports`` too).
    listening: bool


class PortList(Result, kw_only=True):
    #: TCP ports in LISTEN on the loopback or on every address, by port, each once per family.
    ports: list[ListeningPort]
    #: The environment's forwarded ports, in the file's order (empty: none declared).
    forwarded: list[ForwardedPort] = []


class MachinePortsParams(Params, kw_only=True):
    machine_id: _MachineId


class PreviewTicketParams(Params, kw_only=True):
    machine_id: _MachineId
    port: Port


class PreviewTicket(Result, kw_only=True):
    #: Single-use, for seconds: ``<url>?fleet_ticket=<ticket>`` turns it into a cookie.
    ticket: Annotated[str, credential()]
    #: Where the preview is, on the gateway's preview listener, never the console's origin: an
    #: origin of its own (``http://<machineId>-<port>.localhost:<port>/`` by default), or its
    #: path on an origin all previews share (``FLEET_PREVIEW_ORIGIN``).
    url: str
    expires_in_s: float


_DAEMON = (DaemonUnavailable, DaemonTimeout, InvalidParams, ToolError)

LIST_PORTS = MethodSpec(
    "tool.listPorts",
    NoParams,
    PortList,
    "The TCP ports listening on the machine's loopback or any address (/proc/net/tcp, tcp6).",
    (*_DAEMON, NotSupported),
)

MACHINES_PORTS = MethodSpec(
    "machines.ports",
    MachinePortsParams,
    PortList,
    "The TCP ports that listen in the machine (each can be opened as a preview URL), with "
    "the labels its environment gives them, and the ports its environment forwards.",
    (NotFound, Forbidden, *_DAEMON, NotSupported),
    scope="ports",
    reads=True,
    client=ClientMethod("machine_ports", "machine_id"),
)
MACHINES_PREVIEW_TICKET = MethodSpec(
    "machines.previewTicket",
    PreviewTicketParams,
    PreviewTicket,
    "A single-use ticket that opens a port's preview URL in a browser (it becomes a cookie "
    "scoped to that preview, so no token ever goes into a URL).",
    (NotFound, Forbidden, InvalidParams),
    scope="ports",
    client=ClientMethod("preview_ticket", "machine_id port"),
)

PORT_METHODS: tuple[AnySpec, ...] = (MACHINES_PORTS, MACHINES_PREVIEW_TICKET)


class TunnelConnectParams(Params, kw_only=True):
    """Connect to ``127.0.0.1:<port>`` in the machine and join the socket to a byte stream."""

    port: Port
    #: The daemon's chunk size and receive window for this stream.
    chunk_size: Annotated[int, msgspec.Meta(ge=1024, le=MAX_CHUNK)] = DEFAULT_CHUNK
    window: Annotated[int, msgspec.Meta(ge=1024, le=64 * MAX_CHUNK)] = DEFAULT_WINDOW

    def __post_init__(self) -> None:
        if self.window < self.chunk_size:
            raise ValueError("field `window` must be at least `chunkSize`")


TUNNEL_CONNECT = MethodSpec(
    "tool.tunnelConnect",
    TunnelConnectParams,
    StreamOpened,
    "Connect to a port of the machine's loopback and join the connection to a byte stream "
    "(half-close aware; the socket is not read while the platform's credit is spent).",
    (*_DAEMON, PortUnreachable, TooManyStreams),
    wakes="tunnel",
)
