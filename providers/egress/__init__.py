"""Where a machine may connect, enforced on its host: its ruleset in the kernel
(nftables in the machine's network namespace, or a netdev table for gvisor machines), the
platform's DNS proxy and egress proxy (which adds an instance's secrets to the requests that
may carry them), the proxy's door for gvisor machines, and why a destination is refused, in its
user's words (the rules themselves: controlplane/policy). The platform's own addresses, as
this host finds them, are controlplane/host_addresses.py's (the webhooks hold to them too).

The two rulesets are used qualified: ``nftables`` and ``netdev`` (``nftables.apply``).
"""

from base.lazy_front import lazy_front

TYPE_CHECKING = False  # typing's, without importing typing

__all__ = [
    "Address",
    "DnsCaps",
    "DnsProxy",
    "EgressProxy",
    "HostDoor",
    "Network",
    "OnRefused",
    "Platform",
    "PlatformAddresses",
    "PolicyOf",
    "host_upstream",
    "netdev",
    "nft",
    "nftables",
    "recorded_pastas",
    "run_nft",
]

if TYPE_CHECKING:
    from providers.egress import netdev as netdev, nftables as nftables
    from providers.egress.addresses import Network, PlatformAddresses
    from providers.egress.dns import DnsProxy, OnRefused, PolicyOf, host_upstream
    from providers.egress.dns_load import DnsCaps
    from providers.egress.nftables import nft, run_nft
    from providers.egress.proxy import Address, EgressProxy, Platform
    from providers.egress.proxy_door import HostDoor, recorded_pastas
else:
    __getattr__ = lazy_front(
        __name__,
        {
            "addresses": (
                "Network",
                "PlatformAddresses",
            ),
            "dns": (
                "DnsProxy",
                "OnRefused",
                "PolicyOf",
                "host_upstream",
            ),
            "dns_load": ("DnsCaps",),
            "nftables": (
                "nft",
                "run_nft",
            ),
            "proxy": (
                "Address",
                "EgressProxy",
                "Platform",
            ),
            "proxy_door": (
                "HostDoor",
                "recorded_pastas",
            ),
        },
    )
