"""Remote images for OpenAI's ``image_url`` parts, fetched by llamasup (Ollama refuses http(s) URLs).

A URL in a request makes the server open a connection, so the fetcher guards against server-side
request forgery (reaching the machine itself or its private networks on a client's behalf):

- only ``http`` and ``https``, at every hop; redirects are followed by hand, at most
  ``MAX_REDIRECTS``, and each new location is checked exactly as the first URL was;
- an address is refused when it is loopback, private, link-local, multicast, reserved, unspecified or
  otherwise not global (an IPv6 address carrying an IPv4 one is judged by that one too), unless a
  network of ``image_fetch_allow`` holds it (``allowed``, a pure function);
- a host name is resolved once, by ``CheckedResolver``, which drops the refused addresses; the
  connector connects only to what it returns, so the address checked is the address connected to
  and a name that answers differently the second time (DNS rebinding) gains nothing. aiohttp never
  resolves an IP literal, so a literal is checked before its request;
- one deadline for the whole fetch (every URL, every hop), and one byte budget for all of a
  request's bodies, counted while reading (a ``Content-Length`` over it is refused unread); bodies
  are not decoded (``Accept-Encoding: identity``), so what is counted is what arrives;
- no cookies are kept and no proxy is taken from the environment: one client's fetch leaves nothing
  for the next;
- the body must be an image llama-server decodes (``media_type``), judged from its first bytes.

Every failure is a ``BadRequest`` naming the URL and the reason.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Sequence

import aiohttp
import structlog
from aiohttp import hdrs
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver
from yarl import URL

from ..errors import BadRequest
from ..protocol.llama_server import media_type
from ..settings import Network, Settings

log = structlog.get_logger("supervisor.fetch")
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
MAX_REDIRECTS = 5
DISABLED = "image URLs are not currently supported, please use base64 encoded data instead"
NOT_AN_IMAGE = "is not an image (JPEG, PNG, GIF, BMP or WebP)"
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_SNIFF = 12  # bytes media_type needs to tell every format it knows
_HEADERS = {hdrs.ACCEPT: "image/*", hdrs.ACCEPT_ENCODING: "identity", hdrs.USER_AGENT: "llamasup"}


# -- policy (pure) ---------------------------------------------------------------------------------
def _judged(address: IPAddress) -> list[IPAddress]:
    """The addresses a connection to ``address`` really reaches: an IPv4-mapped address is its IPv4
    one, and so is a NAT64 one (the translator connects to it; ``64:ff9b::/96`` itself counts as
    reserved); a 6to4 address is judged as itself and as the IPv4 address it carries."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return [address.ipv4_mapped]
        if address in _NAT64:
            return [ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)]
        if address.sixtofour is not None:
            return [address, address.sixtofour]
    return [address]


def _special(a: IPAddress) -> bool:
    return (a.is_loopback or a.is_private or a.is_link_local or a.is_multicast or a.is_reserved
            or a.is_unspecified or not a.is_global)  # fmt: skip


def allowed(address: IPAddress, allow: Sequence[Network] = ()) -> bool:
    """Whether an image may be fetched from ``address``: a public one, or one that ``allow`` holds."""
    listed = any(address in net for net in allow)
    return all(listed or not _special(a) or any(a in net for net in allow) for a in _judged(address))


def refusal(address: str) -> str:
    return f"address {address} is not allowed (set LLAMASUP_IMAGE_FETCH_ALLOW to permit it)"


# -- transport -------------------------------------------------------------------------------------
class AddressRefused(OSError):
    """Every address a host name resolved to is refused (aiohttp wraps it in a connector error)."""

    def __init__(self, address: str) -> None:
        super().__init__(refusal(address))
        self.address = address


class CheckedResolver(AbstractResolver):
    """Resolves with ``inner`` and keeps only the addresses ``allowed`` accepts."""

    def __init__(self, inner: AbstractResolver, allow: Sequence[Network]) -> None:
        self._inner = inner
        self._allow = tuple(allow)

    async def resolve(self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        kept = [r for r in results if self._accepts(r["host"])]
        if not kept:
            raise AddressRefused(results[0]["host"]) if results else OSError(f"{host} has no address")
        return kept

    def _accepts(self, host: str) -> bool:
        try:
            return allowed(ipaddress.ip_address(host), self._allow)
        except ValueError:
            return False

    async def close(self) -> None:
        await self._inner.close()


class _Failure(Exception):
    """Why one hop failed; ``ImageFetcher`` names the URL."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class _Budget:
    """The bytes all of one request's images may take together."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0

    def message(self) -> str:
        return f"larger than {self.limit} bytes, the limit for all of a request's images (LLAMASUP_IMAGE_FETCH_MAX_BYTES)"

    def check(self, more: int) -> None:
        if self.used + more > self.limit:
            raise _Failure(self.message())

    def take(self, n: int) -> None:
        self.check(n)
        self.used += n


class ImageFetcher:
    """Fetches a request's image URLs concurrently, under the policy above. Create it inside a running
    event loop (the app's lifetime); ``close`` ends its connections."""

    def __init__(self, settings: Settings, *, resolver: AbstractResolver | None = None) -> None:
        self._enabled = settings.image_fetch
        self._max_bytes = settings.image_fetch_max_bytes
        self._timeout = settings.image_fetch_timeout
        self._allow = settings.image_fetch_allow
        self._resolver = CheckedResolver(resolver or DefaultResolver(), self._allow)
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(resolver=self._resolver),
            cookie_jar=aiohttp.DummyCookieJar(),
            headers=_HEADERS,
            auto_decompress=False,
            timeout=aiohttp.ClientTimeout(total=None),  # the deadline is fetch()'s own
            trust_env=False,
        )

    async def fetch(self, urls: list[str]) -> dict[str, bytes]:
        """``url -> image bytes`` for every URL, or a ``BadRequest`` for the first that failed (the
        others are cancelled)."""
        if not urls:
            return {}
        if not self._enabled:
            raise BadRequest(DISABLED)
        budget = _Budget(self._max_bytes)
        deadline = asyncio.get_running_loop().time() + self._timeout
        tasks = {url: asyncio.create_task(self._one(url, budget, deadline)) for url in dict.fromkeys(urls)}
        try:
            await asyncio.wait(tasks.values(), return_when=asyncio.FIRST_EXCEPTION)
        finally:
            for task in tasks.values():
                task.cancel()
            await asyncio.gather(*tasks.values(), return_exceptions=True)
        for task in tasks.values():
            error = None if task.cancelled() else task.exception()
            if error is not None:
                raise error
        fetched = {url: task.result() for url, task in tasks.items()}
        log.debug("fetched images", count=len(fetched), bytes=budget.used)
        return fetched

    async def close(self) -> None:
        await self._session.close()
        await self._resolver.close()

    async def _one(self, url: str, budget: _Budget, deadline: float) -> bytes:
        current = url  # the hop being fetched, named in the message when it is a redirect
        try:
            async with asyncio.timeout_at(deadline):
                target = self._target(URL(url))
                for _ in range(MAX_REDIRECTS + 1):
                    got = await self._hop(target, budget)
                    if isinstance(got, bytes):
                        return got
                    current = str(got)
                    target = self._target(got)
                raise _Failure(f"more than {MAX_REDIRECTS} redirects")
        except TimeoutError:
            reason = f"timed out after {self._timeout:g}s"
        except _Failure as e:
            reason = e.reason
        except aiohttp.InvalidURL as e:  # also a ValueError: aiohttp's own checks (``127.1``)
            reason = f"not a valid URL ({e})"
        except ValueError:
            reason = "not a valid URL"
        except aiohttp.ClientConnectorError as e:
            reason = str(e.os_error) if isinstance(e.os_error, AddressRefused) else str(e)
        except aiohttp.ClientError as e:
            reason = str(e) or type(e).__name__
        via = "" if current == url else f'redirected to "{current}": '
        raise BadRequest(f'failed to fetch image "{url}": {via}{reason}')

    def _target(self, url: URL) -> URL:
        """``url`` if it may be requested: http(s), with a host; an IP literal must be allowed (a
        name is checked when it is resolved)."""
        if url.scheme not in ("http", "https"):
            raise _Failure(f"unsupported scheme {url.scheme!r} (only http and https)")
        if not url.host:
            raise _Failure("the URL has no host")
        try:
            address = ipaddress.ip_address(url.host)
        except ValueError:
            return url
        if not allowed(address, self._allow):
            raise _Failure(refusal(url.host))
        return url

    async def _hop(self, url: URL, budget: _Budget) -> bytes | URL:
        """One request: the image, or where a redirect points."""
        async with self._session.get(url, allow_redirects=False) as resp:
            location = resp.headers.get(hdrs.LOCATION)
            if resp.status in _REDIRECTS and location:
                try:
                    return resp.url.join(URL(location))
                except ValueError:
                    raise _Failure(f"HTTP status {resp.status} with an invalid Location {location!r}") from None
            if resp.status // 100 != 2:
                raise _Failure(f"HTTP status {resp.status}")
            if resp.content_length is not None:
                budget.check(resp.content_length)
            body = bytearray()
            async for chunk in resp.content.iter_any():
                budget.take(len(chunk))
                body += chunk
                if len(body) >= _SNIFF and media_type(bytes(body[:_SNIFF])) is None:
                    raise _Failure(NOT_AN_IMAGE)
            if media_type(bytes(body)) is None:
                raise _Failure(NOT_AN_IMAGE)
            return bytes(body)
