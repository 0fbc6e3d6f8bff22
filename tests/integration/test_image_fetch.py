"""``ImageFetcher`` against a real aiohttp server on 127.0.0.1, and image URLs through ``/v1/chat/completions``
(llamasup with the fake llama-server)."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.test_utils import TestServer

from supervisor.errors import BadRequest
from supervisor.service.fetch import DISABLED, ImageFetcher
from supervisor.settings import Settings
from tests.conftest import ServerFactory, base_url
from tests.projector_models import tiny_png

PNG = tiny_png()
LOOPBACK = (ipaddress.ip_network("127.0.0.0/8"),)
REFUSED = "address 127.0.0.1 is not allowed (set LLAMASUP_IMAGE_FETCH_ALLOW to permit it)"


@dataclass
class ImageServer:
    """A small web server with images, redirects and misbehaving routes; ``hits`` counts requests by path."""

    url: str
    hits: dict[str, int] = field(default_factory=dict)
    b_seen: asyncio.Event = field(default_factory=asyncio.Event)


@pytest.fixture
async def images() -> AsyncIterator[ImageServer]:
    never = asyncio.Event()  # never set: only the client's deadline ends a request for /never
    state = ImageServer(url="")

    @web.middleware
    async def count(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
        state.hits[request.path] = state.hits.get(request.path, 0) + 1
        return await handler(request)

    async def image(request: web.Request) -> web.Response:
        return web.Response(body=PNG, content_type="image/png")

    async def big(request: web.Request) -> web.Response:
        return web.Response(body=PNG + bytes(5000), content_type="image/png")

    async def endless(request: web.Request) -> web.StreamResponse:
        """A PNG that never ends, with no Content-Length (chunked): only the reader's limit stops it."""
        resp = web.StreamResponse(headers={"Content-Type": "image/png"})
        await resp.prepare(request)
        await resp.write(PNG)
        try:
            for _ in range(1 << 14):  # a bound for the case where nothing stops it: 1 GiB
                await resp.write(bytes(65536))
        except ConnectionError:
            pass  # the client went away, as it should
        return resp

    async def hang(request: web.Request) -> web.Response:
        await never.wait()
        return web.Response(body=PNG)

    async def redirect(request: web.Request) -> web.Response:
        raise web.HTTPFound(request.query["to"])

    async def loop(request: web.Request) -> web.Response:
        raise web.HTTPFound("/loop")

    async def page(request: web.Request) -> web.Response:
        return web.Response(text="<html>not an image</html>", content_type="text/html")

    async def missing(request: web.Request) -> web.Response:
        raise web.HTTPNotFound()

    async def wait_for_b(request: web.Request) -> web.Response:
        await state.b_seen.wait()  # answers only once /b has been asked for: the fetches overlap
        return web.Response(body=PNG)

    async def b(request: web.Request) -> web.Response:
        state.b_seen.set()
        return web.Response(body=tiny_png(seed=1))

    app = web.Application(middlewares=[count])
    app.router.add_get("/img.png", image)
    app.router.add_get("/big.png", big)
    app.router.add_get("/endless.png", endless)
    app.router.add_get("/never", hang)
    app.router.add_get("/redirect", redirect)
    app.router.add_get("/loop", loop)
    app.router.add_get("/page", page)
    app.router.add_get("/missing", missing)
    app.router.add_get("/a", wait_for_b)
    app.router.add_get("/b", b)
    server = TestServer(app, host="127.0.0.1", port=0, handler_cancellation=True)
    await server.start_server()
    state.url = base_url(server)
    yield state
    await server.close()


class StubResolver(AbstractResolver):
    """DNS without a network: fixed names to fixed addresses."""

    def __init__(self, names: dict[str, list[str]]) -> None:
        self.names = names

    async def resolve(self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        if host not in self.names:
            raise OSError(f"{host}: no such host")
        return [{"hostname": host, "host": a, "port": port, "family": socket.AF_INET6 if ":" in a else socket.AF_INET,
                 "proto": 0, "flags": socket.AI_NUMERICHOST} for a in self.names[host]]  # fmt: skip

    async def close(self) -> None:
        pass


@pytest.fixture
async def fetcher_factory() -> AsyncIterator[Callable[..., ImageFetcher]]:
    made: list[ImageFetcher] = []

    def make(resolver: AbstractResolver | None = None, **settings: Any) -> ImageFetcher:
        made.append(ImageFetcher(Settings(**settings), resolver=resolver))
        return made[-1]

    yield make
    for fetcher in made:
        await fetcher.close()


async def _refused(fetcher: ImageFetcher, url: str) -> str:
    with pytest.raises(BadRequest) as info:
        await fetcher.fetch([url])
    assert info.value.status == 400
    return info.value.message


async def test_allowed_network_is_fetched(images: ImageServer, fetcher_factory: Callable[..., ImageFetcher]) -> None:
    """With 127.0.0.0/8 allowed, an image on 127.0.0.1 is fetched byte for byte."""
    fetcher = fetcher_factory(image_fetch_allow=LOOPBACK)
    url = images.url + "/img.png"
    assert await fetcher.fetch([url]) == {url: PNG}


async def test_loopback_is_refused_by_default(images: ImageServer, fetcher_factory: Callable[..., ImageFetcher]) -> None:
    """By default 127.0.0.1 is refused with a message that names the URL, the address and the fix, and
    no connection is made."""
    url = images.url + "/img.png"
    assert await _refused(fetcher_factory(), url) == f'failed to fetch image "{url}": {REFUSED}'
    assert images.hits == {}


async def test_host_names_are_checked_where_they_resolve(images: ImageServer, fetcher_factory: Callable[..., ImageFetcher]) -> None:
    """A host name is judged by the addresses it resolves to: refused by default, fetched (from the
    address that was checked) when that network is allowed."""
    port = images.url.rsplit(":", 1)[1]
    resolver = StubResolver({"images.test": ["127.0.0.1"], "mixed.test": ["::1", "127.0.0.1"]})
    url = f"http://images.test:{port}/img.png"
    assert await _refused(fetcher_factory(resolver), url) == f'failed to fetch image "{url}": {REFUSED}'
    assert images.hits == {}
    assert await fetcher_factory(resolver, image_fetch_allow=LOOPBACK).fetch([url]) == {url: PNG}
    # Of several addresses only the allowed ones are used (::1 is not in 127.0.0.0/8, and nothing listens there).
    mixed = f"http://mixed.test:{port}/img.png"
    assert await fetcher_factory(resolver, image_fetch_allow=LOOPBACK).fetch([mixed]) == {mixed: PNG}


@pytest.mark.parametrize("host", ["127.1", "[::1]", "[::ffff:127.0.0.1]", "0.0.0.0", "localhost"])
async def test_other_spellings_of_this_machine_are_refused(images: ImageServer, fetcher_factory: Callable[..., ImageFetcher], host: str) -> None:
    """Short IPv4 forms, IPv6 loopback, IPv4-mapped IPv6, the unspecified address and localhost are refused."""
    port = images.url.rsplit(":", 1)[1]
    url = f"http://{host}:{port}/img.png"
    message = await _refused(fetcher_factory(StubResolver({"localhost": ["127.0.0.1", "::1"]})), url)
    assert message.startswith(f'failed to fetch image "{url}": ')
    assert "is not allowed" in message or "is not a canonical IPv4 address" in message
    assert images.hits == {}


async def test_size_limit_from_content_length(images: ImageServer, fetcher_factory: Callable[..., ImageFetcher]) -> None:
    """A body whose Content-Length is over the limit is refused."""
    fetcher = fetcher_factory(image_fetch_allow=LOOPBACK, image_fetch_max_bytes=4096)
    url = images.url + "/big.png"
    message = await _refused(fetcher, url)
    assert message.startswith(f'failed to fetch image "{url}": larger than 4096 bytes')
    assert "LLAMASUP_IMAGE_FETCH_MAX_BYTES" in message


async def test_size_limit_while_reading(images: ImageServer, fetcher_factory: Callable[..., ImageFetcher]) -> None:
    """A body of unknown length is read up to the limit and then refused (the endless body ends)."""
    fetcher = fetcher_factory(image_fetch_allow=LOOPBACK, image_fetch_max_bytes=100_000)
    url = images.url + "/endless.png"
    assert (await _refused(fetcher, url)).startswith(f'failed to fetch image "{url}": larger than 100000 bytes')


async def test_size_limit_covers_all_images_of_a_request(images: ImageServer, fetcher_factory: Callable[..., ImageFetcher]) -> None:
    """The limit is for a request's images together: two images that each fit but not together are refused."""
    fetcher = fetcher_factory(image_fetch_allow=LOOPBACK, image_fetch_max_bytes=len(PNG) + 10)
    one, two = images.url + "/img.png", images.url + "/img.png?again"
    assert await fetcher.fetch([one]) == {one: PNG}
    with pytest.raises(BadRequest, match=f"larger than {len(PNG) + 10} bytes"):
        await fetcher.fetch([one, two])


async def test_timeout(images: ImageServer, fetcher_factory: Callable[..., ImageFetcher]) -> None:
    """A server that never answers is given up on when the configured timeout passes."""
    fetcher = fetcher_factory(image_fetch_allow=LOOPBACK, image_fetch_timeout=0.2)
    url = images.url + "/never"
    assert await _refused(fetcher, url) == f'failed to fetch image "{url}": timed out after 0.2s'


async def test_redirects(images: ImageServer, fetcher_factory: Callable[..., ImageFetcher]) -> None:
    """Redirects are followed (relative ones too), and each hop is checked as the first URL is: a refused
    address, a refused host name, another scheme, and too many hops are refused, naming the hop."""
    resolver = StubResolver({"metadata.test": ["169.254.169.254"]})
    fetcher = fetcher_factory(resolver, image_fetch_allow=LOOPBACK)
    ok = images.url + "/redirect?to=/img.png"
    assert await fetcher.fetch([ok]) == {ok: PNG}
    cases = {
        "http://169.254.169.254/latest/meta-data/": "address 169.254.169.254 is not allowed",
        "http://metadata.test/latest/meta-data/": "address 169.254.169.254 is not allowed",
        "http://[::1]/x.png": "address ::1 is not allowed",
        "file:///etc/passwd": "unsupported scheme 'file' (only http and https)",
    }
    for target, reason in cases.items():
        url = f"{images.url}/redirect?to={target}"
        message = await _refused(fetcher, url)
        assert message.startswith(f'failed to fetch image "{url}": redirected to "{target}": {reason}'), message
    url = images.url + "/loop"
    assert (await _refused(fetcher, url)).endswith("more than 5 redirects")
    assert images.hits["/loop"] == 6


async def test_redirect_from_an_allowed_host_to_loopback(images: ImageServer, fetcher_factory: Callable[..., ImageFetcher]) -> None:
    """A redirect to 127.0.0.1 is refused when only the first host's address is allowed."""
    port = images.url.rsplit(":", 1)[1]
    fetcher = fetcher_factory(StubResolver({"public.test": ["127.0.0.1"]}), image_fetch_allow=(ipaddress.ip_network("127.0.0.1/32"),))
    target = f"http://127.0.0.2:{port}/img.png"
    url = f"http://public.test:{port}/redirect?to={target}"
    message = await _refused(fetcher, url)
    assert message == f'failed to fetch image "{url}": redirected to "{target}": address 127.0.0.2 is not allowed (set LLAMASUP_IMAGE_FETCH_ALLOW to permit it)'  # fmt: skip


async def test_not_an_image(images: ImageServer, fetcher_factory: Callable[..., ImageFetcher]) -> None:
    """An HTML page is not an image, and an error status is reported as such."""
    fetcher = fetcher_factory(image_fetch_allow=LOOPBACK)
    url = images.url + "/page"
    assert await _refused(fetcher, url) == f'failed to fetch image "{url}": is not an image (JPEG, PNG, GIF, BMP or WebP)'
    url = images.url + "/missing"
    assert await _refused(fetcher, url) == f'failed to fetch image "{url}": HTTP status 404'


@pytest.mark.parametrize("url", ["ftp://127.0.0.1/img.png", "file:///etc/passwd", "gopher://example.com/"])
async def test_unsupported_scheme(fetcher_factory: Callable[..., ImageFetcher], url: str) -> None:
    """Only http and https URLs are fetched."""
    scheme = url.split(":", 1)[0]
    assert await _refused(fetcher_factory(), url) == f'failed to fetch image "{url}": unsupported scheme {scheme!r} (only http and https)'


async def test_fetching_turned_off(images: ImageServer, fetcher_factory: Callable[..., ImageFetcher]) -> None:
    """With image_fetch off, image URLs are refused with Ollama's message, and nothing is fetched."""
    fetcher = fetcher_factory(image_fetch=False, image_fetch_allow=LOOPBACK)
    assert await _refused(fetcher, images.url + "/img.png") == DISABLED
    assert images.hits == {}
    assert await fetcher.fetch([]) == {}


async def test_images_are_fetched_concurrently(images: ImageServer, fetcher_factory: Callable[..., ImageFetcher]) -> None:
    """Several URLs are fetched side by side (/a answers only after /b was asked for), each once."""
    fetcher = fetcher_factory(image_fetch_allow=LOOPBACK)
    a, b = images.url + "/a", images.url + "/b"
    assert await fetcher.fetch([a, b, a]) == {a: PNG, b: tiny_png(seed=1)}
    assert (images.hits["/a"], images.hits["/b"]) == (1, 1)


# -- through the route ---------------------------------------------------------------------------
def _chat(url: str, model: str = "tiny") -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": [
        {"type": "text", "text": "What is it?"}, {"type": "image_url", "image_url": {"url": url}}]}]}  # fmt: skip


async def _post(server: TestServer, body: dict[str, Any]) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as session, session.post(base_url(server) + "/v1/chat/completions", json=body) as r:
        return r.status, await r.json()


async def test_route_fetches_the_image(images: ImageServer, start_server: ServerFactory, fake_llama_server_bin: Path) -> None:
    """An image URL reaches the chat use case as image bytes: a model without vision says so."""
    server = await start_server(fake_llama_server_bin, image_fetch_allow=LOOPBACK)
    status, reply = await _post(server, _chat(images.url + "/img.png"))
    assert status == 400
    assert reply["error"]["message"] == "registry.ollama.ai/library/tiny:latest does not support vision"
    assert images.hits == {"/img.png": 1}


async def test_route_refusals_are_openai_errors(images: ImageServer, start_server: ServerFactory, fake_llama_server_bin: Path) -> None:
    """A refused URL is a 400 in OpenAI's error shape, naming the URL and the reason."""
    server = await start_server(fake_llama_server_bin)
    url = images.url + "/img.png"
    status, reply = await _post(server, _chat(url))
    assert (status, reply) == (400, {"error": {"message": f'failed to fetch image "{url}": {REFUSED}', "type": "invalid_request_error",
                                               "param": None, "code": None}})  # fmt: skip
    assert images.hits == {}


async def test_route_with_fetching_turned_off(images: ImageServer, start_server: ServerFactory, fake_llama_server_bin: Path) -> None:
    """With fetching off the route answers as Ollama does."""
    server = await start_server(fake_llama_server_bin, image_fetch=False, image_fetch_allow=LOOPBACK)
    status, reply = await _post(server, _chat(images.url + "/img.png"))
    assert (status, reply["error"]["message"], reply["error"]["type"]) == (400, DISABLED, "invalid_request_error")
    assert images.hits == {}
