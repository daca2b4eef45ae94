"""What the egress and DNS proxies never send a machine to unless its policy names it
(providers/egress/addresses.py): the host's and NATS's addresses, and every subnet of the
docker engine's networks as they are now (services/provisioner/egress/docker_networks.py lists
them).
On real docker machines: tests/integration/test_egress_proxy_neighbours.py."""

from __future__ import annotations

import ipaddress

from providers.egress import PlatformAddresses
from providers.egress.dns import forbidden
from services.provisioner.egress.docker_networks import subnets

ip = ipaddress.ip_address


def test_a_docker_networks_address_is_the_platforms_as_its_networks_are_now() -> None:
    platform = PlatformAddresses([ip("192.0.2.2")])
    assert ip("192.0.2.2") in platform
    assert ip("172.18.0.5") not in platform
    platform.networks_are(subnets([
        {"Name": "bridge", "IPAM": {"Config": [{"Subnet": "172.17.0.0/16"}]}},
        {"Name": "fleet-machines", "IPAM": {"Config": [{"Subnet": "172.18.0.0/16"},
                                                       {"Subnet": "fd00:18::/64"}]}},
        {"Name": "host", "IPAM": {"Config": []}},
        {"Name": "odd", "IPAM": {"Config": [{"Subnet": "not a subnet"}]}},
    ]))  # fmt: skip
    for inside in ("172.18.0.5", "::ffff:172.17.0.9", "fd00:18::7"):
        assert ip(inside) in platform, inside
        assert forbidden(ip(inside), platform), inside  # a DNS answer pointing there too
    assert ip("10.0.0.1") not in platform
    assert list(platform) == [ip("192.0.2.2")]  # iterating gives the addresses alone
    platform.networks_are([])  # a network removed: its addresses are no one's again
    assert ip("172.18.0.5") not in platform
