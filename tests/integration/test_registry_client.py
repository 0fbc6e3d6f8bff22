"""The registry client against real registries (docker-registry on 127.0.0.1: open, basic, token) and,
for what distribution does not do (cross-host redirects, identity tokens, redirected upload parts),
small aiohttp servers on other 127.0.0.1 ports. Credentials come from files under tmp_path only."""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from contextlib import aclosing, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from aiohttp import web
from structlog.testing import capture_logs

from supervisor.errors import (
    NotFound,
    RegistryAuthExpired,
    RegistryConnectionError,
    RegistryError,
    RegistryHTTPError,
    RegistryNotFound,
    RegistryProtocolError,
    RegistryUnauthorized,
)
from supervisor.registry.auth import merge_scopes
from supervisor.registry.client import BlobLocation, RegistryClient, Repository
from supervisor.registry.credentials import Credential, CredentialStore
from tests.registry_server import MANIFEST_V2, Credentials, RegistryServer, manifest_for, sha256_digest

UA = "llamasup-test/0 (registry client)"
WRONG_PASSWORD = "definitely-not-the-password"


def store_for(tmp_path: Path, host: str, creds: Credentials | None) -> CredentialStore:
    """A credentials file in tmp_path holding ``creds`` for ``host`` (Docker's config unused)."""
    store = CredentialStore(tmp_path / "llamasup-config" / "credentials.json", docker_config=None)
    if creds is not None:
        store.save(host, creds.username, creds.password)
    return store


@asynccontextmanager
async def client_for(store: CredentialStore) -> AsyncIterator[RegistryClient]:
    async with RegistryClient(user_agent=UA, credentials=store, proxy_from_env=False) as client:
        yield client


async def chunks(data: bytes, size: int) -> AsyncIterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]


async def read_all(client: RegistryClient, location: BlobLocation, start: int, end: int) -> bytes:
    async with aclosing(client.read_range(location, start, end)) as stream:
        return b"".join([chunk async for chunk in stream])


def canonical(scopes: list[str]) -> set[str]:
    return set(merge_scopes(scopes))


@pytest.fixture(params=["open", "basic", "token"])
def registry(request: pytest.FixtureRequest) -> RegistryServer:
    """Each of the three registries in turn."""
    server = request.getfixturevalue(f"registry_{request.param}")
    assert isinstance(server, RegistryServer)
    return server


@pytest.fixture(params=["basic", "token"])
def guarded(request: pytest.FixtureRequest) -> RegistryServer:
    """Each registry that wants a login, in turn."""
    server = request.getfixturevalue(f"registry_{request.param}")
    assert isinstance(server, RegistryServer) and server.credentials is not None
    return server


async def test_push_then_pull_round_trip(registry: RegistryServer, tmp_path: Path) -> None:
    """In every auth mode, with the login from a credentials file: chunked and monolithic uploads, a
    mount, the manifest PUT and GET (byte-identical), HEADs, and ranged reads including the last byte."""
    repo = Repository(registry.url, "ns/model")
    config = b'{"model_format":"gguf"}'
    layer = bytes(range(256)) * 40 + b"tail"
    async with client_for(store_for(tmp_path, registry.host, registry.credentials)) as client:
        assert await client.blob_exists(repo, sha256_digest(layer)) is False

        url = await client.start_upload(repo)
        assert url.startswith(registry.url + "/v2/ns/model/blobs/uploads/")
        await client.finish_upload(url, sha256_digest(config), config)  # monolithic

        url = await client.start_upload(repo)
        url = await client.upload_chunk(url, 0, layer[:4000], 4000)  # bytes
        status = await client.upload_status(url)
        assert status.offset == 4000
        url = await client.upload_chunk(status.url, 4000, lambda: chunks(layer[4000:], 1000), len(layer) - 4000)  # a stream
        await client.finish_upload(url, sha256_digest(layer))
        assert registry.blob_path(sha256_digest(layer)).read_bytes() == layer
        assert await client.blob_exists(repo, sha256_digest(layer)) is True

        manifest = manifest_for(config, layer)
        await client.put_manifest(repo, "latest", manifest, MANIFEST_V2)
        assert await client.manifest(repo, "latest") == manifest
        assert await client.manifest(repo, sha256_digest(manifest)) == manifest

        assert await client.blob_size(repo, sha256_digest(layer)) == len(layer)
        location = await client.blob_location(repo, sha256_digest(layer))
        assert location == BlobLocation(f"{registry.url}/v2/ns/model/blobs/{sha256_digest(layer)}", repo.pull_scope)
        assert not location.direct
        assert await read_all(client, location, 10, 19) == layer[10:20]
        assert await read_all(client, location, 0, len(layer) - 1) == layer
        assert await read_all(client, location, len(layer) - 1, len(layer) - 1) == layer[-1:]

        target = Repository(registry.url, "other/model")
        assert await client.mount(target, sha256_digest(layer), repo.path) is None
        assert await client.blob_exists(target, sha256_digest(layer)) is True
        fallback = await client.mount(Repository(registry.url, "third/model"), sha256_digest(layer), "empty/repo")
        assert fallback is not None and fallback.startswith(registry.url + "/v2/third/model/blobs/uploads/")

    if registry.token_server is not None:
        asked = [canonical(r.scopes) for r in registry.token_server.requests]
        assert all(r.user == "llamasup" and r.status == 200 for r in registry.token_server.requests)
        assert {"repository:ns/model:pull,push"} in asked
        assert {"repository:ns/model:pull"} in asked
        assert {"repository:other/model:pull,push", "repository:ns/model:pull"} in asked  # the mount's token
        # one token per (registry, scopes): the whole push shares one
        assert asked.count({"repository:ns/model:pull,push"}) == 1


async def test_user_agent_is_sent(registry_open: RegistryServer, tmp_path: Path) -> None:
    """Every request carries the configured User-Agent (the registry's access log records it)."""
    async with client_for(store_for(tmp_path, registry_open.host, None)) as client:
        with pytest.raises(RegistryNotFound):
            await client.manifest(Repository(registry_open.url, "ns/ua"), "latest")
    assert UA in registry_open.log_tail()


async def test_missing_manifest_and_blob(registry: RegistryServer, tmp_path: Path) -> None:
    """An unknown tag is Ollama's ``pull model manifest: file does not exist`` (a NotFound, status 500);
    an unknown blob is a RegistryNotFound too."""
    repo = Repository(registry.url, "ns/none")
    digest = sha256_digest(b"never pushed")
    async with client_for(store_for(tmp_path, registry.host, registry.credentials)) as client:
        with pytest.raises(RegistryNotFound) as e:
            await client.manifest(repo, "latest")
        assert str(e.value) == "pull model manifest: file does not exist"
        assert isinstance(e.value, NotFound) and e.value.status == 500 and e.value.registry_status == 404
        with pytest.raises(RegistryNotFound):
            await client.blob_size(repo, digest)
        with pytest.raises(RegistryNotFound):
            await client.blob_location(repo, digest)
        assert await client.blob_exists(repo, digest) is False


async def test_manifest_refused_is_status_and_body(registry_open: RegistryServer, tmp_path: Path) -> None:
    """A manifest naming blobs the repository lacks is refused: ``<status>: <body>`` from the registry."""
    repo = Repository(registry_open.url, "ns/bad")
    async with client_for(store_for(tmp_path, registry_open.host, None)) as client:
        with pytest.raises(RegistryHTTPError) as e:
            await client.put_manifest(repo, "latest", manifest_for(b"{}", b"missing"), MANIFEST_V2)
    assert e.value.registry_status == 400 and not e.value.retryable
    assert str(e.value).startswith("400: ") and "MANIFEST_BLOB_UNKNOWN" in str(e.value)


async def test_no_credentials_is_unauthorized(guarded: RegistryServer, tmp_path: Path) -> None:
    """Without a login, reads and writes fail with an unauthorized error that names the host and
    ``llamasup login <host>``; the password appears in no message and no log event."""
    registry = guarded
    assert registry.credentials is not None
    repo = Repository(registry.url, "ns/model")
    with capture_logs() as logs:
        async with client_for(store_for(tmp_path, registry.host, None)) as client:
            for call in (client.manifest(repo, "latest"), client.start_upload(repo)):
                with pytest.raises(RegistryUnauthorized) as e:
                    await call
                message = str(e.value)
                assert message.startswith("unauthorized: authentication required")
                assert f"llamasup login {registry.host}" in message
                assert e.value.host == registry.host and e.value.status == 500
                assert registry.credentials.password not in message
    assert any(entry["event"] == "registry_unauthorized" and entry["host"] == registry.host for entry in logs)
    assert registry.credentials.password not in repr(logs)


async def test_wrong_password_is_refused(guarded: RegistryServer, tmp_path: Path) -> None:
    """A wrong stored password: the error says the stored credentials were refused, names the file and
    the login command, and neither message nor logs hold either password."""
    registry = guarded
    assert registry.credentials is not None
    store = store_for(tmp_path, registry.host, Credentials(registry.credentials.username, WRONG_PASSWORD))
    with capture_logs() as logs:
        async with client_for(store) as client:
            with pytest.raises(RegistryUnauthorized) as e:
                await client.manifest(Repository(registry.url, "ns/model"), "latest")
    message = str(e.value)
    assert f"unauthorized: {registry.host} refused the stored credentials (from {store.path})" in message
    assert f"llamasup login {registry.host}" in message
    for secret in (WRONG_PASSWORD, registry.credentials.password):
        assert secret not in message and secret not in repr(logs)
    if registry.token_server is not None:
        assert [(r.user, r.status) for r in registry.token_server.requests] == [("llamasup", 401)]


async def test_pull_only_login_cannot_push(registry_token: RegistryServer, tmp_path: Path) -> None:
    """A token server that grants anonymous pulls only: anonymous reads work, a push is refused with
    the login hint (the registry answers insufficient_scope)."""
    ts = registry_token.token_server
    assert ts is not None and registry_token.credentials is not None
    repo = Repository(registry_token.url, "ns/public")
    async with client_for(store_for(tmp_path, registry_token.host, registry_token.credentials)) as client:
        await client.finish_upload(await client.start_upload(repo), sha256_digest(b"x"), b"x")
    ts.anonymous_actions = frozenset({"pull"})
    async with client_for(store_for(tmp_path / "anon", registry_token.host, None)) as client:
        assert await client.blob_size(repo, sha256_digest(b"x")) == 1
        with pytest.raises(RegistryUnauthorized) as e:
            await client.start_upload(repo)
    assert "authentication required" in str(e.value) and "pull,push on ns/public" in str(e.value)


async def test_one_shot_body_is_authorized_before_it_is_sent(guarded: RegistryServer, tmp_path: Path) -> None:
    """A client whose very first request is a streamed chunk (an async iterable cannot be sent twice)
    settles authorization first, so the chunk goes through."""
    registry = guarded
    repo = Repository(registry.url, "ns/stream")
    data = b"0123456789" * 100
    store = store_for(tmp_path, registry.host, registry.credentials)
    async with client_for(store) as first:
        url = await first.start_upload(repo)
    async with client_for(store) as fresh:
        url = await fresh.upload_chunk(url, 0, lambda: chunks(data, 64), len(data))
        await fresh.finish_upload(url, sha256_digest(data))
    assert registry.blob_path(sha256_digest(data)).read_bytes() == data


async def test_expired_token_under_a_streamed_chunk(registry_token: RegistryServer, tmp_path: Path) -> None:
    """A token the registry no longer takes, met while streaming a chunk, is refreshed and reported as
    RegistryAuthExpired (retryable); sending the chunk again succeeds."""
    repo = Repository(registry_token.url, "ns/expired")
    data = b"abc" * 10
    async with client_for(store_for(tmp_path, registry_token.host, registry_token.credentials)) as client:
        url = await client.start_upload(repo)
        tokens = client._t._tokens  # noqa: SLF001 - the test forges a stale cache entry
        [key] = tokens
        tokens[key] = type(tokens[key])("not-a-valid-token", tokens[key].expires, anonymous=False)
        with pytest.raises(RegistryAuthExpired) as e:
            await client.upload_chunk(url, 0, lambda: chunks(data, 7), len(data))
        assert e.value.retryable and isinstance(e.value, RegistryConnectionError)
        url = await client.upload_chunk(url, 0, lambda: chunks(data, 7), len(data))
        await client.finish_upload(url, sha256_digest(data))


async def test_range_errors(registry_open: RegistryServer, tmp_path: Path) -> None:
    """A range past the end is the registry's 416; a registry location that vanished is NotFound."""
    repo = Repository(registry_open.url, "ns/range")
    data = b"0123456789"
    async with client_for(store_for(tmp_path, registry_open.host, None)) as client:
        await client.finish_upload(await client.start_upload(repo), sha256_digest(data), data)
        location = await client.blob_location(repo, sha256_digest(data))
        with pytest.raises(RegistryHTTPError) as e:
            await read_all(client, location, 10, 20)
        assert e.value.registry_status == 416
        registry_open.blob_path(sha256_digest(data)).unlink()
        with pytest.raises(RegistryNotFound):
            await read_all(client, location, 0, 3)
        with pytest.raises(ValueError):
            await read_all(client, location, 5, 4)


async def test_stopped_registry_is_a_connection_error(registry_open: RegistryServer, tmp_path: Path) -> None:
    """No registry listening: RegistryConnectionError, retryable, naming the host."""
    registry_open.stop()
    async with client_for(store_for(tmp_path, registry_open.host, None)) as client:
        with pytest.raises(RegistryConnectionError) as e:
            await client.manifest(Repository(registry_open.url, "ns/m"), "latest")
    assert e.value.retryable and registry_open.host in str(e.value)
    assert isinstance(e.value, RegistryError)


# -- a fake registry for what distribution does not do ------------------------------------------------
BLOB = bytes(range(256)) * 16
DIGEST = sha256_digest(BLOB)
TOKEN = "fake-token-123"
IDENTITY_TOKEN = "refresh-token-xyz"


@dataclass
class Seen:
    """What one server received: (method, path, Authorization or None, extra)."""

    requests: list[tuple[str, str, str | None]] = field(default_factory=list)
    bodies: list[bytes] = field(default_factory=list)
    forms: list[dict[str, str]] = field(default_factory=list)
    redirect_uploads: list[str] = field(default_factory=list)  # X-Redirect-Uploads of each PATCH


class FakeSites:
    """Three aiohttp servers on 127.0.0.1: a Bearer-protected registry, its token server (another port),
    and a "CDN" (another port) that serves blob ranges and takes redirected upload parts."""

    def __init__(self) -> None:
        self.registry, self.token, self.cdn = Seen(), Seen(), Seen()
        self._runners: list[web.AppRunner] = []
        self.ports: dict[str, int] = {}

    @property
    def registry_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['registry']}"

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.ports['registry']}"

    async def start(self) -> None:
        for name, routes in (
            ("registry", [web.route("*", "/{tail:.*}", self._registry)]),
            ("token", [web.route("*", "/token", self._token)]),
            ("cdn", [web.get("/blob", self._cdn_blob), web.put("/part", self._cdn_part)]),
        ):
            app = web.Application()
            app.add_routes(routes)
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            await web.TCPSite(runner, "127.0.0.1", 0).start()
            self._runners.append(runner)
            self.ports[name] = int(runner.addresses[0][1])

    async def close(self) -> None:
        for runner in self._runners:
            await runner.cleanup()

    async def _registry(self, request: web.Request) -> web.StreamResponse:
        auth = request.headers.get("Authorization")
        self.registry.requests.append((request.method, request.path_qs, auth))
        if auth != f"Bearer {TOKEN}":
            challenge = f'Bearer realm="http://127.0.0.1:{self.ports["token"]}/token",service="fake",scope="repository:ns/m:pull"'
            return web.json_response({"errors": [{"code": "UNAUTHORIZED"}]}, status=401, headers={"WWW-Authenticate": challenge})
        if request.path == f"/v2/ns/m/blobs/{DIGEST}":
            raise web.HTTPTemporaryRedirect(f"/internal/{DIGEST}")  # same origin: authorization must follow
        if request.path == f"/internal/{DIGEST}":
            raise web.HTTPTemporaryRedirect(f"http://127.0.0.1:{self.ports['cdn']}/blob?sig=signed")
        if request.method == "PATCH" and request.path == "/v2/ns/m/blobs/uploads/one":
            self.registry.redirect_uploads.append(request.headers.get("X-Redirect-Uploads", ""))
            self.registry.bodies.append(await request.read())
            return web.Response(
                status=307,
                headers={"Location": f"http://127.0.0.1:{self.ports['cdn']}/part?part=1", "Docker-Upload-Location": "/v2/ns/m/blobs/uploads/two?_state=x%3D"},
            )
        return web.Response(status=404)

    async def _token(self, request: web.Request) -> web.Response:
        self.token.requests.append((request.method, request.raw_path, request.headers.get("Authorization")))
        if request.method == "POST":
            form = {k: str(v) for k, v in (await request.post()).items()}
            self.token.forms.append(form)
            if form.get("refresh_token") != IDENTITY_TOKEN:
                return web.json_response({"error": "invalid_grant"}, status=401)
            return web.json_response({"access_token": TOKEN, "expires_in": 300})
        return web.json_response({"token": TOKEN})

    async def _cdn_blob(self, request: web.Request) -> web.Response:
        self.cdn.requests.append((request.method, request.path_qs, request.headers.get("Authorization")))
        first, _, last = request.headers["Range"].removeprefix("bytes=").partition("-")
        start, end = int(first), int(last)
        return web.Response(status=206, body=BLOB[start : end + 1], headers={"Content-Range": f"bytes {start}-{end}/{len(BLOB)}"})

    async def _cdn_part(self, request: web.Request) -> web.Response:
        self.cdn.requests.append((request.method, request.path_qs, request.headers.get("Authorization")))
        self.cdn.bodies.append(await request.read())
        return web.Response(status=200)


@pytest.fixture
async def fake() -> AsyncIterator[FakeSites]:
    sites = FakeSites()
    await sites.start()
    try:
        yield sites
    finally:
        await sites.close()


async def test_cross_host_redirect_gets_no_credentials(fake: FakeSites, tmp_path: Path) -> None:
    """blob_location follows the same-origin redirect with the token and stops at the first redirect to
    another host (port); reads from there carry no Authorization, and ranges arrive intact."""
    store = store_for(tmp_path, fake.host, Credentials("me", "pw-for-fake"))
    repo = Repository(fake.registry_url, "ns/m")
    async with client_for(store) as client:
        location = await client.blob_location(repo, DIGEST)
        assert location == BlobLocation(f"http://127.0.0.1:{fake.ports['cdn']}/blob?sig=signed", None)
        assert location.direct
        assert await read_all(client, location, 0, len(BLOB) - 1) == BLOB
        assert await read_all(client, location, 100, 199) == BLOB[100:200]
        assert await read_all(client, location, len(BLOB) - 1, len(BLOB) - 1) == BLOB[-1:]
    assert fake.cdn.requests and all(auth is None for _, _, auth in fake.cdn.requests)
    assert [(m, p, a) for m, p, a in fake.registry.requests if a is not None] == [
        ("GET", f"/v2/ns/m/blobs/{DIGEST}", f"Bearer {TOKEN}"),
        ("GET", f"/internal/{DIGEST}", f"Bearer {TOKEN}"),
    ]
    [(method, query, auth)] = fake.token.requests
    assert method == "GET" and auth == Credential("me", "pw-for-fake").basic_authorization()
    assert "scope=repository%3Ans%2Fm%3Apull" in query and "service=fake" in query


async def test_identity_token_from_docker_config(fake: FakeSites, tmp_path: Path) -> None:
    """A Docker ``identitytoken`` is exchanged with an OAuth2 refresh_token POST to the realm."""
    docker = tmp_path / "docker" / "config.json"
    docker.parent.mkdir()
    docker.write_text(json.dumps({"auths": {f"http://{fake.host}": {"auth": "PHRva2VuPjo=", "identitytoken": IDENTITY_TOKEN}}}))
    store = CredentialStore(tmp_path / "none.json", docker_config=docker)
    with capture_logs() as logs:
        async with client_for(store) as client:
            assert await client.blob_location(Repository(fake.registry_url, "ns/m"), DIGEST) == BlobLocation(
                f"http://127.0.0.1:{fake.ports['cdn']}/blob?sig=signed", None
            )
    [form] = fake.token.forms
    assert form == {"grant_type": "refresh_token", "refresh_token": IDENTITY_TOKEN, "client_id": "llamasup", "scope": "repository:ns/m:pull", "service": "fake"}
    assert IDENTITY_TOKEN not in repr(logs) and TOKEN not in repr(logs)


async def test_redirected_upload_part_goes_without_credentials(fake: FakeSites, tmp_path: Path) -> None:
    """A PATCH answered 307 (Ollama's X-Redirect-Uploads) is PUT to the redirect URL without
    Authorization; the next upload URL is the Docker-Upload-Location, made absolute."""
    store = store_for(tmp_path, fake.host, Credentials("me", "pw"))
    async with client_for(store) as client:
        following = await client.upload_chunk(f"{fake.registry_url}/v2/ns/m/blobs/uploads/one", 0, b"part-bytes", 10)
    assert following == f"{fake.registry_url}/v2/ns/m/blobs/uploads/two?_state=x%3D"
    assert fake.cdn.requests == [("PUT", "/part?part=1", None)]
    assert fake.cdn.bodies == [b"part-bytes"]
    assert fake.registry.bodies == [b"part-bytes"]
    assert fake.registry.redirect_uploads == ["1"]


async def test_a_redirected_streamed_part_is_streamed_again(fake: FakeSites, tmp_path: Path) -> None:
    """A part streamed from a file (as a push sends it) asks for the redirect too; on a 307 its
    stream is made again and PUT whole to the redirect URL, without credentials."""
    store = store_for(tmp_path, fake.host, Credentials("me", "pw"))
    data = os.urandom(10_000)
    made: list[int] = []

    def stream() -> AsyncIterator[bytes]:
        made.append(1)
        return chunks(data, 999)

    async with client_for(store) as client:
        following = await client.upload_chunk(f"{fake.registry_url}/v2/ns/m/blobs/uploads/one", 0, stream, len(data))
    assert following == f"{fake.registry_url}/v2/ns/m/blobs/uploads/two?_state=x%3D"
    assert len(made) == 2 and fake.registry.redirect_uploads == ["1"]
    assert fake.cdn.requests == [("PUT", "/part?part=1", None)] and fake.cdn.bodies == [data]


@dataclass
class RecordingSigner:
    """A `Signer` that records what it signed."""

    signed: list[tuple[str, str]] = field(default_factory=list)

    def authorization(self, method: str, url: str) -> str:
        self.signed.append((method, url))
        return f"signed-key:signature-{len(self.signed)}"


async def test_signer_signs_the_exact_token_url_for_its_hosts_only(fake: FakeSites, tmp_path: Path) -> None:
    """For a signed host without a stored login, the token request carries the signer's Authorization
    for exactly the URL sent (with Ollama's ts and nonce); a stored login is used instead when there is
    one, and other hosts are never signed for."""
    signer = RecordingSigner()
    repo = Repository(fake.registry_url, "ns/m")
    none = store_for(tmp_path, fake.host, None)
    async with RegistryClient(user_agent=UA, credentials=none, signer=signer, proxy_from_env=False, signed_hosts=frozenset({"127.0.0.1"})) as client:
        await client.blob_location(repo, DIGEST)
    [(method, url)] = signer.signed
    [(sent_method, raw_path, auth)] = fake.token.requests
    assert (method, sent_method, auth) == ("GET", "GET", "signed-key:signature-1")
    assert url == f"http://127.0.0.1:{fake.ports['token']}{raw_path}"
    query = raw_path.split("?", 1)[1]
    assert [item.split("=")[0] for item in query.split("&")] == ["nonce", "scope", "service", "ts"]

    async with RegistryClient(user_agent=UA, credentials=none, signer=signer, proxy_from_env=False) as client:
        await client.blob_location(repo, DIGEST)  # 127.0.0.1 is not one of Ollama's hosts
    with_login = store_for(tmp_path / "login", fake.host, Credentials("me", "pw"))
    async with RegistryClient(user_agent=UA, credentials=with_login, signer=signer, proxy_from_env=False, signed_hosts=frozenset({"127.0.0.1"})) as client:
        await client.blob_location(repo, DIGEST)
    assert len(signer.signed) == 1
    assert [auth for _, _, auth in fake.token.requests[1:]] == [None, Credential("me", "pw").basic_authorization()]


async def test_redirect_loops_and_bad_locations_are_protocol_errors(tmp_path: Path) -> None:
    """A registry that redirects forever, or without a Location, is a RegistryProtocolError."""

    async def loop(request: web.Request) -> web.Response:
        if request.path.endswith("nowhere"):
            return web.Response(status=302)
        raise web.HTTPFound(request.path + "x")

    app = web.Application()
    app.router.add_get("/{tail:.*}", loop)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    base = f"http://127.0.0.1:{runner.addresses[0][1]}"
    try:
        async with client_for(store_for(tmp_path, "unused", None)) as client:
            with pytest.raises(RegistryProtocolError, match="redirects"):
                await client.blob_location(Repository(base, "ns/m"), DIGEST)
            with pytest.raises(RegistryProtocolError, match="Location"):
                await client.manifest(Repository(base, "ns/nowhere"), "x/nowhere")
    finally:
        await runner.cleanup()
