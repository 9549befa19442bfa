"""Client IP resolution, allowlist parsing and matching."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.core.security.ip import (
    MAX_FORWARDED_HOPS,
    Address,
    ip_allowed,
    parse_ip,
    parse_networks,
    resolve_client_ip,
)

PROXIES = parse_networks(["10.0.0.0/8", "fd00::/8"])


# --- parse_networks -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        ("10.0.0.0/8", IPv4Network("10.0.0.0/8")),
        ("192.168.1.5", IPv4Network("192.168.1.5/32")),
        (" 192.168.1.0/24 ", IPv4Network("192.168.1.0/24")),
        ("10.0.0.0/255.0.0.0", IPv4Network("10.0.0.0/8")),
        ("2001:db8::/32", IPv6Network("2001:db8::/32")),
        ("::1", IPv6Network("::1/128")),
        ("::ffff:1.2.3.4", IPv4Network("1.2.3.4/32")),
        ("::ffff:10.0.0.0/104", IPv4Network("10.0.0.0/8")),
        ("::ffff:0:0/96", IPv4Network("0.0.0.0/0")),
        ("::/0", IPv6Network("::/0")),  # wider than the mapped range: stays IPv6
    ],
)
def test_parse_networks_accepts(entry: str, expected: IPv4Network | IPv6Network) -> None:
    assert parse_networks([entry]) == (expected,)


def test_parse_networks_skips_blank_entries() -> None:
    assert parse_networks(["", "  ", "1.2.3.4"]) == (IPv4Network("1.2.3.4/32"),)
    assert parse_networks([]) == ()


@pytest.mark.parametrize(
    "entry",
    [
        "garbage",
        "10.0.0.0/33",
        "10.0.0.256",
        "010.0.0.1",
        "fe80::1%eth0",
        "1.2.3.4/ 8",
        "\u0661.2.3.4",
        "1.2.3.4,5.6.7.8",
    ],
)
def test_parse_networks_rejects(entry: str) -> None:
    with pytest.raises(ValueError, match="invalid IP or CIDR") as info:
        parse_networks(["1.1.1.1", entry])
    assert str(info.value) == f"invalid IP or CIDR: {entry!r}"


def test_parse_networks_host_bits_set_names_entry_and_suggests() -> None:
    with pytest.raises(ValueError, match=r"invalid IP or CIDR: '10\.0\.0\.1/8'") as info:
        parse_networks(["10.0.0.1/8"])
    assert "10.0.0.0/8" in str(info.value)


# --- parse_ip -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("1.2.3.4", "1.2.3.4"),
        (" 1.2.3.4 ", "1.2.3.4"),
        ("1.2.3.4:5678", "1.2.3.4"),
        ("2001:db8::1", "2001:db8::1"),
        ("[2001:db8::1]", "2001:db8::1"),
        ("[2001:db8::1]:443", "2001:db8::1"),
        ("fe80::1%eth0", "fe80::1"),
        ("[fe80::1%25]:80", "fe80::1"),
        ("::ffff:1.2.3.4", "1.2.3.4"),
        ("[::ffff:1.2.3.4]:80", "1.2.3.4"),
    ],
)
def test_parse_ip_accepts(value: str, expected: str) -> None:
    assert parse_ip(value) == ip_address(expected)


@pytest.mark.parametrize(
    "value",
    [
        "",
        " ",
        "unknown",
        "_hidden",
        "1.2.3",
        "1.2.3.4:",
        "1.2.3.4:123456",
        "1.2.3.4%eth0",
        "[1.2.3.4]",
        "[::1",
        "::1]",
        "[::1]:",
        "fe80::1%",
        "fe80::1%eth 0",
        "1.2.3.4 5.6.7.8",
        "\uff11.2.3.4",
        "1" * 200,
    ],
)
def test_parse_ip_rejects(value: str) -> None:
    assert parse_ip(value) is None


# --- resolve_client_ip --------------------------------------------------------------


@pytest.mark.parametrize(
    ("peer", "xff", "expected"),
    [
        # Untrusted peer: the header is ignored whatever it says.
        ("203.0.113.9", "1.1.1.1", "203.0.113.9"),
        ("203.0.113.9", None, "203.0.113.9"),
        # Trusted peer: the right-most untrusted hop is the client.
        ("10.0.0.1", "198.51.100.7", "198.51.100.7"),
        ("10.0.0.1", "6.6.6.6, 198.51.100.7", "198.51.100.7"),
        ("10.0.0.1", "6.6.6.6, 198.51.100.7, 10.0.0.2", "198.51.100.7"),
        ("10.0.0.1", "6.6.6.6,198.51.100.7,10.0.0.2,10.9.9.9", "198.51.100.7"),
        ("fd00::1", "[2001:db8::5]:1234, fd00::2", "2001:db8::5"),
        ("::ffff:10.0.0.1", "::ffff:198.51.100.7", "198.51.100.7"),
        # Missing or garbage header behind a trusted proxy: the proxy itself.
        ("10.0.0.1", None, "10.0.0.1"),
        ("10.0.0.1", "", "10.0.0.1"),
        ("10.0.0.1", "unknown", "10.0.0.1"),
        # Garbage met mid-walk: stop at the last verified trusted hop, never left of it.
        ("10.0.0.1", "6.6.6.6, garbage, 10.0.0.2", "10.0.0.2"),
        ("10.0.0.1", "6.6.6.6,,10.0.0.2", "10.0.0.2"),
        # Only trusted hops: the farthest one we can vouch for.
        ("10.0.0.1", "10.0.0.3, 10.0.0.2", "10.0.0.3"),
    ],
)
def test_resolve_client_ip(peer: str, xff: str | None, expected: str) -> None:
    assert resolve_client_ip(peer, xff, PROXIES) == ip_address(expected)


@pytest.mark.parametrize("peer", [None, "", "not-an-ip"])
def test_resolve_client_ip_without_usable_peer(peer: str | None) -> None:
    assert resolve_client_ip(peer, "1.2.3.4", PROXIES) is None


def test_resolve_client_ip_without_trusted_proxies_ignores_header() -> None:
    assert resolve_client_ip("10.0.0.1", "1.2.3.4", ()) == ip_address("10.0.0.1")


def test_resolve_client_ip_bounds_the_walk() -> None:
    many_trusted = ", ".join(["10.0.0.7"] * (MAX_FORWARDED_HOPS + 5))
    xff = "6.6.6.6, " + many_trusted
    # Past the cap the rest is treated as unparseable: attribution stays on our proxies.
    assert resolve_client_ip("10.0.0.1", xff, PROXIES) == ip_address("10.0.0.7")


PUBLIC_V4 = st.integers(0x0B000000, 0x7EFFFFFF).map(IPv4Address)  # 11.0.0.0-126.255.255.255
TRUSTED_V4 = st.integers(0x0A000000, 0x0AFFFFFF).map(IPv4Address)
JUNK = st.one_of(st.text(max_size=30), PUBLIC_V4.map(str), TRUSTED_V4.map(str))


@given(
    spoofed=st.lists(JUNK, max_size=8),
    client=PUBLIC_V4,
    chain=st.lists(TRUSTED_V4, max_size=5),
    peer=TRUSTED_V4,
)
def test_client_cannot_choose_its_address(
    spoofed: list[str], client: IPv4Address, chain: list[IPv4Address], peer: IPv4Address
) -> None:
    # Whatever the client put in the header, our proxies appended its real address and
    # their own hops after it; resolution must land on the real address.
    xff = ", ".join([*spoofed, str(client), *map(str, chain)])
    assert resolve_client_ip(str(peer), xff, PROXIES) == client


@given(xff=st.text(max_size=200), peer=st.one_of(PUBLIC_V4, TRUSTED_V4))
def test_resolution_result_is_peer_or_header_hop(xff: str, peer: IPv4Address) -> None:
    result = resolve_client_ip(str(peer), xff, PROXIES)
    assert result == peer or result in {parse_ip(part) for part in xff.split(",")}


# --- ip_allowed ---------------------------------------------------------------------

GLOBAL = parse_networks(["198.51.100.0/24", "2001:db8::/32"])
OWN = parse_networks(["198.51.100.7"])


@pytest.mark.parametrize(
    ("ip", "allowlists", "expected"),
    [
        ("198.51.100.7", [GLOBAL, OWN], True),
        ("198.51.100.8", [GLOBAL, OWN], False),  # global allows, integration does not
        ("203.0.113.1", [(), OWN], False),
        ("198.51.100.8", [GLOBAL, ()], True),
        ("203.0.113.1", [(), ()], True),
        ("203.0.113.1", [], True),
        ("2001:db8::1", [GLOBAL], True),
        ("2001:db9::1", [GLOBAL], False),
        ("::ffff:198.51.100.7", [GLOBAL, OWN], True),  # mapped address folds to IPv4
    ],
)
def test_ip_allowed(ip: str, allowlists: list[tuple[IPv4Network, ...]], expected: bool) -> None:
    assert ip_allowed(ip_address(ip), allowlists) is expected


def test_unknown_ip_fails_closed() -> None:
    assert ip_allowed(None, [(), OWN]) is False
    assert ip_allowed(None, [(), ()]) is True


def test_v4_address_never_matches_v6_network() -> None:
    everything_v6 = parse_networks(["::/0"])
    addr: Address = IPv4Address("1.2.3.4")
    assert ip_allowed(addr, [everything_v6]) is False
    assert ip_allowed(IPv6Address("::1"), [everything_v6]) is True
