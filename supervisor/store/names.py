"""Model names, exactly as Ollama's ``types/model/name.go`` parses and prints them.

Pure. Grammar: ``[scheme://][host/][namespace/]model[:tag]``. The tag is split off at the last ``:``
only when that colon comes after the last ``/`` (so ``host:5000/ns/m`` has a port, not a tag); then
``model`` is what follows the last ``/``, ``namespace`` the segment before it and ``host`` everything
before that (where a ``scheme://`` prefix is dropped). Missing parts take the defaults
``registry.ollama.ai`` / ``library`` / ``latest``; a part promised by a separator but empty (``ns/``,
``m:``, ``/m``) is invalid, as is anything that fails the per-part character and length rules
(``@digest`` suffixes fail them too, because ``@`` is not a name character).

A ``ModelName`` is always valid: the constructor checks every part, so a name built from directory
entries on disk is checked the same way as one typed by a user. Equality is case-sensitive (the case
is kept as typed, and on disk as created); lookups compare ``casefold_key`` instead, as Ollama does.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Literal

from ..errors import InvalidModelName

DEFAULT_HOST = "registry.ollama.ai"
DEFAULT_NAMESPACE = "library"
DEFAULT_TAG = "latest"
DEFAULT_SCHEME = "https"

PartKind = Literal["host", "namespace", "model", "tag"]

_ALNUM_UNDERSCORE = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_")
_EXTRA_CHARS: dict[PartKind, frozenset[str]] = {
    "host": frozenset("-_.:"),
    "namespace": frozenset("-_"),
    "model": frozenset("-_."),
    "tag": frozenset("-_."),
}
_KINDS: tuple[PartKind, ...] = ("host", "namespace", "model", "tag")
_MAX_LEN: dict[PartKind, int] = {"host": 350, "namespace": 80, "model": 80, "tag": 80}

# Ollama substitutes this for a part promised by a separator but empty; it fails validation.
_MISSING = "!MISSING!"


def is_valid_part(kind: PartKind, text: str) -> bool:
    """Whether ``text`` is a valid ``kind`` part (ASCII only; first char alphanumeric or ``_``)."""
    if not 1 <= len(text) <= _MAX_LEN[kind]:
        return False
    if text[0] not in _ALNUM_UNDERSCORE:
        return False
    extra = _EXTRA_CHARS[kind]
    return all(c in _ALNUM_UNDERSCORE or c in extra for c in text[1:])


def _cut_promised(text: str, sep: str) -> tuple[str, str, bool]:
    """Split at the last ``sep``; either side empty becomes ``_MISSING`` (Go's ``cutPromised``)."""
    i = text.rfind(sep)
    if i < 0:
        return text, "", False
    return text[:i] or _MISSING, text[i + len(sep) :] or _MISSING, True


@dataclass(frozen=True)
class ModelName:
    """A fully qualified, valid model name; ``scheme`` is kept for pulls but is not part of identity."""

    host: str
    namespace: str
    model: str
    tag: str
    scheme: str = field(default=DEFAULT_SCHEME, compare=False)

    def __post_init__(self) -> None:
        for kind, value in zip(_KINDS, self.parts, strict=True):
            if not isinstance(value, str) or not is_valid_part(kind, value):
                raise InvalidModelName()

    @classmethod
    def parse(cls, text: str) -> ModelName:
        """Parse a user-supplied name, filling defaults; raises ``InvalidModelName``. Every request
        names its model, so parsed names are kept (they are immutable)."""
        return _parse_name(text)

    @classmethod
    def _parse(cls, text: str) -> ModelName:
        s = text.strip()
        host = namespace = tag = ""
        scheme = DEFAULT_SCHEME
        if s.rfind(":") > s.rfind("/"):
            s, tag, _ = _cut_promised(s, ":")
        s, model, promised = _cut_promised(s, "/")
        if not promised:
            model = s
        else:
            s, namespace, promised = _cut_promised(s, "/")
            if not promised:
                namespace = s
            else:
                before, sep, after = s.partition("://")
                if sep:
                    scheme, host = before, after
                else:
                    host = s
        return cls(
            host=host or DEFAULT_HOST,
            namespace=namespace or DEFAULT_NAMESPACE,
            model=model,
            tag=tag or DEFAULT_TAG,
            scheme=scheme or DEFAULT_SCHEME,
        )

    @classmethod
    def try_parse(cls, text: str) -> ModelName | None:
        """``parse``, but ``None`` for an invalid name."""
        try:
            return cls.parse(text)
        except InvalidModelName:
            return None

    @property
    def display(self) -> str:
        """The shortest name: ``model:tag``, ``ns/model:tag`` or ``host/ns/model:tag``."""
        if self.host.lower() != DEFAULT_HOST:
            return f"{self.host}/{self.namespace}/{self.model}:{self.tag}"
        if self.namespace.lower() != DEFAULT_NAMESPACE:
            return f"{self.namespace}/{self.model}:{self.tag}"
        return f"{self.model}:{self.tag}"

    @property
    def casefold_key(self) -> tuple[str, str, str, str]:
        """Key under which names that differ only in case are the same model."""
        return (self.host.lower(), self.namespace.lower(), self.model.lower(), self.tag.lower())

    def equal_fold(self, other: ModelName) -> bool:
        """Case-insensitive equality (Ollama's ``EqualFold``)."""
        return self.casefold_key == other.casefold_key

    @property
    def parts(self) -> tuple[str, str, str, str]:
        """``(host, namespace, model, tag)`` as stored (case preserved)."""
        return (self.host, self.namespace, self.model, self.tag)

    def __str__(self) -> str:
        return f"{self.host}/{self.namespace}/{self.model}:{self.tag}"


@functools.lru_cache(maxsize=1024)
def _parse_name(text: str) -> ModelName:
    return ModelName._parse(text)
