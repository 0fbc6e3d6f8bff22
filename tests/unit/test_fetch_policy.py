"""The image-fetch address policy (which addresses are refused, which networks allow them) and its settings."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from supervisor.errors import ConfigError
from supervisor.service.fetch import allowed
from supervisor.settings import load_settings, parse_networks

REFUSED = [
    "127.0.0.1",  # loopback
    "127.255.255.254",
    "10.1.2.3",  # private
    "172.16.0.1",
    "192.168.1.1",
    "169.254.169.254",  # link-local (cloud metadata)
    "100.64.0.1",  # shared address space (carrier-grade NAT): not global
    "0.0.0.0",  # unspecified
    "0.1.2.3",  # "this network"
    "224.0.0.1",  # multicast
    "239.255.255.250",
    "240.0.0.1",  # reserved
    "255.255.255.255",
    "192.0.2.1",  # documentation
    "198.18.0.1",  # benchmarking
    "::1",  # IPv6 loopback
    "::",  # unspecified
    "fe80::1",  # link-local
    "fe80::1%1",  # link-local with a zone
    "fc00::1",  # unique local
    "fd12:3456::1",
    "ff02::1",  # multicast
    "2001:db8::1",  # documentation
    "::ffff:127.0.0.1",  # IPv4-mapped loopback
    "::ffff:10.0.0.1",  # IPv4-mapped private
    "::ffff:169.254.169.254",
    "2002:7f00:1::",  # 6to4 carrying 127.0.0.1
    "64:ff9b::a00:1",  # NAT64 carrying 10.0.0.1
]
PUBLIC = ["8.8.8.8", "1.1.1.1", "93.184.216.34", "2606:4700:4700::1111", "::ffff:8.8.8.8", "2002:808:808::", "64:ff9b::808:808"]


@pytest.mark.parametrize("address", REFUSED)
def test_special_addresses_are_refused(address: str) -> None:
    """Loopback, private, link-local, multicast, reserved, unspecified and other non-global addresses are
    refused, in IPv4 and IPv6, including IPv6 forms that carry a refused IPv4 address."""
    assert not allowed(ipaddress.ip_address(address))


@pytest.mark.parametrize("address", PUBLIC)
def test_public_addresses_are_allowed(address: str) -> None:
    """Global unicast addresses may be fetched from, also when an IPv6 form carries a public IPv4 one."""
    assert allowed(ipaddress.ip_address(address))


@pytest.mark.parametrize(
    ("address", "networks", "expected"),
    [
        ("127.0.0.1", "127.0.0.0/8", True),
        ("127.0.0.1", "10.0.0.0/8", False),
        ("10.20.30.40", "127.0.0.0/8,10.0.0.0/8", True),
        ("192.168.1.1", "192.168.1.1", True),  # a bare address is a network of one
        ("192.168.1.2", "192.168.1.1", False),
        ("::ffff:127.0.0.1", "127.0.0.0/8", True),  # the mapped address is the IPv4 one
        ("::ffff:127.0.0.1", "::ffff:0:0/96", True),  # ... or listed as itself
        ("2002:7f00:1::", "127.0.0.0/8", True),  # 6to4: the 6to4 address is global, the carried one allowed
        ("64:ff9b::7f00:1", "127.0.0.0/8", True),  # NAT64: judged by the IPv4 address it carries
        ("64:ff9b::7f00:1", "10.0.0.0/8", False),
        ("::1", "127.0.0.0/8", False),  # IPv6 loopback is not in an IPv4 network
        ("::1", "::1/128", True),
        ("fd00::5", "fd00::/8", True),
        ("169.254.169.254", "0.0.0.0/0", True),  # everything, if that is what is configured
        ("8.8.8.8", "10.0.0.0/8", True),  # the list only adds; public addresses stay allowed
    ],
)
def test_allow_list(address: str, networks: str, expected: bool) -> None:
    """A configured network allows the special addresses it holds, and only those."""
    assert allowed(ipaddress.ip_address(address), parse_networks(networks)) is expected


def test_fetch_settings_defaults() -> None:
    """By default images are fetched, up to 20 MiB and 10 s, from public addresses only."""
    s = load_settings(env={})
    assert (s.image_fetch, s.image_fetch_max_bytes, s.image_fetch_timeout, s.image_fetch_allow) == (True, 20 << 20, 10.0, ())


def test_fetch_settings_from_environment() -> None:
    """LLAMASUP_IMAGE_FETCH*, with the allow list as comma-separated CIDRs."""
    s = load_settings(env={"LLAMASUP_IMAGE_FETCH": "0", "LLAMASUP_IMAGE_FETCH_MAX_BYTES": "1000", "LLAMASUP_IMAGE_FETCH_TIMEOUT": "2.5",
                           "LLAMASUP_IMAGE_FETCH_ALLOW": " 127.0.0.0/8, 10.0.0.0/8 ,::1"})  # fmt: skip
    assert (s.image_fetch, s.image_fetch_max_bytes, s.image_fetch_timeout) == (False, 1000, 2.5)
    assert s.image_fetch_allow == (ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("::1/128"))


def test_fetch_settings_from_config_file(tmp_path: Path) -> None:
    """The config file takes the same settings by name; the allow list as a list or a string."""
    cfg = tmp_path / "llamasup.yaml"
    cfg.write_text("image_fetch: false\nimage_fetch_max_bytes: 4096\nimage_fetch_timeout: 3\nimage_fetch_allow: [10.0.0.0/8, 'fd00::/8']\n")
    s = load_settings(env={"LLAMASUP_CONFIG": str(cfg)})
    assert (s.image_fetch, s.image_fetch_max_bytes, s.image_fetch_timeout) == (False, 4096, 3.0)
    assert s.image_fetch_allow == (ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("fd00::/8"))
    cfg.write_text("image_fetch_allow: 127.0.0.0/8\n")
    assert load_settings(env={"LLAMASUP_CONFIG": str(cfg)}).image_fetch_allow == (ipaddress.ip_network("127.0.0.0/8"),)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"LLAMASUP_IMAGE_FETCH_ALLOW": "10.0.0.0/8,intranet"}, "LLAMASUP_IMAGE_FETCH_ALLOW"),
        ({"LLAMASUP_IMAGE_FETCH_TIMEOUT": "soon"}, "must be a number of seconds"),
        ({"LLAMASUP_IMAGE_FETCH_TIMEOUT": "0"}, "must be a positive number of seconds"),
        ({"LLAMASUP_IMAGE_FETCH_MAX_BYTES": "0"}, "must be a positive number of bytes"),
    ],
)
def test_bad_fetch_settings_are_errors(env: dict[str, str], message: str) -> None:
    """A malformed network, timeout or size is reported at start-up, not ignored."""
    with pytest.raises(ConfigError, match=message):
        load_settings(env=env)
