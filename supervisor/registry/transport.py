"""The registry's HTTP transport: one aiohttp session, authentication, redirects, typed errors.

Invariants:

- Authorization goes only to the origin (scheme, host, port) a request was made for. A redirect to
  another origin is handed back (`follow` with ``stop_at_other_origin``) or followed without any
  ``Authorization``, and every later hop stays without it. Token requests go to the challenge's realm
  only after `auth.check_realm` accepted it.
- What is sent is what is known: a cached Bearer token for (origin, scopes), or Basic credentials once
  the origin has asked for Basic. A ``401`` is answered once — Basic: the stored credentials; Bearer: a
  token from the realm (with the stored credentials, an identity token, Ollama's signature for
  ollama.com, or anonymously) — and the request is sent again; a second ``401`` is an error.
- A body that cannot be sent twice (an async iterable) gets its authorization settled *before* it is
  sent (`_prime`: a probe of ``/v2/`` when the origin is new, a fresh token when the cached one is
  near its end); a ``401`` under it anyway refreshes the token and raises `RegistryAuthExpired`.
- One token request per (origin, scopes) at a time: concurrent parts that all meet a ``401`` share it.
- Secrets never reach a log event or an error: events name the host and repositories; error bodies are
  scrubbed of every secret that was sent; the session does not use ``trust_env`` (no ``~/.netrc``).
- Transport failures (refused, reset, timed out, cut short) are `RegistryConnectionError`; everything
  else a caller sees is another `RegistryError`. Retrying is the caller's decision.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import time
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Literal

import aiohttp
import structlog
from aiohttp import hdrs
from yarl import URL

from ..errors import (
    RegistryAuthExpired,
    RegistryConnectionError,
    RegistryError,
    RegistryHTTPError,
    RegistryInsufficientScope,
    RegistryNotFound,
    RegistryProtocolError,
    RegistryUnauthorized,
)
from ..settings import ProxySettings
from .auth import (
    SIGNED_HOSTS,
    Challenge,
    Signer,
    check_realm,
    describe_scopes,
    merge_scopes,
    parse_challenges,
    pick,
    repositories,
    token_url,
)
from .credentials import Credential, CredentialStore
from .proxy import proxy_for

log = structlog.get_logger("supervisor.registry")

Body = bytes | AsyncIterable[bytes] | None
REDIRECTS = frozenset({301, 302, 303, 307, 308})
MAX_REDIRECTS = 10
ERROR_BODY_LIMIT = 2048  # bytes of an error body kept for a message
DEFAULT_TOKEN_TTL = 60  # seconds, when the token server does not say (the Docker token spec's default)
TOKEN_MARGIN = 10.0  # seconds: a token this close to its end is not used for a one-shot body
CLIENT_ID = "llamasup"


@dataclass(frozen=True)
class _Token:
    value: str
    expires: float  # time.monotonic()
    anonymous: bool


@dataclass(frozen=True)
class _Sent:
    """The authorization one attempt carried (``kind`` "none" when it carried none)."""

    kind: Literal["none", "basic", "bearer"] = "none"
    header: str | None = None
    credential: Credential | None = None
    token: _Token | None = None

    @property
    def secrets(self) -> tuple[str, ...]:
        found = self.credential.secrets if self.credential is not None else ()
        return found + ((self.token.value,) if self.token is not None else ())


NO_AUTH = _Sent()


@dataclass
class Hop:
    """Where `follow` stopped: the response (None when stopped at another origin's ``Location``), its
    URL, and whether that request carried the registry's authorization."""

    url: URL
    response: aiohttp.ClientResponse | None
    authenticated: bool


def origin_of(url: URL) -> str:
    return f"{url.scheme}://{authority_of(url)}"


def authority_of(url: URL) -> str:
    """``host`` or ``host:port`` (the port only when the URL names one): the credentials key."""
    host = (url.raw_host or "").lower()
    if ":" in host:
        host = f"[{host}]"
    return f"{host}:{url.explicit_port}" if url.explicit_port is not None else host


def scrub(text: str, secrets: Iterable[str]) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, "<redacted>")
    return text


def _replayable(body: Body) -> bool:
    return body is None or isinstance(body, (bytes, bytearray, memoryview))


def location(response: aiohttp.ClientResponse, base: URL, *, upload: bool = False) -> URL | None:
    """The response's ``Location`` (``Docker-Upload-Location`` first for uploads), resolved against ``base``."""
    raw = (response.headers.get("Docker-Upload-Location") if upload else None) or response.headers.get(hdrs.LOCATION)
    if not raw:
        return None
    try:
        return base.join(URL(raw, encoded=True))
    except ValueError:
        return None


async def error_text(response: aiohttp.ClientResponse, secrets: Iterable[str] = ()) -> str:
    """The start of an error body, decoded and scrubbed; empty when it cannot be read."""
    try:
        raw = await response.content.read(ERROR_BODY_LIMIT)
    except (aiohttp.ClientError, asyncio.TimeoutError):
        return ""
    return scrub(raw.decode("utf-8", "replace").strip(), secrets)


async def http_error(response: aiohttp.ClientResponse, prefix: str = "", *, not_found: str | None = None) -> RegistryError:
    """The error for an unexpected status: ``[prefix: ]<status>: <body>``; a 404 with ``not_found`` set
    becomes `RegistryNotFound` with exactly that message."""
    if response.status == 404 and not_found is not None:
        return RegistryNotFound(not_found, registry_status=404)
    body = await error_text(response)
    message = f"{response.status}: {body}" if body else f"{response.status}: {response.reason or ''}".rstrip()
    return RegistryHTTPError(f"{prefix}: {message}" if prefix else message, registry_status=response.status)


def _connection_error(exc: BaseException, url: URL) -> RegistryConnectionError:
    reason = str(exc) or type(exc).__name__
    return RegistryConnectionError(f"{authority_of(url)}: {reason}")


def _login_hint(host: str) -> str:
    return f"run `llamasup login {host}`"


class Transport:
    """Authenticated requests to registries; owns the session and every cached token."""

    def __init__(
        self,
        *,
        user_agent: str,
        credentials: CredentialStore,
        signer: Signer | None = None,
        proxies: ProxySettings | None = None,
        connect_timeout: float | None = 30.0,
        read_timeout: float | None = 60.0,
        signed_hosts: frozenset[str] = SIGNED_HOSTS,
    ) -> None:
        self._user_agent = user_agent
        self._credentials = credentials
        self._signer = signer
        self._signed_hosts = signed_hosts
        self._proxies = proxies or ProxySettings()
        self._timeout = aiohttp.ClientTimeout(total=None, sock_connect=connect_timeout, sock_read=read_timeout)
        # Bodies stream as long as they take: stalls are the caller's to detect.
        self._stream_timeout = aiohttp.ClientTimeout(total=None, sock_connect=connect_timeout, sock_read=None)
        self._session: aiohttp.ClientSession | None = None
        self._challenges: dict[str, Challenge | None] = {}  # origin → what it asks for (None: nothing)
        self._basic: dict[str, Credential] = {}  # origin → the credential it accepted
        self._tokens: dict[tuple[str, tuple[str, ...]], _Token] = {}
        self._token_locks: dict[tuple[str, tuple[str, ...]], asyncio.Lock] = {}

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(trust_env=False, auto_decompress=False, timeout=self._timeout)
        return self._session

    # -- one attempt -----------------------------------------------------------------------------------
    async def _raw(
        self, method: str, url: URL, headers: Mapping[str, str], body: Body | aiohttp.FormData, *, authorization: str | None, stream: bool
    ) -> aiohttp.ClientResponse:
        sent = {hdrs.USER_AGENT: self._user_agent, hdrs.ACCEPT_ENCODING: "identity", **headers}
        if authorization is not None:
            sent[hdrs.AUTHORIZATION] = authorization
        proxy = proxy_for(self._proxies, str(url))
        proxy_headers = {hdrs.PROXY_AUTHORIZATION: proxy.authorization} if proxy and proxy.authorization else None
        try:
            return await self._client().request(
                method,
                url,
                headers=sent,
                data=body,
                allow_redirects=False,
                proxy=proxy.url if proxy else None,
                proxy_headers=proxy_headers,
                timeout=self._stream_timeout if stream else self._timeout,
            )
        except aiohttp.InvalidURL as e:
            raise RegistryProtocolError(f"invalid registry URL for {authority_of(url)}: {type(e).__name__}") from None
        except (aiohttp.ClientError, asyncio.TimeoutError) as e:
            raise _connection_error(e, url) from e

    def _known(self, url: URL, scopes: tuple[str, ...]) -> _Sent:
        origin = origin_of(url)
        challenge = self._challenges.get(origin)
        if challenge is None:
            return NO_AUTH
        if challenge.scheme == "basic" and (cred := self._basic.get(origin)) is not None:
            return _Sent("basic", cred.basic_authorization(), credential=cred)
        if challenge.scheme == "bearer":
            token = self._tokens.get((origin, scopes))
            if token is not None and token.expires > time.monotonic():
                return _Sent("bearer", f"Bearer {token.value}", token=token)
        return NO_AUTH

    @asynccontextmanager
    async def request(
        self,
        method: str,
        url: URL,
        *,
        scopes: tuple[str, ...] = (),
        headers: Mapping[str, str] | None = None,
        body: Body = None,
        authenticate: bool = True,
        stream: bool = False,
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        """One request, authenticated as the module docstring says; the response is released on exit.
        With ``authenticate=False`` nothing is added and a 401 is returned like any other status."""
        headers = headers or {}
        scopes = merge_scopes(scopes)
        if authenticate and not _replayable(body):
            await self._prime(url, scopes)
        sent = self._known(url, scopes) if authenticate else NO_AUTH
        response = await self._raw(method, url, headers, body, authorization=sent.header, stream=stream)
        try:
            if authenticate and response.status == 401:
                challenges = parse_challenges(response.headers.getall(hdrs.WWW_AUTHENTICATE, []))
                await error_text(response)  # drain a small body so the connection can be reused
                response.release()
                answer = await self._answer(url, challenges, scopes, sent)
                if not _replayable(body):
                    raise RegistryAuthExpired(
                        f"{authority_of(url)} asked for authentication again during an upload; "
                        "fresh authorization is ready, send the part again",
                        registry_status=401,
                    )
                response = await self._raw(method, url, headers, body, authorization=answer.header, stream=stream)
                if response.status == 401:
                    raise self._denied(url, parse_challenges(response.headers.getall(hdrs.WWW_AUTHENTICATE, [])), scopes, answer)
            yield response
        finally:
            response.release()

    @asynccontextmanager
    async def follow(
        self,
        method: str,
        url: URL,
        *,
        scopes: tuple[str, ...] = (),
        headers: Mapping[str, str] | None = None,
        authenticate: bool = True,
        stop_at_other_origin: bool = False,
        stream: bool = False,
    ) -> AsyncIterator[Hop]:
        """A GET or HEAD following redirects by hand: same-origin hops keep the authorization, the first
        hop to another origin is handed back (``stop_at_other_origin``) or followed without it."""
        origin, current = origin_of(url), url
        for _ in range(MAX_REDIRECTS + 1):
            async with self.request(method, current, scopes=scopes, headers=headers, authenticate=authenticate, stream=stream) as response:
                if response.status not in REDIRECTS:
                    yield Hop(current, response, authenticate)
                    return
                target = location(response, current)
            if target is None or target.scheme not in ("http", "https"):
                raise RegistryProtocolError(f"{authority_of(current)} answered {response.status} without a usable Location")
            if authenticate and origin_of(target) != origin:
                log.debug("registry_redirect", host=authority_of(url), to_host=target.host)
                if stop_at_other_origin:
                    yield Hop(target, None, False)
                    return
                authenticate = False
            current = target
        raise RegistryProtocolError(f"{authority_of(url)}: more than {MAX_REDIRECTS} redirects")

    # -- answering challenges ----------------------------------------------------------------------
    async def _lookup(self, url: URL) -> Credential | None:
        return await asyncio.to_thread(self._credentials.lookup, authority_of(url))

    async def _prime(self, url: URL, scopes: tuple[str, ...]) -> None:
        """Settle authorization before a body that can be sent only once."""
        origin = origin_of(url)
        if origin not in self._challenges:
            probe = url.with_path(url.raw_path.split("/v2/", 1)[0] + "/v2/", encoded=True).with_query(None)
            async with self.request("GET", probe, authenticate=False) as response:
                challenges = parse_challenges(response.headers.getall(hdrs.WWW_AUTHENTICATE, [])) if response.status == 401 else []
            self._challenges[origin] = pick(challenges)
        challenge = self._challenges[origin]
        if challenge is None:
            return
        if challenge.scheme == "basic" and origin not in self._basic:
            await self._answer(url, [challenge], scopes, NO_AUTH)
        elif challenge.scheme == "bearer":
            token = self._tokens.get((origin, scopes))
            if token is None or token.expires - TOKEN_MARGIN <= time.monotonic():
                await self._token(url, challenge, scopes, stale=token)

    async def _answer(self, url: URL, challenges: list[Challenge], scopes: tuple[str, ...], sent: _Sent) -> _Sent:
        """The authorization to send again after a 401 (or an error saying why there is none)."""
        host, origin = authority_of(url), origin_of(url)
        challenge = pick(challenges)
        if challenge is None:
            raise RegistryUnauthorized(f"unauthorized: {host} refused the request without a challenge llamasup can answer", host=host)
        self._challenges[origin] = challenge
        if challenge.scheme == "basic":
            cred = await self._lookup(url)
            if cred is None or cred.identity_token:
                raise self._unauthorized(host, scopes, "no-credentials")
            if sent.kind == "basic" and sent.credential == cred:
                raise self._unauthorized(host, scopes, "refused", cred)
            self._basic[origin] = cred
            return _Sent("basic", cred.basic_authorization(), credential=cred)
        # insufficient_scope included: a login saved since the cached token was issued may grant more.
        token = await self._token(url, challenge, scopes, stale=sent.token)
        return _Sent("bearer", f"Bearer {token.value}", token=token)

    def _denied(self, url: URL, challenges: list[Challenge], scopes: tuple[str, ...], sent: _Sent) -> RegistryUnauthorized:
        """The error for a 401 that came back although the challenge was answered."""
        host = authority_of(url)
        if sent.kind == "basic":
            return self._unauthorized(host, scopes, "refused", sent.credential)
        anonymous = sent.token is None or sent.token.anonymous
        challenge = pick(challenges)
        if challenge is not None and challenge.error == "insufficient_scope" and not anonymous:
            return self._unauthorized(host, scopes, "scope")
        return self._unauthorized(host, scopes, "anonymous" if anonymous else "denied")

    def _unauthorized(
        self, host: str, scopes: tuple[str, ...], why: Literal["no-credentials", "refused", "anonymous", "scope", "denied"], cred: Credential | None = None
    ) -> RegistryUnauthorized:
        what = describe_scopes(scopes)
        log.info("registry_unauthorized", host=host, repository=repositories(scopes), reason=why)
        if why == "no-credentials":
            return RegistryUnauthorized(f"unauthorized: authentication required: {host} needs a login; {_login_hint(host)}", host=host)
        if why == "refused":
            source = f" (from {cred.source})" if cred is not None and cred.source else ""
            return RegistryUnauthorized(f"unauthorized: {host} refused the stored credentials{source}; {_login_hint(host)} to replace them", host=host)
        if why == "anonymous":
            return RegistryUnauthorized(
                f"unauthorized: authentication required: {host} denies {what} without a login; {_login_hint(host)}", host=host
            )
        if why == "scope":
            return RegistryInsufficientScope(f"unauthorized: access denied: the login for {host} does not allow {what}", host=host)
        return RegistryUnauthorized(f"unauthorized: access denied: {host} refused the token for {what}", host=host)

    # -- tokens ----------------------------------------------------------------------------------------
    async def _token(self, url: URL, challenge: Challenge, scopes: tuple[str, ...], *, stale: _Token | None) -> _Token:
        """A token for (origin, scopes); concurrent callers share one request to the token server."""
        key = (origin_of(url), scopes)
        lock = self._token_locks.setdefault(key, asyncio.Lock())
        async with lock:
            cached = self._tokens.get(key)
            if cached is not None and cached != stale and cached.expires - TOKEN_MARGIN > time.monotonic():
                return cached  # another request refreshed it while this one waited
            token = await self._fetch_token(url, challenge, scopes)
            self._tokens[key] = token
            return token

    async def _fetch_token(self, url: URL, challenge: Challenge, scopes: tuple[str, ...]) -> _Token:
        host = authority_of(url)
        realm = challenge.realm
        if not realm:
            raise RegistryUnauthorized(f"unauthorized: {host} asked for a Bearer token without naming a realm", host=host)
        check_realm(realm, str(url))
        wanted = merge_scopes(scopes, challenge.scopes)
        cred = await self._lookup(url)
        sent_secrets: tuple[str, ...] = cred.secrets if cred is not None else ()
        signed = cred is None and self._signer is not None and (url.host or "").lower() in self._signed_hosts
        anonymous = cred is None and not signed
        if cred is not None and cred.identity_token:
            form = {"grant_type": "refresh_token", "refresh_token": cred.identity_token, "client_id": CLIENT_ID, "scope": " ".join(wanted)}
            if challenge.service:
                form["service"] = challenge.service
            response = await self._raw("POST", URL(realm), {}, _form(form), authorization=None, stream=False)
        else:
            extra: list[tuple[str, str]] = []
            if signed:
                extra = [("ts", str(int(time.time()))), ("nonce", base64.urlsafe_b64encode(os.urandom(16)).rstrip(b"=").decode())]
            target = token_url(realm, service=challenge.service, scopes=wanted, extra=extra)
            authorization = None
            if cred is not None:
                authorization = cred.basic_authorization()
            elif signed and self._signer is not None:
                authorization = self._signer.authorization("GET", target)
                sent_secrets = ()
            response = await self._raw("GET", URL(target, encoded=True), {}, None, authorization=authorization, stream=False)
        try:
            if response.status in (401, 403):
                why: Literal["refused", "anonymous", "denied"] = "refused" if cred is not None else "anonymous" if anonymous else "denied"
                raise self._unauthorized(host, wanted, why, cred)
            if response.status != 200:
                body = await error_text(response, sent_secrets)
                raise RegistryHTTPError(f"get token for {host}: {response.status}: {body}", registry_status=response.status)
            try:
                payload = json.loads(await response.read())
            except (ValueError, aiohttp.ClientError, asyncio.TimeoutError) as e:
                if isinstance(e, (aiohttp.ClientError, asyncio.TimeoutError)):
                    raise _connection_error(e, url) from e
                raise RegistryProtocolError(f"the token server for {host} answered with something other than JSON") from None
        finally:
            response.release()
        value = (payload.get("token") or payload.get("access_token")) if isinstance(payload, dict) else None
        if not isinstance(value, str) or not value:
            raise RegistryProtocolError(f"the token server for {host} answered without a token")
        ttl = payload.get("expires_in")
        ttl = ttl if isinstance(ttl, int) and not isinstance(ttl, bool) and ttl > 0 else DEFAULT_TOKEN_TTL
        log.debug("registry_token", host=host, repository=repositories(wanted), anonymous=anonymous)
        return _Token(value, time.monotonic() + ttl, anonymous=anonymous)


def _form(fields: Mapping[str, str]) -> aiohttp.FormData:
    form = aiohttp.FormData()
    for key, value in fields.items():
        form.add_field(key, value)
    return form


async def counted(source: AsyncIterable[bytes], length: int) -> AsyncIterator[bytes]:
    """An async iterable body checked against its declared ``Content-Length`` as it is sent."""
    sent = 0
    async for chunk in source:
        sent += len(chunk)
        if sent > length:
            raise ValueError(f"upload body longer than the declared {length} bytes")
        yield chunk
    if sent != length:
        raise ValueError(f"upload body of {sent} bytes, declared {length}")
