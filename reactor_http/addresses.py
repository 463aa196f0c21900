"""Pure helpers for client addresses: IPv4-mapped forms, allow-lists, X-Forwarded-For.

No sockets and no state. Addresses arrive as the text an engine got from accept() (on a
dual-stack `--host ::` socket an IPv4 client shows up as `::ffff:a.b.c.d`, RFC 4291 section
2.5.5.2, and is compared as the IPv4 address it is); networks arrive as the text the user gave
(an address or a CIDR block) and are parsed once and cached.
"""

from __future__ import annotations

import functools
import ipaddress

# Who may read the status page when --status-allow is not given: this machine only.
LOOPBACK = ("127.0.0.0/8", "::1/128")


def parse_address(text: str):
    """An ip_address for `text`, IPv4-mapped IPv6 unwrapped; None if it is not an address."""
    text = text.strip()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    try:
        address = ipaddress.ip_address(text.split("%", 1)[0])  # drop an IPv6 zone (fe80::1%eth0)
    except ValueError:
        return None
    if address.version == 6 and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


@functools.lru_cache(maxsize=32)
def parse_networks(texts: tuple[str, ...]) -> tuple:
    """ip_network values for addresses or CIDR blocks; ValueError names the first bad one."""
    networks = []
    for text in texts:
        try:
            network = ipaddress.ip_network(text.strip(), strict=False)
        except ValueError:
            raise ValueError(f"{text!r} is not an IP address or CIDR network") from None
        if network.version == 6 and network.prefixlen >= 96 and \
                network.network_address.ipv4_mapped is not None:
            # ::ffff:10.0.0.1 names the IPv4 client it maps (see parse_address).
            network = ipaddress.ip_network(
                f"{network.network_address.ipv4_mapped}/{network.prefixlen - 96}")
        networks.append(network)
    return tuple(networks)


def address_in(host: str, networks: tuple[str, ...]) -> bool:
    """True if the address `host` lies in one of `networks` (addresses or CIDR blocks)."""
    address = parse_address(host)
    if address is None:
        return False
    return any(address in network for network in parse_networks(tuple(networks)))


# What a trusted proxy's unusable X-Forwarded-For stands for: no client address is known. It is
# what the access log shows (Common Log Format's "-" for a missing field), and it matches no
# allow-list, so an outside client cannot pass for the proxy (often loopback) by sending garbage.
UNKNOWN_CLIENT = "-"


def forwarded_client(value: str | None, peer: str) -> str:
    """The client a trusted proxy reports: the last X-Forwarded-For entry.

    Each proxy appends the address it received the request from, so the last entry is the one
    our proxy itself saw; entries before it are whatever the client claimed and prove nothing.
    No header at all: the request is the proxy's own, so `peer`. An empty or unparseable last
    entry: UNKNOWN_CLIENT, never `peer` (that would grant the proxy's access to anyone).
    """
    if value is None:
        return peer
    address = parse_address(value.rsplit(",", 1)[-1])
    return str(address) if address is not None else UNKNOWN_CLIENT
