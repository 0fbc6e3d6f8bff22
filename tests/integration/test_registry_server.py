"""The registry test infrastructure (tests/registry_server.py) against the real docker-registry, raw HTTP.

These tests also pin down how distribution 2.8 behaves where llamasup's registry client will rely on
it: what a challenge looks like in each auth mode, that a corrupted blob is served as stored (the
registry does not re-verify digests on GET), range requests, cross-repository mounts, and upload
sessions surviving a registry restart.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Mapping
from typing import Any

import aiohttp
import pytest
from multidict import CIMultiDictProxy

from tests.registry_server import (
    BASIC_REALM,
    MANIFEST_V2,
    SERVICE,
    Credentials,
    RegistryServer,
    SigningKey,
    TokenServer,
    manifest_for,
    parse_scope,
    sha256_digest,
)

OCTETS = {"Content-Type": "application/octet-stream"}


class Response:
    def __init__(self, status: int, headers: CIMultiDictProxy[str], body: bytes) -> None:
        self.status, self.headers, self.body = status, headers, body

    def json(self) -> Any:
        return json.loads(self.body)


def challenge_params(header: str) -> dict[str, str]:
    """``Bearer realm="…",service="…"`` → {"realm": …, "service": …} (the scheme is checked by callers)."""
    return dict(re.findall(r'(\w+)="([^"]*)"', header))


def canonical_scope(scope: str) -> str:
    """Each scope's actions sorted: the registry lists a challenge's actions from a Go map, so
    ``pull,push`` and ``push,pull`` both occur, varying from one request to the next."""
    items = (parse_scope(item) for item in scope.split(" "))
    return " ".join(f"{kind}:{name}:{','.join(sorted(actions))}" for kind, name, actions in items)


def bearer_challenge(header: str) -> dict[str, str]:
    """The parameters of a Bearer challenge, scope canonical."""
    assert header.startswith("Bearer "), header
    params = challenge_params(header)
    if "scope" in params:
        params["scope"] = canonical_scope(params["scope"])
    return params


class Client:
    """Just enough of a registry client for these tests: basic credentials sent up front (basic mode), or
    on a Bearer 401 the token dance (token server with basic credentials, then one retry with the token)."""

    def __init__(self, session: aiohttp.ClientSession, registry: RegistryServer) -> None:
        self.session, self.registry = session, registry

    async def request(self, method: str, url: str, *, headers: Mapping[str, str] | None = None, **kwargs: Any) -> Response:
        url = url if url.startswith("http") else self.registry.url + url
        sent = dict(headers or {})
        creds = self.registry.credentials
        if self.registry.mode == "basic" and creds is not None:
            sent["Authorization"] = creds.basic_header()
        resp = await self._send(method, url, sent, kwargs)
        challenge = resp.headers.get("WWW-Authenticate", "")
        if resp.status == 401 and challenge.startswith("Bearer ") and creds is not None:
            params = challenge_params(challenge)
            query = {"service": params["service"], **({"scope": params["scope"]} if "scope" in params else {})}
            async with self.session.get(params["realm"], params=query, headers={"Authorization": creds.basic_header()}) as r:
                assert r.status == 200, await r.text()
                token = (await r.json())["token"]
            sent["Authorization"] = f"Bearer {token}"
            resp = await self._send(method, url, sent, kwargs)
        return resp

    async def _send(self, method: str, url: str, headers: dict[str, str], kwargs: dict[str, Any]) -> Response:
        async with self.session.request(method, url, headers=headers, **kwargs) as r:
            return Response(r.status, r.headers, await r.read())

    async def push_blob(self, repo: str, data: bytes) -> str:
        """POST an upload, PUT its bytes with ``?digest=``; the blob's digest."""
        digest = sha256_digest(data)
        started = await self.request("POST", f"/v2/{repo}/blobs/uploads/")
        assert started.status == 202, started.body
        done = await self.request("PUT", started.headers["Location"], params={"digest": digest}, data=data, headers=OCTETS)
        assert done.status == 201, done.body
        assert done.headers["Docker-Content-Digest"] == digest
        return digest


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


@pytest.fixture(params=["open", "basic", "token"])
def registry(request: pytest.FixtureRequest) -> RegistryServer:
    """Each of the three registries in turn."""
    server = request.getfixturevalue(f"registry_{request.param}")
    assert isinstance(server, RegistryServer)
    return server


async def test_push_and_pull_round_trip(registry: RegistryServer, session: aiohttp.ClientSession) -> None:
    """In every auth mode a pushed blob answers HEAD, and a pushed v2 manifest comes back byte-identical."""
    client = Client(session, registry)
    config, layer = b'{"model_format":"gguf"}', b"GGUF" + bytes(range(256)) * 4
    config_digest = await client.push_blob("library/tiny", config)
    layer_digest = await client.push_blob("library/tiny", layer)

    head = await client.request("HEAD", f"/v2/library/tiny/blobs/{layer_digest}")
    assert head.status == 200
    assert head.headers["Content-Length"] == str(len(layer))
    assert head.headers["Docker-Content-Digest"] == layer_digest

    manifest = manifest_for(config, layer)
    put = await client.request("PUT", "/v2/library/tiny/manifests/latest", data=manifest, headers={"Content-Type": MANIFEST_V2})
    assert put.status == 201, put.body
    assert put.headers["Docker-Content-Digest"] == sha256_digest(manifest)

    got = await client.request("GET", "/v2/library/tiny/manifests/latest", headers={"Accept": MANIFEST_V2})
    assert got.status == 200
    assert got.body == manifest
    assert got.headers["Content-Type"] == MANIFEST_V2
    assert got.headers["Docker-Content-Digest"] == sha256_digest(manifest)
    for digest, data in ((config_digest, config), (layer_digest, layer)):
        blob = await client.request("GET", f"/v2/library/tiny/blobs/{digest}")
        assert (blob.status, blob.body) == (200, data)


async def test_manifest_by_tag_needs_accept_and_content_type(registry_open: RegistryServer, session: aiohttp.ClientSession) -> None:
    """distribution 2.8 refuses a v2 manifest PUT without its Content-Type, and a GET by tag without an
    Accept naming v2 (it will not down-convert to schema 1): both 400 MANIFEST_INVALID; by digest no Accept is needed."""
    client = Client(session, registry_open)
    config, layer = b"{}", b"layer"
    await client.push_blob("m/a", config)
    await client.push_blob("m/a", layer)
    manifest = manifest_for(config, layer)

    untyped = await client.request("PUT", "/v2/m/a/manifests/v1", data=manifest)
    assert untyped.status == 400
    assert untyped.json()["errors"][0]["code"] == "MANIFEST_INVALID"
    assert (await client.request("PUT", "/v2/m/a/manifests/v1", data=manifest, headers={"Content-Type": MANIFEST_V2})).status == 201

    by_tag = await client.request("GET", "/v2/m/a/manifests/v1")
    assert by_tag.status == 400
    assert by_tag.json()["errors"][0]["code"] == "MANIFEST_INVALID"
    by_digest = await client.request("GET", f"/v2/m/a/manifests/{sha256_digest(manifest)}")
    assert (by_digest.status, by_digest.body) == (200, manifest)


async def test_manifest_with_a_missing_blob_is_refused(registry_open: RegistryServer, session: aiohttp.ClientSession) -> None:
    """A manifest naming a blob the repository lacks is 400 MANIFEST_BLOB_UNKNOWN; an unknown tag is 404 MANIFEST_UNKNOWN."""
    client = Client(session, registry_open)
    put = await client.request("PUT", "/v2/m/b/manifests/v1", data=manifest_for(b"{}", b"nope"), headers={"Content-Type": MANIFEST_V2})
    assert put.status == 400
    assert put.json()["errors"][0]["code"] == "MANIFEST_BLOB_UNKNOWN"
    missing = await client.request("GET", "/v2/m/b/manifests/nope", headers={"Accept": MANIFEST_V2})
    assert missing.status == 404
    assert missing.json()["errors"][0]["code"] == "MANIFEST_UNKNOWN"


async def test_basic_challenge_and_wrong_password(registry_basic: RegistryServer, session: aiohttp.ClientSession) -> None:
    """Basic mode: no credentials or a wrong password is 401 with ``Basic realm="…"``; the right ones pass."""
    assert registry_basic.credentials is not None
    wrong = Credentials(registry_basic.credentials.username, "not-the-password")
    for headers in ({}, {"Authorization": wrong.basic_header()}):
        async with session.get(registry_basic.url + "/v2/library/tiny/manifests/latest", headers=headers) as r:
            assert r.status == 401
            assert r.headers["WWW-Authenticate"] == f'Basic realm="{BASIC_REALM}"'
            assert (await r.json())["errors"][0]["code"] == "UNAUTHORIZED"
    async with session.get(registry_basic.url + "/v2/", headers={"Authorization": registry_basic.credentials.basic_header()}) as r:
        assert r.status == 200


async def test_bearer_challenges_name_realm_service_and_scope(registry_token: RegistryServer, session: aiohttp.ClientSession) -> None:
    """Token mode: a request without a token is 401 with ``Bearer realm,service[,scope]``; the scope is
    what the request needs (pull to read, pull,push to upload, none for /v2/)."""
    assert registry_token.token_server is not None
    realm = registry_token.token_server.realm
    expected = {
        ("GET", "/v2/"): {"realm": realm, "service": SERVICE},
        ("GET", "/v2/library/tiny/manifests/latest"): {"realm": realm, "service": SERVICE, "scope": "repository:library/tiny:pull"},
        ("POST", "/v2/library/tiny/blobs/uploads/"): {"realm": realm, "service": SERVICE, "scope": "repository:library/tiny:pull,push"},
    }
    for (method, path), params in expected.items():
        async with session.request(method, registry_token.url + path) as r:
            assert r.status == 401
            header = r.headers["WWW-Authenticate"]
            assert header.startswith(f'Bearer realm="{realm}",service="{SERVICE}"')  # this order, then scope
            assert bearer_challenge(header) == params
    # Basic credentials mean nothing to a token registry: the same challenge again.
    assert registry_token.credentials is not None
    async with session.get(registry_token.url + "/v2/", headers={"Authorization": registry_token.credentials.basic_header()}) as r:
        assert (r.status, r.headers["WWW-Authenticate"]) == (401, f'Bearer realm="{realm}",service="{SERVICE}"')


async def test_token_flow_end_to_end(registry_token: RegistryServer, session: aiohttp.ClientSession) -> None:
    """Challenge → token server with basic credentials → ``Authorization: Bearer`` → 200; the token
    server saw the user, service and scope, and answers in the Docker token format."""
    ts, creds = registry_token.token_server, registry_token.credentials
    assert ts is not None and creds is not None
    async with session.post(registry_token.url + "/v2/ns/model/blobs/uploads/") as r:
        params = challenge_params(r.headers["WWW-Authenticate"])
    async with session.get(params["realm"], params={"service": params["service"], "scope": params["scope"]}, headers={"Authorization": creds.basic_header()}) as r:
        assert r.status == 200
        body = await r.json()
    assert set(body) == {"token", "access_token", "expires_in", "issued_at"}
    assert body["access_token"] == body["token"] and body["expires_in"] == ts.expires_in
    async with session.post(registry_token.url + "/v2/ns/model/blobs/uploads/", headers={"Authorization": f"Bearer {body['token']}"}) as r:
        assert r.status == 202
    [seen] = ts.requests
    assert (seen.user, seen.service, [canonical_scope(s) for s in seen.scopes], seen.status) == (creds.username, SERVICE, ["repository:ns/model:pull,push"], 200)


async def test_token_server_refusals_and_scopes(registry_token: RegistryServer, session: aiohttp.ClientSession) -> None:
    """A wrong password is 401 at the token server; an anonymous token grants nothing and a pull-only
    token cannot push: the registry answers 401 with ``error="insufficient_scope"``."""
    ts, creds = registry_token.token_server, registry_token.credentials
    assert ts is not None and creds is not None
    query = {"service": SERVICE, "scope": "repository:ns/model:pull,push"}
    wrong = Credentials(creds.username, "wrong")
    async with session.get(ts.realm, params=query, headers={"Authorization": wrong.basic_header()}) as r:
        assert r.status == 401

    async with session.get(ts.realm, params=query) as r:  # anonymous
        anonymous = (await r.json())["token"]
    async with session.get(ts.realm, params={**query, "scope": "repository:ns/model:pull"}, headers={"Authorization": creds.basic_header()}) as r:
        pull_only = (await r.json())["token"]
    for token in (anonymous, pull_only):
        async with session.post(registry_token.url + "/v2/ns/model/blobs/uploads/", headers={"Authorization": f"Bearer {token}"}) as r:
            assert r.status == 401
            assert bearer_challenge(r.headers["WWW-Authenticate"]) == {
                "realm": ts.realm,
                "service": SERVICE,
                "scope": "repository:ns/model:pull,push",
                "error": "insufficient_scope",
            }
    async with session.get(registry_token.url + "/v2/ns/model/tags/list", headers={"Authorization": f"Bearer {pull_only}"}) as r:
        assert r.status == 404  # authorized; the repository just does not exist yet

    ts.anonymous_actions = frozenset({"pull"})  # a public registry's policy, read per request
    async with session.get(ts.realm, params=query) as r:
        public = (await r.json())["token"]
    async with session.get(registry_token.url + "/v2/ns/model/tags/list", headers={"Authorization": f"Bearer {public}"}) as r:
        assert r.status == 404
    assert [(q.user, q.status) for q in ts.requests] == [(creds.username, 401), (None, 200), (creds.username, 200), (None, 200)]


async def test_untrusted_tokens_are_invalid(registry_token: RegistryServer, session: aiohttp.ClientSession) -> None:
    """Tokens from another key, for another issuer or audience, or expired, are 401 ``error="invalid_token"``."""
    ts = registry_token.token_server
    assert ts is not None
    access: list[dict[str, object]] = [{"type": "repository", "name": "ns/model", "actions": ["pull"]}]
    stranger = TokenServer(key=SigningKey())
    bad = {
        "other key": stranger.mint("u", access),
        "other issuer": ts.mint("u", access, issuer="someone-else"),
        "other audience": ts.mint("u", access, service="another-registry"),
        "expired": ts.mint("u", access, ttl=-120),  # past the registry's 60 s leeway
    }
    for why, token in bad.items():
        async with session.get(registry_token.url + "/v2/ns/model/tags/list", headers={"Authorization": f"Bearer {token}"}) as r:
            assert r.status == 401, why
            assert bearer_challenge(r.headers["WWW-Authenticate"])["error"] == "invalid_token", why
    async with session.get(registry_token.url + "/v2/ns/model/tags/list", headers={"Authorization": f"Bearer {ts.mint('u', access)}"}) as r:
        assert r.status == 404


async def test_blob_path_holds_the_stored_bytes_and_corruption_is_served_as_is(registry_open: RegistryServer, session: aiohttp.ClientSession) -> None:
    """`blob_path` is the blob's bytes on disk. The registry never re-hashes on GET: a corrupted blob is
    served 200 with its original ``Docker-Content-Digest`` (a truncated one with the new length);
    a removed one is 404 BLOB_UNKNOWN. Pull verification is the client's job."""
    client = Client(session, registry_open)
    data = b"the real bytes of a layer"
    digest = await client.push_blob("c/x", data)
    path = registry_open.blob_path(digest)
    assert path.relative_to(registry_open.storage).parts[:6] == ("docker", "registry", "v2", "blobs", "sha256", digest[7:9])
    assert path.read_bytes() == data

    path.write_bytes(b"X" * len(data))
    same_length = await client.request("GET", f"/v2/c/x/blobs/{digest}")
    assert (same_length.status, same_length.body) == (200, b"X" * len(data))
    assert same_length.headers["Docker-Content-Digest"] == digest

    path.write_bytes(b"short")
    truncated = await client.request("GET", f"/v2/c/x/blobs/{digest}")
    assert (truncated.status, truncated.body, truncated.headers["Content-Length"]) == (200, b"short", "5")

    path.unlink()
    gone = await client.request("GET", f"/v2/c/x/blobs/{digest}")
    assert gone.status == 404
    assert gone.json()["errors"][0]["code"] == "BLOB_UNKNOWN"


async def test_range_requests_and_cross_repository_mounts(registry_open: RegistryServer, session: aiohttp.ClientSession) -> None:
    """Blob GETs honour ``Range`` (206, ``Content-Range``); ``POST …/uploads/?mount=&from=`` is 201 when
    the source repository has the blob and falls back to a plain upload session (202) when it does not."""
    client = Client(session, registry_open)
    data = bytes(range(256))
    digest = await client.push_blob("r/source", data)
    part = await client.request("GET", f"/v2/r/source/blobs/{digest}", headers={"Range": "bytes=10-19"})
    assert (part.status, part.body, part.headers["Content-Range"]) == (206, data[10:20], f"bytes 10-19/{len(data)}")
    assert part.headers["Accept-Ranges"] == "bytes"

    mounted = await client.request("POST", "/v2/r/target/blobs/uploads/", params={"mount": digest, "from": "r/source"})
    assert mounted.status == 201
    assert mounted.headers["Docker-Content-Digest"] == digest
    assert (await client.request("GET", f"/v2/r/target/blobs/{digest}")).body == data
    not_there = await client.request("POST", "/v2/r/other/blobs/uploads/", params={"mount": digest, "from": "r/empty"})
    assert not_there.status == 202
    assert "Docker-Upload-Uuid" in not_there.headers


async def test_upload_session_survives_kill_and_restart(registry_open: RegistryServer, session: aiohttp.ClientSession) -> None:
    """A chunked upload begun before a SIGKILL continues after `start` (same port, storage, secret);
    the partial bytes sit in `upload_paths`; while down, requests fail to connect."""
    client = Client(session, registry_open)
    committed = await client.push_blob("u/x", b"committed before the kill")
    started = await client.request("POST", "/v2/u/x/blobs/uploads/")
    first = await client.request("PATCH", started.headers["Location"], data=b"part1-", headers={**OCTETS, "Content-Range": "0-5"})
    assert (first.status, first.headers["Range"]) == (202, "0-5")
    [partial] = registry_open.upload_paths("u/x")
    assert partial.read_bytes() == b"part1-"

    registry_open.kill()
    assert not registry_open.running
    with pytest.raises(aiohttp.ClientError):
        await client.request("GET", "/v2/")
    registry_open.kill()  # a no-op on a dead registry
    registry_open.start()

    status = await client.request("GET", first.headers["Location"])
    assert (status.status, status.headers["Range"]) == (204, "0-5")
    second = await client.request("PATCH", status.headers["Location"], data=b"part2", headers={**OCTETS, "Content-Range": "6-10"})
    assert (second.status, second.headers["Range"]) == (202, "0-10")
    done = await client.request("PUT", second.headers["Location"], params={"digest": sha256_digest(b"part1-part2")})
    assert done.status == 201, done.body
    assert registry_open.blob_path(sha256_digest(b"part1-part2")).read_bytes() == b"part1-part2"
    assert (await client.request("HEAD", f"/v2/u/x/blobs/{committed}")).status == 200


async def test_kill_mid_download_cuts_the_response_short(registry_open: RegistryServer, session: aiohttp.ClientSession) -> None:
    """`kill` during a blob download ends the body before its Content-Length (more than the loopback
    socket buffers can hold, so the cut is certain): what a resuming client will see."""
    client = Client(session, registry_open)
    size = 64 << 20
    digest = await client.push_blob("k/x", bytes(size))
    received = 0
    with pytest.raises(aiohttp.ClientPayloadError):
        async with session.get(f"{registry_open.url}/v2/k/x/blobs/{digest}") as r:
            assert r.status == 200 and r.content_length == size
            received += len(await r.content.readexactly(1 << 16))
            registry_open.kill()
            async for chunk in r.content.iter_any():
                received += len(chunk)
    assert 0 < received < size


async def test_start_failure_reports_exit_and_log_tail(registry_token: RegistryServer) -> None:
    """A registry that cannot start (here: a root certificate bundle with no certificate) fails `start`
    with its exit status and the tail of its log, and leaves no process behind."""
    broken = RegistryServer(registry_token.workdir.parent / "broken", "token", token_server=registry_token.token_server)
    (broken.workdir / "token-root.pem").write_text("not a certificate\n")
    with pytest.raises(AssertionError) as e:
        broken.start()
    assert "exited with" in str(e.value)
    assert "unable to configure authorization (token)" in str(e.value)
    assert not broken.running
    broken.stop()  # a no-op
