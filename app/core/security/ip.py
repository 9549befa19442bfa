"""Client address resolution and IP allowlists for the webhook endpoint.

Design points and the reasons behind them:

* **IPv4-mapped IPv6 is folded to IPv4 everywhere** (addresses and networks). A
  dual-stack listener reports ``::ffff:203.0.113.7`` for an IPv4 client; without the
  fold an allowlist entry ``203.0.113.0/24`` would silently never match (or, worse, an
  entry written in mapped form would not match the plain form). A network is folded
  only when it lies entirely inside ``::ffff:0:0/96``; wider IPv6 networks such as
  ``::/0`` stay IPv6 and therefore do not match IPv4 clients.
* **Host bits set in a CIDR are an error** (``10.0.0.1/8``): it is almost always a
  typo for either ``10.0.0.1`` or ``10.0.0.0/8`` and guessing either way can widen or
  narrow an allowlist unexpectedly. Single addresses become /32 or /128 networks.
  Blank entries are skipped so ``"a, b,"`` style configuration lists work.
* **Zone ids** (``fe80::1%eth0``) are dropped from addresses: they name a local
  interface, not a host. They are rejected in allowlist entries, where they make no
  sense.
* **Forms accepted by ``parse_ip``**: bare IPv4/IPv6, ``[v6]``, and the two port
  forms that are unambiguous, ``[v6]:port`` and ``v4:port`` (some proxies, e.g. Azure,
  put ports into ``X-Forwarded-For``). Everything else is ``None``.
* **X-Forwarded-For is only believed behind a trusted proxy**, and then only from the
  right: each hop appends the address it saw, so the right-most entries were written
  by our own proxies and everything left of the first untrusted entry is
  client-controlled. The walk stops at the first entry that is *not* a trusted proxy
  and returns it.
* **Fail-safe walk**: if the walk meets an empty or unparseable entry, or the header
  is missing, it stops and returns the last trusted hop it had verified (the peer
  itself when nothing was verified). A client can therefore never pick an arbitrary
  address - at worst the request is attributed to our own proxy. Consequently the
  trusted proxy networks must not appear in webhook allowlists. The walk looks at no
  more than ``MAX_FORWARDED_HOPS`` entries so a huge header costs bounded work.
* **Allowlists fail closed**: every non-empty list must contain the address; an
  unknown address (``None``) passes only when no list restricts anything.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from ipaddress import (
    IPv4Address,
    IPv4Network,
    IPv6Address,
    IPv6Network,
    ip_address,
    ip_network,
)
from typing import Final, TypeAlias

__all__ = [
    "MAX_FORWARDED_HOPS",
    "Address",
    "Network",
    "ip_allowed",
    "parse_ip",
    "parse_networks",
    "resolve_client_ip",
]

Address: TypeAlias = IPv4Address | IPv6Address
Network: TypeAlias = IPv4Network | IPv6Network

MAX_FORWARDED_HOPS: Final = 32
# Longest textual address plus zone/brackets/port; anything longer is not an address
# and need not reach the (comparatively slow) ipaddress parser.
_MAX_IP_LEN: Final = 100
_MAPPED_V4: Final = IPv6Network("::ffff:0:0/96")
_V4_PORT_RE: Final = re.compile(r"([0-9.]+):[0-9]{1,5}")
_V6_BRACKET_RE: Final = re.compile(r"\[([^\[\]]+)\](?::[0-9]{1,5})?")
_ZONE_RE: Final = re.compile(r"[0-9A-Za-z_.\-]+")


def _fold_address(addr: Address) -> Address:
    if isinstance(addr, IPv6Address):
        mapped = addr.ipv4_mapped
        if mapped is not None:
            return mapped
    return addr


def _fold_network(net: Network) -> Network:
    if isinstance(net, IPv6Network) and net.prefixlen >= 96 and net.subnet_of(_MAPPED_V4):
        v4 = IPv4Address(int(net.network_address) & 0xFFFFFFFF)
        return IPv4Network((v4, net.prefixlen - 96))
    return net


def parse_networks(values: Iterable[str]) -> tuple[Network, ...]:
    """Parse allowlist / trusted-proxy entries; raise ValueError naming a bad entry."""
    networks: list[Network] = []
    for entry in values:
        if not isinstance(entry, str):
            raise ValueError(f"invalid IP or CIDR: {entry!r}")
        text = entry.strip()
        if not text:
            continue
        if "%" in text or not text.isascii():
            raise ValueError(f"invalid IP or CIDR: {entry!r}")
        try:
            net = ip_network(text, strict=True)
        except ValueError:
            try:
                loose = ip_network(text, strict=False)
            except ValueError:
                raise ValueError(f"invalid IP or CIDR: {entry!r}") from None
            # Parses only when host bits are ignored: name the likely intent.
            raise ValueError(
                f"invalid IP or CIDR: {entry!r} (host bits set; "
                f"did you mean {str(_fold_network(loose))!r}?)"
            ) from None
        networks.append(_fold_network(net))
    return tuple(networks)


def parse_ip(value: str) -> Address | None:
    """Parse one address as found in a socket peer or a forwarding header; None if garbage."""
    if not isinstance(value, str):
        return None
    text = value.strip()
    if not text or len(text) > _MAX_IP_LEN or not text.isascii():
        return None
    if text.startswith("["):
        bracketed = _V6_BRACKET_RE.fullmatch(text)
        if bracketed is None:
            return None
        text = bracketed.group(1)
        if ":" not in text:  # "[1.2.3.4]" is not a valid spelling of anything
            return None
    else:
        v4_port = _V4_PORT_RE.fullmatch(text)
        if v4_port is not None:
            text = v4_port.group(1)
    host, sep, zone = text.partition("%")
    if sep and (":" not in host or not _ZONE_RE.fullmatch(zone)):
        return None
    try:
        addr = ip_address(host)
    except ValueError:
        return None
    return _fold_address(addr)


def _is_trusted(addr: Address, trusted: Sequence[Network]) -> bool:
    return any(addr in net for net in trusted)


def resolve_client_ip(
    peer: str | None,
    forwarded_for: str | None,
    trusted_proxies: Sequence[Network],
) -> Address | None:
    """The address the request should be attributed to (see module docstring)."""
    peer_ip = parse_ip(peer) if peer else None
    if peer_ip is None or not _is_trusted(peer_ip, trusted_proxies):
        return peer_ip
    if not forwarded_for:
        return peer_ip
    last_trusted: Address = peer_ip
    # rsplit with a cap: entries beyond the cap stay glued together in element 0, which
    # then fails to parse and ends the walk like any other garbage would.
    hops = forwarded_for.rsplit(",", MAX_FORWARDED_HOPS)
    for raw in reversed(hops):
        hop = parse_ip(raw)
        if hop is None:
            return last_trusted
        if not _is_trusted(hop, trusted_proxies):
            return hop
        last_trusted = hop
    return last_trusted


def ip_allowed(ip: Address | None, allowlists: Sequence[Sequence[Network]]) -> bool:
    """True when every non-empty allowlist contains ``ip``; empty lists impose nothing."""
    addr = _fold_address(ip) if ip is not None else None
    for allowlist in allowlists:
        if not allowlist:
            continue
        if addr is None or not any(addr in net for net in allowlist):
            return False
    return True
