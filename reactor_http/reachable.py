"""Where a browser can reach the server: the start-up banner's URLs, and `--open`.

Bound to a wildcard address (`0.0.0.0`, `::`), the server answers on every address of this
machine. The banner then adds, as Vite and `serve` do, a "Local:" URL for this machine and a
"Network:" URL per interface address another device on the same network (a phone) could use:
loopback and link-local addresses left out (fe80:: needs a zone a phone's browser cannot take),
IPv6 in brackets, https with TLS. IPv4 addresses are offered when the socket accepts IPv4: bound
to `0.0.0.0`, or to `::` as dual-stack (listeners.bind_listener clears IPV6_V6ONLY where the
system allows; the socket itself is asked). Every other binding: the banner's own URL only.

The standard library has no portable call listing interface addresses, so `interface_addresses`
combines what works without a packet or a program: the source address the kernel would pick for
a documentation address (a UDP socket connected, nothing sent), then on Linux every local
address in /proc/net/fib_trie (IPv4) and /proc/net/if_inet6 (IPv6), elsewhere what the resolver
says of this host's name (waited for at most HOSTNAME_WAIT, on a thread). `network_addresses`
and `reachable_lines` are the pure choice, tested with lists of addresses.

`open_browser` is `--open`: the served URL in the default browser, on a daemon thread (the
webbrowser module may wait for the browser it starts, up to 5 s for a remote call, or for a text
browser to exit), only when stdout is a terminal: a server run by a service or a script must not
start a browser.

Must not: send a packet, run a program (other than the browser asked for), raise, or keep the
caller waiting more than a few milliseconds.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import sys
import threading
from collections.abc import Callable, Iterable
from typing import NamedTuple, TextIO

from .facilities import FACTS

log = logging.getLogger("reactor_http")

# Where the UDP probe "connects": documentation addresses (RFC 5737 TEST-NET-1, RFC 3849), routed
# like any outside address (so by the default route), and never sent to: connect() on a UDP
# socket only picks a route and a source address. Port 9 is the discard service.
PROBES = ((socket.AF_INET, ("192.0.2.1", 9)), (socket.AF_INET6, ("2001:db8::1", 9)))
# Linux's tables of local addresses (procfs). A router with a full BGP table has a fib_trie of
# many MiB: reading stops at this many bytes (the local addresses come with their routes).
FIB_TRIE = "/proc/net/fib_trie"
IF_INET6 = "/proc/net/if_inet6"
PROC_READ_LIMIT = 1 << 20
# /proc/net/if_inet6 flags of an address not usable yet or ever (linux/if_addr.h): a duplicate
# found (IFA_F_DADFAILED), duplicate detection still running (IFA_F_TENTATIVE).
IFA_F_UNUSABLE = 0x08 | 0x40
# Seconds the banner waits for the resolver to name this host's addresses (not on Linux): the
# host's own name is usually answered locally in well under a millisecond, but a resolver that
# asks the network could take seconds, and the banner is not worth that.
HOSTNAME_WAIT = 0.05
# At most this many "Network:" lines per listener (a host with many container bridges has a
# dozen addresses); the rest are counted in one more line.
MAX_NETWORK_LINES = 8
NONE_FOUND = "none found (no address besides loopback and link-local)"


class Bound(NamedTuple):
    """What a listening socket is bound to, as the banner needs it."""

    scheme: str       # "http" or "https"
    host: str         # its address as getsockname() says it ("0.0.0.0", "::", "127.0.0.1")
    port: int
    dual_stack: bool  # an IPv6 socket that accepts IPv4 too (IPV6_V6ONLY off)


def http_url(scheme: str, host: str, port: int) -> str:
    """The URL of `host` (an address or a name) and `port`; an IPv6 address in brackets."""
    if ":" in host:
        host = f"[{host}]"
    return f"{scheme}://{host}:{port}/"


def is_wildcard(host: str) -> bool:
    """True for an address that means "every address of this machine" (0.0.0.0, ::)."""
    try:
        return ipaddress.ip_address(host.split("%", 1)[0]).is_unspecified
    except ValueError:
        return False


def local_url(bound: Bound) -> str:
    """The URL for a browser on this machine: the bound address, or loopback for a wildcard."""
    if not is_wildcard(bound.host):
        return http_url(bound.scheme, bound.host, bound.port)
    if ":" not in bound.host:
        return http_url(bound.scheme, "127.0.0.1", bound.port)
    # Dual-stack: localhost works whichever family its name resolves to first.
    return http_url(bound.scheme, "localhost" if bound.dual_stack else "::1", bound.port)


def network_addresses(addresses: Iterable[str], *, ipv4: bool, ipv6: bool) -> list[str]:
    """The addresses another device could reach us at, in the order given, IPv4 first.

    Left out: loopback, link-local (169.254/16, fe80::/10), unspecified, multicast, duplicates,
    text that is no address, and a family the socket does not accept. An IPv4-mapped IPv6
    address counts as the IPv4 address it maps; an IPv6 zone (`%eth0`) is dropped.
    """
    chosen: dict[ipaddress.IPv4Address | ipaddress.IPv6Address, None] = {}
    for text in addresses:
        try:
            address = ipaddress.ip_address(str(text).split("%", 1)[0])
        except ValueError:
            continue
        if address.version == 6 and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        if address.is_loopback or address.is_link_local or address.is_unspecified or \
                address.is_multicast:
            continue
        if (ipv4 if address.version == 4 else ipv6):
            chosen[address] = None
    return [str(address) for address in sorted(chosen, key=lambda item: item.version)]


def reachable_lines(listeners: Iterable[Bound], addresses: Iterable[str]) -> list[str]:
    """The banner's lines after its first for these listeners: for each wildcard one, its
    "Local:" URL and a "Network:" URL per address (or one line saying none was found)."""
    addresses = list(addresses)
    lines = []
    for bound in listeners:
        if not is_wildcard(bound.host):
            continue
        ipv6 = ":" in bound.host
        found = network_addresses(addresses, ipv4=not ipv6 or bound.dual_stack, ipv6=ipv6)
        lines.append(f"  Local:   {local_url(bound)}")
        if not found:
            lines.append(f"  Network: {NONE_FOUND}")
        # Past the cap, the last line counts the rest instead of naming one more.
        shown = found if len(found) <= MAX_NETWORK_LINES else found[:MAX_NETWORK_LINES - 1]
        lines += [f"  Network: {http_url(bound.scheme, host, bound.port)}" for host in shown]
        if len(found) > len(shown):
            lines.append(f"  Network: and {len(found) - len(shown)} more addresses")
    return lines


# ---- the gatherer: this machine's addresses ---------------------------------------------------

def parse_fib_trie(text: str) -> list[str]:
    """The local IPv4 addresses in /proc/net/fib_trie's text: each leaf (`|-- 10.0.0.5`) with a
    `/32 host LOCAL` entry under it."""
    found = []
    leaf = ""
    for line in text.splitlines():
        entry = line.strip()
        if entry.startswith("|-- "):
            leaf = entry[4:]
        elif entry.startswith("/32 host LOCAL") and leaf and leaf not in found:
            found.append(leaf)
    return found


def parse_if_inet6(text: str) -> list[str]:
    """The IPv6 addresses in /proc/net/if_inet6's text (address in 32 hex digits, interface
    index, prefix length, scope, flags, name), without those not usable (IFA_F_UNUSABLE)."""
    found = []
    for line in text.splitlines():
        fields = line.split()
        try:
            address = ipaddress.IPv6Address(bytes.fromhex(fields[0]))
            flags = int(fields[4], 16)
        except (IndexError, ValueError):
            continue
        if not flags & IFA_F_UNUSABLE:
            found.append(str(address))
    return found


def _read_proc(path: str) -> str:
    """The start of a /proc file's text; "" if it cannot be read."""
    try:
        with open(path, encoding="ascii", errors="replace") as file:
            return file.read(PROC_READ_LIMIT)
    except OSError:
        return ""


def default_route_addresses() -> list[str]:
    """The source addresses the kernel picks toward the outside (IPv4, IPv6): the interface a
    phone most likely shares. A UDP connect() chooses a route and sends nothing."""
    found = []
    for family, target in PROBES:
        try:
            with socket.socket(family, socket.SOCK_DGRAM) as probe:
                probe.connect(target)
                found.append(probe.getsockname()[0])
        except OSError:  # no such family, or no route (an offline machine)
            continue
    return found


def hostname_addresses(wait: float = HOSTNAME_WAIT, resolve=socket.getaddrinfo) -> list[str]:
    """What the resolver says of this host's name, if it says it within `wait` seconds (the
    lookup goes on, on a daemon thread, and its late answer is dropped)."""
    found: list[str] = []

    def lookup() -> None:
        try:
            infos = resolve(socket.gethostname(), None, type=socket.SOCK_STREAM)
        except (OSError, UnicodeError):
            return
        found.extend([info[4][0] for info in infos])  # one list: taken whole, or not yet

    thread = threading.Thread(target=lookup, name="reactor-http-hostname", daemon=True)
    thread.start()
    thread.join(wait)
    return list(found)


def interface_addresses() -> list[str]:
    """This machine's addresses, the default route's first; never raises."""
    try:
        found = default_route_addresses()
        if FACTS.interface_list == "procfs":
            found += parse_fib_trie(_read_proc(FIB_TRIE)) + parse_if_inet6(_read_proc(IF_INET6))
        else:
            found += hostname_addresses()
        return found
    except Exception:  # a banner line is never worth a failed start
        log.debug("cannot list this machine's addresses", exc_info=True)
        return []


def bound_of(sock: socket.socket, scheme: str) -> Bound:
    """What a listening socket is bound to, dual-stack asked of the socket itself."""
    host, port = sock.getsockname()[:2]
    dual_stack = False
    if sock.family == socket.AF_INET6:
        try:
            dual_stack = not sock.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY)
        except (OSError, AttributeError):
            pass
    return Bound(scheme, host, port, dual_stack)


def banner_lines(listeners: Iterable[Bound],
                 gather: Callable[[], list[str]] = interface_addresses) -> list[str]:
    """The banner's URL lines for these listeners; the machine is asked only for a wildcard."""
    listeners = list(listeners)
    if not any(is_wildcard(bound.host) for bound in listeners):
        return []
    return reachable_lines(listeners, gather())


# ---- --open -------------------------------------------------------------------------------------

def open_browser(url: str, stdout: TextIO | None = None) -> threading.Thread | None:
    """--open: show `url` in the default browser, from a daemon thread, if stdout is a terminal;
    else say in one line why not. The thread, or None if none was started."""
    if not _is_terminal(stdout):
        log.info("--open: stdout is not a terminal, so no browser is opened; visit %s", url)
        return None
    thread = threading.Thread(target=_show, args=(url,), name="reactor-http-open", daemon=True)
    thread.start()
    return thread


def _show(url: str) -> None:
    """On the --open thread: ask the webbrowser module to show `url`; a warning if it cannot."""
    import webbrowser  # only with --open: it loads subprocess and shutil

    try:
        opened = webbrowser.open(url)
    except Exception:  # a browser that will not start must not stop the server
        opened = False
    if not opened:
        log.warning("--open: no browser could be started; visit %s", url)


def _is_terminal(stdout: TextIO | None) -> bool:
    """True if `stdout` (sys.stdout if None) is a terminal; a closed or odd stream is not."""
    stream = sys.stdout if stdout is None else stdout
    try:
        return bool(stream.isatty())
    except (AttributeError, OSError, ValueError):
        return False
