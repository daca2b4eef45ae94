"""An instance's secrets: credentials the platform's egress proxy adds to a machine's requests
on the way out, so that no machine ever holds them (``secrets.set``, ``secrets.list``,
``secrets.delete``).

A secret has a name (the variable its placeholder is written to in a machine's ``.env``), a
value (stored sealed, never shown again), the hosts it is for, and the header it is sent as:
``header: format`` with ``{value}`` replaced, ``Authorization: Bearer <value>`` by default.

``hosts`` entries follow the egress policy's grammar (``contracts/gateway/network.py``), narrowed
to what a ``CONNECT`` names: an exact name (``api.openai.com``), a wildcard (``*.github.com``:
its subdomains, not itself) or an address (``10.1.2.3``, ``[2001:db8::1]:8443``), each with an
optional ``:PORT`` or ``:LOW-HIGH``; no CIDR.
"""

from __future__ import annotations

import ipaddress
import re
from datetime import datetime
from typing import Annotated, Final

import msgspec

from contracts.credentials import credential
from contracts.errors import Forbidden, InvalidParams, NotFound
from contracts.gateway.network import EgressEntry, parse_entry
from contracts.gateway.types import InstanceId
from contracts.rpc.jsonrpc import AnySpec, MethodSpec, Params, Result
from contracts.validation import ENV_NAME_PATTERN

#: At most this many secrets per instance.
MAX_SECRETS: Final = 100
MAX_HOSTS: Final = 64
MAX_VALUE: Final = 8192
#: What a machine's ``.env`` holds in a secret's place: ``<PLACEHOLDER_PREFIX><name>``.
PLACEHOLDER_PREFIX: Final = "fleet-secret-"
#: Where a machine reaches the platform's egress proxy: a loopback address of its own network
#: namespace, where the proxy listens (``providers/egress/proxy.py``); its ``HTTPS_PROXY``.
MACHINE_PROXY: Final = ("127.0.0.53", 3128)
MACHINE_PROXY_URL: Final = f"http://{MACHINE_PROXY[0]}:{MACHINE_PROXY[1]}"
DEFAULT_HEADER: Final = "Authorization"
DEFAULT_FORMAT: Final = "Bearer {value}"
#: Headers a secret may not be sent as: they frame the request or steer the proxy.
RESERVED_HEADERS: Final = frozenset({
    "host", "content-length", "transfer-encoding", "connection", "upgrade", "te", "trailer",
    "keep-alive", "proxy-authorization", "proxy-connection", "expect",
})  # fmt: skip
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]{1,64}")
#: Visible ASCII and spaces: what a header line carries unchanged (no CR, LF or NUL).
_PRINTABLE = re.compile(r"[\x20-\x7e]*")

SecretName = Annotated[str, msgspec.Meta(pattern=ENV_NAME_PATTERN, min_length=1, max_length=128)]
HostEntry = Annotated[str, msgspec.Meta(min_length=1, max_length=260)]


def placeholder(name: str) -> str:
    """The value a machine's ``.env`` gives the secret's variable."""
    return PLACEHOLDER_PREFIX + name


def host_entry(text: str) -> EgressEntry:
    """The parsed entry; ValueError says why ``text`` is no host a secret may name."""
    entry = parse_entry(text)
    if entry.net is not None and entry.net.num_addresses != 1:
        raise ValueError(f"{text!r}: a secret names hosts or addresses, not a network")
    return entry


def entry_covers(entry: EgressEntry, host: str, port: int) -> bool:
    """Whether ``entry`` names ``host`` (a name in lower case, or an address) at ``port``."""
    if entry.ports is not None and not entry.ports[0] <= port <= entry.ports[1]:
        return False
    if entry.net is not None:
        try:
            return ipaddress.ip_address(host.strip("[]")) in entry.net
        except ValueError:
            return False
    return entry.matches(host.lower().removesuffix("."))


def header_value(format: str, value: str) -> str:
    """The header's value: ``format`` with the secret in place of ``{value}``."""
    return format.replace("{value}", value)


def covers(hosts: list[str], host: str, port: int) -> bool:
    """Whether any of a secret's ``hosts`` names ``host`` at ``port``."""
    return any(entry_covers(host_entry(h), host, port) for h in hosts)


class SetSecretParams(Params, kw_only=True):
    instance_id: InstanceId
    #: The variable a machine's ``.env`` holds the placeholder in.
    name: SecretName
    value: Annotated[str, credential(min_length=1, max_length=MAX_VALUE)]
    hosts: Annotated[list[HostEntry], msgspec.Meta(min_length=1, max_length=MAX_HOSTS)]
    header: str = DEFAULT_HEADER
    #: How the header's value is made: ``{value}`` stands for the secret, once.
    format: Annotated[str, msgspec.Meta(max_length=256)] = DEFAULT_FORMAT

    def __post_init__(self) -> None:
        for text in self.hosts:
            try:
                host_entry(text)
            except ValueError as exc:
                raise ValueError(f"field `hosts`: {exc}") from None
        if not _TOKEN.fullmatch(self.header) or self.header.lower() in RESERVED_HEADERS:
            raise ValueError(f"field `header`: a secret may not be sent as {self.header!r}")
        if self.format.count("{value}") != 1 or "{" in self.format.replace("{value}", ""):
            raise ValueError("field `format` must hold `{value}` once and no other brace")
        for field, text in (("format", self.format), ("value", self.value)):
            if not _PRINTABLE.fullmatch(text):
                raise ValueError(f"field `{field}` may hold only printable ASCII (no line break)")

    def header_value(self) -> str:
        return header_value(self.format, self.value)


class SecretInfo(Result, kw_only=True):
    """A secret as anyone may see it: never its value."""

    name: str
    hosts: list[str]
    header: str
    format: str
    #: Requests a machine made with it added, and the last one's time (None: never used).
    uses: int = 0
    last_used_at: datetime | None = None


class SecretListParams(Params, kw_only=True):
    instance_id: InstanceId


class SecretList(Result, kw_only=True):
    secrets: list[SecretInfo]


class SecretRef(Params, kw_only=True):
    instance_id: InstanceId
    name: SecretName


class SecretDeleted(Result, kw_only=True):
    deleted: bool


SECRETS_SET: Final = MethodSpec(
    "secrets.set", SetSecretParams, SecretInfo,
    "Add or replace a secret the egress proxy adds to requests to its hosts.",
    (NotFound, Forbidden, InvalidParams),
    scope="admin",
)  # fmt: skip
SECRETS_LIST: Final = MethodSpec(
    "secrets.list", SecretListParams, SecretList,
    "An instance's secrets: names, hosts, header and format, never values.", (NotFound, Forbidden),
    scope="env:read", reads=True,
)  # fmt: skip
SECRETS_DELETE: Final = MethodSpec(
    "secrets.delete", SecretRef, SecretDeleted, "Delete a secret: it stops at once.",
    (NotFound, Forbidden),
    scope="admin",
)  # fmt: skip

SECRETS_METHODS: tuple[AnySpec, ...] = (SECRETS_SET, SECRETS_LIST, SECRETS_DELETE)
