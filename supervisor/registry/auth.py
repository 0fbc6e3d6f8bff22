"""Registry authentication decisions (pure): challenges, scopes, token URLs, the realm check.

A registry answers an unauthenticated request with ``401`` and ``WWW-Authenticate``. Two schemes
matter: ``Basic realm="…"`` (send the stored user and password) and the Docker token protocol's
``Bearer realm="<token url>",service="…",scope="repository:ns/model:pull,push"[,error="…"]`` (GET a
token from the realm, then send ``Authorization: Bearer <token>``). `parse_challenges` reads the
header as RFC 7235 writes it: several challenges in one header (or in several headers), parameters
whose quoted values hold commas, escapes and spaces, and bare token68 credentials.

The realm check differs from Ollama's on purpose. Ollama refuses a realm whose ``host:port`` differs
from the registry's; llamasup compares host *names* only, so a token server on another port of the
same host is accepted (the Docker registry's own test setups, and ours, run it that way). It still
refuses another host — stored credentials are sent to the realm — and refuses an ``http`` realm for an
``https`` registry, which would send them in the clear.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import parse_qsl, quote_plus, urlsplit, urlunsplit

from ..errors import RegistryRealmMismatch

# Hosts whose token servers take Ollama's signed token requests (the signer is only used for these:
# it identifies the user's Ollama key, which other registries have no business seeing): Ollama's own,
# and Hugging Face's, where users add that key to their account to pull private GGUFs.
SIGNED_HOSTS = frozenset({"registry.ollama.ai", "ollama.com", "hf.co", "huggingface.co"})

_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_TOKEN68 = re.compile(r"[A-Za-z0-9\-._~+/]+=*")
_PARAM = re.compile(r'([!#$%&\'*+\-.^_`|~0-9A-Za-z]+)[ \t]*=[ \t]*("(?:[^"\\]|\\.)*"|[!#$%&\'*+\-.^_`|~0-9A-Za-z]+)', re.S)
_ESCAPE = re.compile(r"\\(.)", re.S)


class Signer(Protocol):
    """Signs a token request the way Ollama's registry expects (written elsewhere: ``~/.ollama`` keys)."""

    def authorization(self, method: str, url: str) -> str:
        """The ``Authorization`` header value for ``method`` on exactly this ``url``."""
        ...


@dataclass(frozen=True)
class Challenge:
    """One ``WWW-Authenticate`` challenge: ``scheme`` lower-cased, parameter names lower-cased."""

    scheme: str
    params: tuple[tuple[str, str], ...] = ()
    token68: str = ""

    def param(self, name: str) -> str | None:
        for key, value in self.params:
            if key == name:
                return value
        return None

    @property
    def realm(self) -> str | None:
        return self.param("realm")

    @property
    def service(self) -> str | None:
        return self.param("service")

    @property
    def scopes(self) -> tuple[str, ...]:
        """The challenge's scopes (a ``scope`` value may list several, separated by spaces)."""
        return tuple(s for s in (self.param("scope") or "").split(" ") if s)

    @property
    def error(self) -> str | None:
        """``invalid_token``, ``insufficient_scope`` … (RFC 6750), when the registry says why."""
        return self.param("error")


def _split_top_level(header: str) -> list[str]:
    """Split at commas outside quoted strings."""
    items: list[str] = []
    current: list[str] = []
    quoted = escaped = False
    for ch in header:
        if escaped:
            escaped = False
        elif quoted and ch == "\\":
            escaped = True
        elif ch == '"':
            quoted = not quoted
        elif ch == "," and not quoted:
            items.append("".join(current))
            current = []
            continue
        current.append(ch)
    items.append("".join(current))
    return [item.strip(" \t") for item in items]


def _param(item: str) -> tuple[str, str] | None:
    m = _PARAM.fullmatch(item)
    if m is None:
        return None
    name, value = m.group(1).lower(), m.group(2)
    if value.startswith('"'):
        value = _ESCAPE.sub(r"\1", value[1:-1])
    return name, value


def parse_challenges(headers: str | Iterable[str]) -> list[Challenge]:
    """Every challenge in one ``WWW-Authenticate`` value or several; malformed pieces are skipped."""
    values = [headers] if isinstance(headers, str) else list(headers)
    out: list[Challenge] = []
    scheme: str | None = None
    params: list[tuple[str, str]] = []
    token68 = ""

    def flush() -> None:
        if scheme is not None:
            out.append(Challenge(scheme, tuple(params), token68))

    for item in (i for value in values for i in _split_top_level(value)):
        if not item:
            continue
        param = _param(item)
        if param is not None and scheme is not None:
            params.append(param)
            continue
        head, _, rest = item.partition(" ")
        rest = rest.strip(" \t")
        if _TOKEN.fullmatch(head) is None:
            continue  # neither a parameter of the current challenge nor a new one
        flush()
        scheme, params, token68 = head.lower(), [], ""
        if rest:
            if (first := _param(rest)) is not None:
                params.append(first)
            elif _TOKEN68.fullmatch(rest):
                token68 = rest
    flush()
    return out


def pick(challenges: Sequence[Challenge]) -> Challenge | None:
    """The challenge to answer: Bearer before Basic (a registry may offer both); None if neither."""
    for scheme in ("bearer", "basic"):
        for challenge in challenges:
            if challenge.scheme == scheme:
                return challenge
    return None


def check_realm(realm: str, request_url: str) -> None:
    """Refuse a token realm llamasup must not send credentials to (see the module docstring)."""
    r, q = urlsplit(realm), urlsplit(request_url)
    if r.scheme not in ("http", "https") or not r.hostname:
        raise RegistryRealmMismatch(f'realm "{realm}" is not an http(s) URL')
    if r.hostname != (q.hostname or ""):  # urlsplit lower-cases hostnames
        raise RegistryRealmMismatch(f'realm host "{r.hostname}" does not match original host "{q.hostname}"')
    if q.scheme == "https" and r.scheme != "https":
        raise RegistryRealmMismatch(f'realm "{realm}" is not https although the registry is')


# -- scopes ----------------------------------------------------------------------------------------
def repository_scope(path: str, *actions: str) -> str:
    """``repository:<path>:<actions>`` (``repository:library/llama3.2:pull,push``)."""
    return f"repository:{path}:{','.join(actions)}"


def _split_scope(scope: str) -> tuple[str, str, list[str]] | None:
    kind, _, rest = scope.partition(":")
    name, sep, actions = rest.rpartition(":")
    if not kind or not sep or not name:
        return None
    return kind, name, [a for a in actions.split(",") if a]


_ACTION_ORDER = {"pull": 0, "push": 1}


def merge_scopes(*groups: Iterable[str]) -> tuple[str, ...]:
    """The union of scopes, one per resource, actions merged (``pull`` then ``push``, then the rest
    sorted): the registry lists a challenge's actions in varying order, so compare merged forms."""
    merged: dict[tuple[str, str], set[str]] = {}
    odd: list[str] = []
    for scope in (s for group in groups for s in group):
        parts = _split_scope(scope)
        if parts is None:
            if scope not in odd:
                odd.append(scope)
            continue
        merged.setdefault((parts[0], parts[1]), set()).update(parts[2])
    out = [f"{kind}:{name}:{','.join(sorted(acts, key=lambda a: (_ACTION_ORDER.get(a, 2), a)))}" for (kind, name), acts in merged.items()]
    return tuple(out + odd)


def describe_scopes(scopes: Iterable[str]) -> str:
    """``pull,push on ns/model`` for messages: what was asked, without the ``repository:`` noise."""
    parts = []
    for scope in scopes:
        split = _split_scope(scope)
        parts.append(f"{','.join(split[2])} on {split[1]}" if split else scope)
    return "; ".join(parts) or "access"


def repositories(scopes: Iterable[str]) -> list[str]:
    """The repository names a set of scopes is about (what log events may name)."""
    return [split[1] for s in scopes if (split := _split_scope(s)) is not None]


# -- token requests --------------------------------------------------------------------------------
def token_url(realm: str, *, service: str | None, scopes: Sequence[str], extra: Sequence[tuple[str, str]] = ()) -> str:
    """``<realm>?scope=…&service=…`` with the realm's own query kept, one ``scope`` per scope, and
    ``extra`` (Ollama's ``ts``/``nonce`` for signed requests). Encoded as Go's ``url.Values.Encode``
    does — keys sorted, values in order, ``QueryEscape`` — so a signed URL is the one Ollama would sign."""
    parts = urlsplit(realm)
    items = parse_qsl(parts.query, keep_blank_values=True)
    if service:
        items.append(("service", service))
    items.extend(("scope", s) for s in scopes)
    items.extend(extra)
    items.sort(key=lambda kv: kv[0])  # stable: values of one key keep their order
    query = "&".join(f"{quote_plus(k)}={quote_plus(v)}" for k, v in items)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, ""))


def basic_authorization(username: str, password: str) -> str:
    """``Basic base64(user:password)``."""
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()
