"""Which proxy a registry request goes through (pure), with the rules of Go's ``httpproxy`` package.

llamasup reads ``HTTPS_PROXY``/``HTTP_PROXY``/``NO_PROXY`` (upper case first, then lower case) once,
in ``settings.py``, and passes them here; the HTTP session does *not* use aiohttp's ``trust_env``,
which would also read ``~/.netrc`` and attach its passwords to requests (and to redirects).

- ``https://`` URLs use the https proxy, ``http://`` URLs the http proxy; a proxy without a scheme is
  ``http://`` as Go assumes;
- ``localhost`` and loopback addresses are never proxied;
- ``NO_PROXY`` is a comma list: ``*`` (nothing is proxied), an IP or CIDR network, a host name that
  matches itself and its subdomains (``example.com``), a leading-dot or ``*.`` name that matches
  subdomains only (``.example.com``), each optionally with ``:port``.
"""

from __future__ import annotations

import base64
import ipaddress
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit, urlunsplit

from ..settings import ProxySettings


@dataclass(frozen=True)
class Proxy:
    """A proxy URL without credentials, and the ``Proxy-Authorization`` value if it had some."""

    url: str
    authorization: str | None = None

    def __repr__(self) -> str:
        return f"Proxy(url={self.url!r}, authorization={'<redacted>' if self.authorization else None})"


def _port_of(scheme: str, port: int | None) -> int:
    return port if port is not None else (443 if scheme == "https" else 80)


def _bypassed(no_proxy: str, host: str, port: int) -> bool:
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        address = None
    for raw in no_proxy.split(","):
        entry = raw.strip().lower()
        if not entry:
            continue
        if entry == "*":
            return True
        try:
            network = ipaddress.ip_network(entry, strict=False)
        except ValueError:
            network = None
        if network is not None:
            if address is not None and address in network:
                return True
            continue
        name, entry_port = entry, 0
        if entry.startswith("[") and "]" in entry:  # [v6]:port
            name, _, rest = entry[1:].partition("]")
            entry_port = int(rest[1:]) if rest.startswith(":") and rest[1:].isdigit() else 0
        elif entry.count(":") == 1:
            name, _, port_text = entry.partition(":")
            entry_port = int(port_text) if port_text.isdigit() else 0
        if entry_port and entry_port != port:
            continue
        if address is not None:
            if name == host:
                return True
            continue
        if name.startswith("*."):
            name = name[1:]
        if name.startswith("."):
            if host.endswith(name):
                return True
        elif host == name or host.endswith("." + name):
            return True
    return False


def proxy_for(settings: ProxySettings, url: str) -> Proxy | None:
    """The proxy for ``url``, or None to connect directly."""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    if parts.scheme not in ("http", "https") or not host:
        return None
    raw = settings.https if parts.scheme == "https" else settings.http
    if not raw:
        return None
    if host == "localhost" or host.endswith(".localhost"):
        return None
    try:
        if ipaddress.ip_address(host).is_loopback:
            return None
    except ValueError:
        pass
    if _bypassed(settings.no_proxy, host, _port_of(parts.scheme, parts.port)):
        return None
    proxy = urlsplit(raw if "://" in raw else "http://" + raw)
    netloc = proxy.hostname or ""
    if ":" in netloc:
        netloc = f"[{netloc}]"
    if proxy.port is not None:
        netloc += f":{proxy.port}"
    authorization = None
    if proxy.username is not None:
        user_pass = f"{unquote(proxy.username)}:{unquote(proxy.password or '')}"
        authorization = "Basic " + base64.b64encode(user_pass.encode()).decode()
    return Proxy(urlunsplit((proxy.scheme, netloc, proxy.path, "", "")), authorization)
