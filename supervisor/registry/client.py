"""The registry client pull and push are written on: one method per step of the OCI distribution
protocol as Ollama uses it (reference §9), raw bytes in, raw bytes out, typed errors.

What it does not do: retries, backoff, stall detection, part scheduling, digest verification, progress.
Those belong to the transfer service, which decides from the errors: `RegistryError.retryable` is
true for `RegistryConnectionError` (and `RegistryAuthExpired`) and for 5xx/408/429 answers.

Scopes: reads ask for ``repository:<path>:pull``; writes — and `blob_exists`, which push calls — ask
for ``repository:<path>:pull,push``, so one token serves a whole push; a mount adds the source's
``pull``. Upload URLs carry their repository in their path (``/v2/<path>/blobs/uploads/…``), which
is where `upload_chunk` and `finish_upload` take their scope from.

Proxies: the client takes a ``ProxySettings`` (``settings.proxies``, read once by ``settings.py``).
For callers without settings at hand, ``proxy_from_env=True`` (the default) asks ``settings.py`` for
the proxy variables alone; aiohttp's own ``trust_env`` is not used (it would also apply ``~/.netrc``).
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterable, AsyncIterator, Callable
from dataclasses import dataclass
from types import TracebackType

import aiohttp
from aiohttp import hdrs
from yarl import URL

from ..errors import BadRequest, RegistryConnectionError, RegistryProtocolError
from ..settings import ProxySettings, proxy_settings_from_env
from ..store.names import ModelName
from .auth import SIGNED_HOSTS, Signer, repository_scope
from .credentials import CredentialStore
from .transport import Transport, authority_of, counted, http_error, location

MANIFEST_V2 = "application/vnd.docker.distribution.manifest.v2+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MANIFEST_ACCEPT = f"{MANIFEST_V2}, {OCI_MANIFEST}"
MAX_MANIFEST_BYTES = 8 << 20
OCTET_STREAM = "application/octet-stream"
BodySource = Callable[[], AsyncIterable[bytes]]  # a new stream of an upload part's bytes per call
_UPLOAD_PATH = re.compile(r"/v2/(?P<path>.+?)/blobs/uploads/")
_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")
_UPLOAD_RANGE = re.compile(r"(?:bytes=)?(\d+)-(\d+)")


@dataclass(frozen=True)
class Repository:
    """Where a model lives on a registry."""

    base_url: str  # "https://registry.ollama.ai" or "http://127.0.0.1:5000"
    path: str  # "library/llama3.2" (namespace/model)

    @classmethod
    def of(cls, name: ModelName, *, insecure: bool) -> Repository:
        """The repository of ``name``: its scheme (``https`` unless the name says ``http://``), and
        ``http`` whenever ``insecure`` is set, as Ollama downgrades; ``http`` without it is refused."""
        scheme = name.scheme.lower() or "https"
        if scheme == "http" and not insecure:
            raise BadRequest("insecure protocol http")
        if insecure:
            scheme = "http"
        return cls(f"{scheme}://{name.host}", f"{name.namespace}/{name.model}")

    @property
    def host(self) -> str:
        """``host[:port]``: what log events and errors name, and the credentials key."""
        return authority_of(URL(self.base_url))

    @property
    def pull_scope(self) -> str:
        return repository_scope(self.path, "pull")

    @property
    def push_scope(self) -> str:
        return repository_scope(self.path, "pull", "push")

    def url(self, suffix: str) -> URL:
        """``<base>/v2/<path>/<suffix>``."""
        return URL(f"{self.base_url.rstrip('/')}/v2/{self.path}/{suffix}")


@dataclass(frozen=True)
class BlobLocation:
    """Where to read a blob's bytes. ``scope`` set: a registry URL, read with the registry's
    authorization for that scope; None: a direct URL on another host (a CDN), read with no credentials."""

    url: str
    scope: str | None = None

    @property
    def direct(self) -> bool:
        return self.scope is None


@dataclass(frozen=True)
class UploadStatus:
    """An upload session's state: the URL to continue at and the next byte it expects."""

    url: str
    offset: int


def _scopes_of_upload(url: URL) -> tuple[str, ...]:
    m = _UPLOAD_PATH.search(url.path)
    return (repository_scope(m.group("path"), "pull", "push"),) if m else ()


def _upload_url(response: aiohttp.ClientResponse, base: URL, what: str) -> str:
    target = location(response, base, upload=True)
    if target is None:
        raise RegistryProtocolError(f"{what}: {authority_of(base)} answered {response.status} without an upload location")
    return str(target)


class RegistryClient:
    """Registry requests for pull and push; one per server, shared by every transfer (tokens are cached)."""

    def __init__(
        self,
        *,
        user_agent: str,
        credentials: CredentialStore,
        signer: Signer | None = None,
        proxy_from_env: bool = True,
        proxies: ProxySettings | None = None,
        connect_timeout: float | None = 30.0,
        read_timeout: float | None = 60.0,
        signed_hosts: frozenset[str] = SIGNED_HOSTS,
    ) -> None:
        """``proxies`` wins over ``proxy_from_env``; ``read_timeout`` bounds the wait for each read of
        a small answer (manifests, HEADs, upload steps) but never a blob body or an upload part.
        ``signer`` signs token requests for ``signed_hosts`` only (Ollama's registry, Hugging Face), and only
        when no login is stored for the host."""
        if proxies is None:
            proxies = proxy_settings_from_env() if proxy_from_env else ProxySettings()
        self._t = Transport(
            user_agent=user_agent,
            credentials=credentials,
            signer=signer,
            proxies=proxies,
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            signed_hosts=signed_hosts,
        )

    async def close(self) -> None:
        await self._t.close()

    async def __aenter__(self) -> RegistryClient:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.close()

    # -- pull ----------------------------------------------------------------------------------------
    async def manifest(self, repo: Repository, reference: str) -> bytes:
        """The manifest's bytes exactly as the registry stores them (a tag or a digest)."""
        async with self._t.follow("GET", repo.url(f"manifests/{reference}"), scopes=(repo.pull_scope,), headers={hdrs.ACCEPT: MANIFEST_ACCEPT}) as hop:
            response = hop.response
            assert response is not None
            if response.status != 200:
                raise await http_error(response, "pull model manifest", not_found="pull model manifest: file does not exist")
            too_big = RegistryProtocolError(f"pull model manifest: {repo.host} sent a manifest over {MAX_MANIFEST_BYTES} bytes")
            if (response.content_length or 0) > MAX_MANIFEST_BYTES:
                raise too_big
            data = bytearray()
            try:
                async for chunk in response.content.iter_any():
                    data += chunk
                    if len(data) > MAX_MANIFEST_BYTES:
                        raise too_big
            except (aiohttp.ClientError, TimeoutError) as e:
                raise RegistryConnectionError(f"pull model manifest: {repo.host}: {e or type(e).__name__}") from e
            return bytes(data)

    async def blob_size(self, repo: Repository, digest: str) -> int:
        """The blob's size, from ``HEAD``'s ``Content-Length``."""
        async with self._t.follow("HEAD", repo.url(f"blobs/{digest}"), scopes=(repo.pull_scope,)) as hop:
            response = hop.response
            assert response is not None
            if response.status != 200:
                raise await http_error(response, f"pull model blob {digest}", not_found=f"pull model blob {digest}: file does not exist")
            size = response.headers.get(hdrs.CONTENT_LENGTH, "")
            if not size.isdigit():
                raise RegistryProtocolError(f"{repo.host} answered HEAD {digest} without a Content-Length")
            return int(size)

    async def blob_location(self, repo: Repository, digest: str) -> BlobLocation:
        """Where to read the blob: the first redirect to another host (a CDN's signed URL, read without
        credentials), or — when the registry serves it itself — the registry URL, authorized."""
        url = repo.url(f"blobs/{digest}")
        # One byte: a registry that serves the blob itself would otherwise start sending all of it,
        # and whatever it had written when the answer is dropped would be wasted.
        probe = {"Range": "bytes=0-0"}
        async with self._t.follow("GET", url, scopes=(repo.pull_scope,), headers=probe, stop_at_other_origin=True, stream=True) as hop:
            if hop.response is None:
                return BlobLocation(str(hop.url), None)
            if hop.response.status not in (200, 206):
                raise await http_error(hop.response, f"pull model blob {digest}", not_found=f"pull model blob {digest}: file does not exist")
            hop.response.close()  # the body is read later, by ranges
            return BlobLocation(str(hop.url), repo.pull_scope)

    async def read_range(self, location: BlobLocation, start: int, end: int) -> AsyncIterator[bytes]:
        """Bytes ``start``..``end`` (inclusive) of the blob, in chunks as they arrive. The answer must
        be 206 for exactly that range (or 200 when the range is the whole blob). A body cut short is a
        `RegistryConnectionError` after the chunks that did arrive: resume from there. Close the
        iterator (``contextlib.aclosing``) when stopping early."""
        if start < 0 or end < start:
            raise ValueError(f"invalid byte range {start}-{end}")
        expected = end - start + 1
        scopes = (location.scope,) if location.scope else ()
        url = URL(location.url, encoded=True)
        headers: dict[str, str] = {hdrs.RANGE: f"bytes={start}-{end}"}
        async with self._t.follow("GET", url, scopes=scopes, headers=headers, authenticate=not location.direct, stream=True) as hop:
            response = hop.response
            assert response is not None
            host = authority_of(hop.url)
            if response.status == 206:
                m = _CONTENT_RANGE.fullmatch(response.headers.get(hdrs.CONTENT_RANGE, "").strip())
                if m is None or (int(m.group(1)), int(m.group(2))) != (start, end):
                    got = response.headers.get(hdrs.CONTENT_RANGE, "none")
                    raise RegistryProtocolError(f"{host} answered range {start}-{end} with Content-Range {got}")
            elif response.status == 200:
                if start != 0 or (response.content_length is not None and response.content_length != expected):
                    raise RegistryProtocolError(f"{host} ignored the range {start}-{end} (200 with the whole blob)")
            else:
                raise await http_error(response, "pull model blob", not_found="pull model blob: file does not exist")
            received = 0
            try:
                async for chunk in response.content.iter_any():
                    received += len(chunk)
                    if received > expected:
                        raise RegistryProtocolError(f"{host} sent more than the {expected} bytes of range {start}-{end}")
                    yield chunk
            except (aiohttp.ClientError, TimeoutError) as e:
                raise RegistryConnectionError(f"{host}: range {start}-{end} cut short after {received} bytes: {e or type(e).__name__}") from e
            if received < expected:
                raise RegistryConnectionError(f"{host}: range {start}-{end} ended after {received} of {expected} bytes")

    # -- push ----------------------------------------------------------------------------------------
    async def blob_exists(self, repo: Repository, digest: str) -> bool:
        """Whether the repository has the blob (``HEAD``: 200 yes, 404 no)."""
        async with self._t.follow("HEAD", repo.url(f"blobs/{digest}"), scopes=(repo.push_scope,)) as hop:
            response = hop.response
            assert response is not None
            if response.status == 200:
                return True
            if response.status == 404:
                return False
            raise await http_error(response)

    async def mount(self, repo: Repository, digest: str, source_path: str) -> str | None:
        """Mount the blob from ``source_path`` on the same registry: None when mounted (201), else the
        upload URL of the session the registry opened instead (202)."""
        url = repo.url("blobs/uploads/").with_query({"mount": digest, "from": source_path})
        scopes = (repo.push_scope, repository_scope(source_path, "pull"))
        async with self._t.request("POST", url, scopes=scopes, headers={hdrs.CONTENT_LENGTH: "0"}) as response:
            if response.status == 201:
                return None
            if response.status == 202:
                return _upload_url(response, url, "mount")
            raise await http_error(response)

    async def start_upload(self, repo: Repository) -> str:
        """Open an upload session; its URL (``Docker-Upload-Location`` or ``Location``, made absolute)."""
        url = repo.url("blobs/uploads/")
        async with self._t.request("POST", url, scopes=(repo.push_scope,), headers={hdrs.CONTENT_LENGTH: "0"}) as response:
            if response.status != 202:
                raise await http_error(response)
            return _upload_url(response, url, "start upload")

    async def upload_chunk(self, url: str, start: int, data: BodySource | bytes, length: int) -> str:
        """Send bytes ``start``..``start+length-1`` of the blob (``PATCH``, ``Content-Range``); the URL
        for the next chunk or for `finish_upload`. ``data``: the bytes, or a function that returns a
        new stream of them each time it is called. The registry may redirect the part (Ollama's
        ``X-Redirect-Uploads``, as registry.ollama.ai does): it is then sent again, with ``PUT`` to the
        redirect URL and without credentials (a stream is asked for a second time)."""
        if length < 1 or start < 0:
            raise ValueError(f"invalid chunk: start {start}, length {length}")
        if isinstance(data, bytes) and len(data) != length:
            raise ValueError(f"chunk of {len(data)} bytes, declared {length}")

        def body() -> bytes | AsyncIterable[bytes]:
            return data if isinstance(data, bytes) else counted(data(), length)

        target = URL(url, encoded=True)
        headers: dict[str, str] = {
            hdrs.CONTENT_TYPE: OCTET_STREAM,
            hdrs.CONTENT_LENGTH: str(length),
            hdrs.CONTENT_RANGE: f"{start}-{start + length - 1}",
            "X-Redirect-Uploads": "1",
        }
        async with self._t.request("PATCH", target, scopes=_scopes_of_upload(target), headers=headers, body=body(), stream=True) as response:
            if response.status == 307:
                redirect = location(response, target)
                if redirect is None:
                    raise RegistryProtocolError(f"{authority_of(target)} redirected an upload part without a Location")
                following = _upload_url(response, target, "upload")
                await self._put_redirected(redirect, body(), length)
                return following
            if response.status != 202:
                raise await http_error(response)
            return _upload_url(response, target, "upload")

    async def _put_redirected(self, url: URL, data: bytes | AsyncIterable[bytes], length: int) -> None:
        headers: dict[str, str] = {hdrs.CONTENT_TYPE: OCTET_STREAM, hdrs.CONTENT_LENGTH: str(length)}
        async with self._t.request("PUT", url, headers=headers, body=data, authenticate=False, stream=True) as response:
            if response.status >= 300:
                raise await http_error(response)

    async def upload_status(self, url: str) -> UploadStatus:
        """Where an upload session stands (``GET`` → 204 with ``Range: 0-<last>``): resume a failed
        chunk from ``offset``. Distribution reports an empty session and a one-byte one alike
        (``0-0``); this reads ``0-0`` as empty."""
        target = URL(url, encoded=True)
        async with self._t.request("GET", target, scopes=_scopes_of_upload(target)) as response:
            if response.status != 204:
                raise await http_error(response)
            m = _UPLOAD_RANGE.fullmatch(response.headers.get(hdrs.RANGE, "").strip())
            if m is None:
                raise RegistryProtocolError(f"{authority_of(target)} answered an upload status without a Range")
            last = int(m.group(2))
            return UploadStatus(str(location(response, target, upload=True) or target), last + 1 if last > 0 else 0)

    async def finish_upload(self, url: str, digest: str, data: bytes | None = None, *, etag: str | None = None) -> None:
        """Close the session (``PUT <url>?digest=…``), with the whole blob as its body when ``data`` is
        given (a monolithic upload); ``etag`` is Ollama's ``<md5 of part md5s>-<parts>`` when it wants one."""
        target = URL(url, encoded=True).update_query({"digest": digest, **({"etag": etag} if etag else {})})
        body = data if data is not None else b""
        headers: dict[str, str] = {hdrs.CONTENT_TYPE: OCTET_STREAM, hdrs.CONTENT_LENGTH: str(len(body))}
        async with self._t.request("PUT", target, scopes=_scopes_of_upload(target), headers=headers, body=body, stream=True) as response:
            if not 200 <= response.status < 300:
                raise await http_error(response)

    async def put_manifest(self, repo: Repository, reference: str, data: bytes, media_type: str) -> None:
        """Store the manifest's bytes under ``reference`` with its media type as ``Content-Type``."""
        headers: dict[str, str] = {hdrs.CONTENT_TYPE: media_type, hdrs.CONTENT_LENGTH: str(len(data))}
        async with self._t.request("PUT", repo.url(f"manifests/{reference}"), scopes=(repo.push_scope,), headers=headers, body=data) as response:
            if not 200 <= response.status < 300:
                raise await http_error(response)
