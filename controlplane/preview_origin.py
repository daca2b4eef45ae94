"""Preview origins: where a machine's pages are served, never on the console's origin.

``FLEET_PREVIEW_ORIGIN`` is a URL template for the gateway's preview listener (its own port,
``FLEET_PREVIEW_PORT``), in one of two forms:

- with ``{machine}`` and ``{port}`` in its host, once each: an origin per machine and port,
  such as ``http://{machine}-{port}.localhost:8081`` (browsers send every ``*.localhost`` name to
  the loopback; a deployment uses a wildcard DNS name and certificate, e.g.
  ``https://{machine}-{port}.preview.example.com``). A request whose ``Host`` is such a name is
  a preview of that port, whatever its path;
- with neither: one origin shared by every preview, each under its path
  (``<origin>/machines/<id>/ports/<port>/``), where no wildcard name can be had.

Empty means the first form on ``*.localhost`` and the listener's own port.
"""

from __future__ import annotations

import re
from typing import NamedTuple
from urllib.parse import urlsplit

from contracts.ids import MACHINE_ID_RE
from contracts.ports import preview_prefix

_MACHINE = MACHINE_ID_RE.pattern.removeprefix("^").removesuffix("$")


class PreviewOrigin(NamedTuple):
    template: str
    #: Matches a ``Host`` naming one machine's port; None for an origin all previews share.
    host: re.Pattern[str] | None

    def url(self, machine_id: str, port: int) -> str:
        """The preview's root URL (with its slash)."""
        if self.host is None:
            return self.template + preview_prefix(machine_id, port)
        return self.template.format(port=port, machine=machine_id) + "/"

    def match(self, host: str) -> tuple[str, int] | None:
        """(machine id, port) of a ``Host`` header naming a preview, else None."""
        m = None if self.host is None else self.host.fullmatch(host.lower())
        if m is None or not 1 <= int(m["port"]) <= 65535:
            return None
        return m["machine"], int(m["port"])


def default_preview_origin(listener_port: int) -> str:
    """An origin per machine and port on ``*.localhost``, which needs no DNS set-up."""
    return f"http://{{machine}}-{{port}}.localhost:{listener_port}"


def parse_preview_origin(template: str) -> PreviewOrigin:
    """ValueError naming FLEET_PREVIEW_ORIGIN for a template that is neither form."""
    parts = urlsplit(template)
    netloc = parts.netloc.lower()
    named = (netloc.count("{port}"), netloc.count("{machine}"))
    if (parts.scheme not in ("http", "https") or parts.path not in ("", "/") or parts.query
            or parts.fragment or not netloc or named not in ((0, 0), (1, 1))
            or "{" in netloc.replace("{port}", "").replace("{machine}", "")):  # fmt: skip
        raise ValueError(
            f"FLEET_PREVIEW_ORIGIN: {template!r} is not http(s)://HOST[:PORT] with {{machine}} "
            "and {port} once each in HOST (an origin per preview, e.g. "
            "http://{machine}-{port}.localhost:8081), or with neither (one origin for all)"
        )
    if named == (0, 0):
        return PreviewOrigin(template.rstrip("/"), None)
    escaped = re.escape(netloc).replace(r"\{port\}", "{port}").replace(r"\{machine\}",
                                                                        "{machine}")  # fmt: skip
    pattern = escaped.format(port=r"(?P<port>[1-9][0-9]{0,4})", machine=f"(?P<machine>{_MACHINE})")
    return PreviewOrigin(template.rstrip("/"), re.compile(pattern))
