"""Preview origins: a host name of its own for each machine's port, so that a preview page in a
browser is not of the console's origin (nor of another preview's).

``FLEET_PREVIEW_ORIGIN`` is a URL template with ``{port}`` and ``{machine}`` in its host, such as
``http://{port}-{machine}.preview.localhost:8080`` (browsers send every ``*.localhost`` name to
the loopback; elsewhere a wildcard DNS name and certificate for ``*.preview.example.com``). A
request whose ``Host`` is such a name is a preview of that port, whatever its path.
"""

from __future__ import annotations

import re
from typing import NamedTuple
from urllib.parse import urlsplit

from contracts.ids import MACHINE_ID_RE

_MACHINE = MACHINE_ID_RE.pattern.removeprefix("^").removesuffix("$")


class PreviewOrigin(NamedTuple):
    template: str
    host: re.Pattern[str]

    def url(self, machine_id: str, port: int) -> str:
        """The preview's root URL (with its slash)."""
        return self.template.format(port=port, machine=machine_id) + "/"

    def match(self, host: str) -> tuple[str, int] | None:
        """(machine id, port) of a ``Host`` header naming a preview, else None."""
        m = self.host.fullmatch(host.lower())
        if m is None or not 1 <= int(m["port"]) <= 65535:
            return None
        return m["machine"], int(m["port"])


def parse_preview_origin(template: str) -> PreviewOrigin | None:
    """None for ""; ValueError naming FLEET_PREVIEW_ORIGIN for a template that is not one."""
    if not template:
        return None
    parts = urlsplit(template)
    netloc = parts.netloc.lower()
    if (parts.scheme not in ("http", "https") or parts.path not in ("", "/") or parts.query
            or netloc.count("{port}") != 1 or netloc.count("{machine}") != 1):  # fmt: skip
        raise ValueError(
            f"FLEET_PREVIEW_ORIGIN: {template!r} is not http(s)://HOST[:PORT] with {{port}} and "
            "{machine} once each in HOST (e.g. http://{port}-{machine}.preview.localhost:8080)"
        )
    escaped = re.escape(netloc).replace(r"\{port\}", "{port}").replace(r"\{machine\}",
                                                                        "{machine}")  # fmt: skip
    pattern = escaped.format(port=r"(?P<port>[1-9][0-9]{0,4})", machine=f"(?P<machine>{_MACHINE})")
    return PreviewOrigin(template.rstrip("/"), re.compile(pattern))
