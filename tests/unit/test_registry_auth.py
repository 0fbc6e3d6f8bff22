"""Pure registry auth decisions: challenge parsing, the realm check, scopes, token URLs, proxies."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlsplit

import pytest

from supervisor.errors import BadRequest, RegistryRealmMismatch
from supervisor.registry.auth import (
    SIGNED_HOSTS,
    Challenge,
    basic_authorization,
    check_realm,
    describe_scopes,
    merge_scopes,
    parse_challenges,
    pick,
    repository_scope,
    token_url,
)
from supervisor.registry.client import Repository
from supervisor.registry.proxy import proxy_for
from supervisor.settings import ProxySettings
from supervisor.store.names import ModelName

REALM = "https://auth.example.com/token"


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (
            'Bearer realm="http://127.0.0.1:5001/token",service="svc",scope="repository:ns/m:pull,push"',
            [Challenge("bearer", (("realm", "http://127.0.0.1:5001/token"), ("service", "svc"), ("scope", "repository:ns/m:pull,push")))],
        ),
        ('Basic realm="llamasup-test-registry"', [Challenge("basic", (("realm", "llamasup-test-registry"),))]),
        ("basic", [Challenge("basic")]),
        (
            'BEARER Realm = "r" , Error="insufficient_scope"',
            [Challenge("bearer", (("realm", "r"), ("error", "insufficient_scope")))],
        ),
        ('Bearer realm="a\\"b\\\\c"', [Challenge("bearer", (("realm", 'a"b\\c'),))]),
        ('Bearer realm=unquoted, service=svc', [Challenge("bearer", (("realm", "unquoted"), ("service", "svc")))]),
        (
            'Bearer realm="r",scope="repository:a/b:pull repository:c/d:pull,push"',
            [Challenge("bearer", (("realm", "r"), ("scope", "repository:a/b:pull repository:c/d:pull,push")))],
        ),
        ("Negotiate abc123==", [Challenge("negotiate", (), "abc123==")]),
        ("", []),
        (",, ,", []),
        ('=oops, "stray", Basic realm="x"', [Challenge("basic", (("realm", "x"),))]),
    ],
)
def test_parse_challenges(header: str, expected: list[Challenge]) -> None:
    """Single challenges, case-insensitive schemes and names, escapes, tokens, token68 and junk."""
    assert parse_challenges(header) == expected


def test_quoted_commas_and_multiple_challenges() -> None:
    """A quoted value may hold commas and ``=``; one header may carry several challenges, and several
    headers are read in order."""
    header = 'Basic realm="a, b=c", Bearer realm="https://h/t?x=1,2",service="s, t",scope="repository:n:pull,push", Negotiate'
    got = parse_challenges(header)
    assert [c.scheme for c in got] == ["basic", "bearer", "negotiate"]
    assert got[0].realm == "a, b=c"
    assert (got[1].realm, got[1].service, got[1].scopes) == ("https://h/t?x=1,2", "s, t", ("repository:n:pull,push",))
    assert parse_challenges(['Basic realm="one"', 'Bearer realm="two"']) == [
        Challenge("basic", (("realm", "one"),)),
        Challenge("bearer", (("realm", "two"),)),
    ]


def test_pick_prefers_bearer_and_reads_error() -> None:
    """Bearer is answered before Basic; ``error`` and space-separated scopes are exposed."""
    challenges = parse_challenges('Basic realm="b", Bearer realm="r",error="insufficient_scope",scope="repository:a:pull repository:b:push"')
    chosen = pick(challenges)
    assert chosen is not None and chosen.scheme == "bearer"
    assert chosen.error == "insufficient_scope"
    assert chosen.scopes == ("repository:a:pull", "repository:b:push")
    assert pick(parse_challenges("Negotiate x")) is None
    assert pick([]) is None


@pytest.mark.parametrize(
    ("realm", "request_url"),
    [
        ("https://registry.example.com/token", "https://registry.example.com/v2/a/b/manifests/latest"),
        ("http://127.0.0.1:5001/token", "http://127.0.0.1:5000/v2/a/b/blobs/uploads/"),  # another port: accepted
        ("https://REGISTRY.example.com:8443/token", "https://registry.example.com/v2/"),
        ("https://h/token", "http://h/v2/"),  # an upgrade is fine
    ],
)
def test_realm_on_the_same_host_name_is_accepted(realm: str, request_url: str) -> None:
    """Only the host name must match (Ollama compares host:port; llamasup allows another port)."""
    check_realm(realm, request_url)


@pytest.mark.parametrize(
    ("realm", "request_url", "message"),
    [
        ("https://evil.example.com/token", "https://registry.example.com/v2/", 'realm host "evil.example.com" does not match original host "registry.example.com"'),
        ("http://127.0.0.2:5001/token", "http://127.0.0.1:5000/v2/", 'realm host "127.0.0.2" does not match original host "127.0.0.1"'),
        ("http://registry.example.com/token", "https://registry.example.com/v2/", "is not https although the registry is"),
        ("ftp://registry.example.com/token", "https://registry.example.com/v2/", "is not an http(s) URL"),
        ("/token", "https://registry.example.com/v2/", "is not an http(s) URL"),
    ],
)
def test_realm_elsewhere_is_refused(realm: str, request_url: str, message: str) -> None:
    """Another host, a downgrade to http, or no URL at all: credentials are not sent there."""
    with pytest.raises(RegistryRealmMismatch) as e:
        check_realm(realm, request_url)
    assert message in str(e.value)


def test_token_url_encodes_like_go() -> None:
    """Keys sorted, each scope its own parameter, the realm's own query kept, QueryEscape encoding."""
    url = token_url("https://auth.example.com/token?account=me", service="registry.example.com", scopes=["repository:a/b:pull", "repository:c/d:pull,push"])
    assert url == (
        "https://auth.example.com/token?account=me"
        "&scope=repository%3Aa%2Fb%3Apull&scope=repository%3Ac%2Fd%3Apull%2Cpush&service=registry.example.com"
    )
    assert parse_qsl(urlsplit(url).query) == [
        ("account", "me"),
        ("scope", "repository:a/b:pull"),
        ("scope", "repository:c/d:pull,push"),
        ("service", "registry.example.com"),
    ]
    signed = token_url(REALM, service="s", scopes=["repository:x:pull"], extra=[("ts", "1700000000"), ("nonce", "n o")])
    assert signed == "https://auth.example.com/token?nonce=n+o&scope=repository%3Ax%3Apull&service=s&ts=1700000000"
    assert token_url(REALM, service=None, scopes=[]) == REALM


def test_scopes() -> None:
    """Scopes are built, merged per repository with actions in a stable order, and described."""
    assert repository_scope("library/tiny", "pull") == "repository:library/tiny:pull"
    assert merge_scopes(["repository:a:push,pull"], ["repository:a:pull", "repository:b:pull"]) == ("repository:a:pull,push", "repository:b:pull")
    assert merge_scopes(["repository:127.0.0.1:5000/a:pull"]) == ("repository:127.0.0.1:5000/a:pull",)
    assert merge_scopes(["registry:catalog:*", "odd"]) == ("registry:catalog:*", "odd")
    assert describe_scopes(["repository:ns/m:pull,push", "repository:src/x:pull"]) == "pull,push on ns/m; pull on src/x"
    assert describe_scopes([]) == "access"


def test_basic_authorization_and_signature_hosts() -> None:
    """Basic is base64(user:password); only Ollama's own hosts and Hugging Face's (which takes Ollama
    keys for private GGUFs) get signed token requests."""
    assert basic_authorization("llamasup", "registry-password") == "Basic bGxhbWFzdXA6cmVnaXN0cnktcGFzc3dvcmQ="
    assert SIGNED_HOSTS == {"registry.ollama.ai", "ollama.com", "hf.co", "huggingface.co"}


@pytest.mark.parametrize(
    ("name", "insecure", "base_url", "path"),
    [
        ("llama3.2", False, "https://registry.ollama.ai", "library/llama3.2"),
        ("127.0.0.1:5000/ns/m:tag", True, "http://127.0.0.1:5000", "ns/m"),
        ("http://127.0.0.1:5000/ns/m", True, "http://127.0.0.1:5000", "ns/m"),
        ("hf.co/user/repo:Q4_K_M", False, "https://hf.co", "user/repo"),
    ],
)
def test_repository_of_name(name: str, insecure: bool, base_url: str, path: str) -> None:
    """A name's repository: https unless insecure (which downgrades to http, as Ollama does)."""
    repo = Repository.of(ModelName.parse(name), insecure=insecure)
    assert (repo.base_url, repo.path) == (base_url, path)
    assert repo.pull_scope == f"repository:{path}:pull" and repo.push_scope == f"repository:{path}:pull,push"


@pytest.mark.parametrize(
    ("name", "manifest_url"),
    [
        ("hf.co/bartowski/Llama-3.2-1B-Instruct-GGUF:Q4_K_M", "https://hf.co/v2/bartowski/Llama-3.2-1B-Instruct-GGUF/manifests/Q4_K_M"),
        ("huggingface.co/user/repo", "https://huggingface.co/v2/user/repo/manifests/latest"),
    ],
)
def test_hugging_face_names_are_registry_names(name: str, manifest_url: str) -> None:
    """``hf.co/<user>/<repo>:<quant>`` is a plain registry name: host, namespace (user), model (repo),
    tag (quant), as reference/ollama-api.md §9 says Hugging Face serves them."""
    parsed = ModelName.parse(name)
    assert str(Repository.of(parsed, insecure=False).url(f"manifests/{parsed.tag}")) == manifest_url


def test_http_scheme_without_insecure_is_refused() -> None:
    """``http://`` in the name without ``insecure``: Ollama's ``insecure protocol http`` (400)."""
    with pytest.raises(BadRequest) as e:
        Repository.of(ModelName.parse("http://127.0.0.1:5000/ns/m"), insecure=False)
    assert str(e.value) == "insecure protocol http"
    assert e.value.status == 400


def test_repository_host_and_urls() -> None:
    """``host`` keeps an explicit port (the credentials key); URLs go under /v2/<path>/."""
    repo = Repository("http://127.0.0.1:5000/", "ns/m")
    assert repo.host == "127.0.0.1:5000"
    assert str(repo.url("manifests/latest")) == "http://127.0.0.1:5000/v2/ns/m/manifests/latest"
    assert Repository("https://Registry.Ollama.AI", "library/x").host == "registry.ollama.ai"


PROXIES = ProxySettings(https="http://user:p%40ss@proxy.corp:3128", http="proxy.corp:8080", no_proxy="internal.corp, .svc, *.local, 10.0.0.0/8, 192.168.1.5, registry.example.com:5000")


@pytest.mark.parametrize(
    ("url", "proxy"),
    [
        ("https://registry.ollama.ai/v2/", "http://proxy.corp:3128"),
        ("http://registry.ollama.ai/v2/", "http://proxy.corp:8080"),  # no scheme: http://
        ("https://internal.corp/v2/", None),
        ("https://a.internal.corp/v2/", None),  # a plain name also covers subdomains
        ("https://svc/v2/", "http://proxy.corp:3128"),  # ".svc" covers subdomains only
        ("https://x.svc/v2/", None),
        ("https://x.local/v2/", None),
        ("https://10.1.2.3/v2/", None),
        ("https://192.168.1.5/v2/", None),
        ("https://192.168.1.6/v2/", "http://proxy.corp:3128"),
        ("https://registry.example.com:5000/v2/", None),
        ("https://registry.example.com/v2/", "http://proxy.corp:3128"),  # another port
        ("http://127.0.0.1:5000/v2/", None),  # loopback: never
        ("http://localhost:5000/v2/", None),
        ("http://[::1]:5000/v2/", None),
    ],
)
def test_proxy_choice(url: str, proxy: str | None) -> None:
    """Go's httpproxy rules: scheme picks the proxy; NO_PROXY names, suffixes, CIDRs, ports; loopback direct."""
    chosen = proxy_for(PROXIES, url)
    assert (chosen.url if chosen else None) == proxy


def test_proxy_credentials_become_a_redacted_header() -> None:
    """Credentials in a proxy URL move to Proxy-Authorization and stay out of the URL and the repr."""
    chosen = proxy_for(PROXIES, "https://registry.ollama.ai/v2/")
    assert chosen is not None
    assert chosen.url == "http://proxy.corp:3128"
    assert chosen.authorization == basic_authorization("user", "p@ss")
    assert "p@ss" not in repr(chosen) and "cEBzcw" not in repr(chosen)
    assert proxy_for(ProxySettings(https="http://proxy:1", no_proxy="*"), "https://a/") is None
    assert proxy_for(ProxySettings(), "https://a/") is None
