"""What a devcontainer.json says of a machine's ports (``forwardPorts``, ``portsAttributes``),
laid over the ports that listen in it: pure, no I/O."""

from __future__ import annotations

import msgspec

from contracts.ports import ForwardedPort, PortList
from environments.devcontainer import Devcontainer, PortAttributes


def attributes_for(dc: Devcontainer, port: int) -> PortAttributes | None:
    """The ``portsAttributes`` entry that names ``port``: by number, else by a range
    (``3000-3005``); other keys (patterns of process names) name no port here."""
    exact = dc.ports_attributes.get(str(port))
    if exact is not None:
        return exact
    for key, attrs in dc.ports_attributes.items():
        low, dash, high = key.partition("-")
        if dash and low.isdigit() and high.isdigit() and int(low) <= port <= int(high):
            return attrs
    return None


def with_declared(listed: PortList, dc: Devcontainer) -> PortList:
    """``listed`` with each listening port's label and protocol, and the forwarded ports."""
    ports = []
    for p in listed.ports:
        attrs = attributes_for(dc, p.port)
        ports.append(p if attrs is None else msgspec.structs.replace(
            p, label=attrs.label, protocol=attrs.protocol))  # fmt: skip
    listening = {p.port for p in listed.ports}
    forwarded = []
    for port in dict.fromkeys(dc.forward_ports):  # in the file's order, each once
        attrs = attributes_for(dc, port) or PortAttributes()
        forwarded.append(ForwardedPort(port=port, label=attrs.label, protocol=attrs.protocol,
                                       listening=port in listening))  # fmt: skip
    return PortList(ports=ports, forwarded=forwarded)
