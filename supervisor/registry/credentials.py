"""Where registry credentials come from, and the file ``llamasup login`` writes.

Two files are read, in this order, for the registry host (``host`` or ``host:port``):

1. llamasup's own, ``settings.credentials_file`` (``~/.config/llamasup/credentials.json``, or
   ``LLAMASUP_CREDENTIALS``): Docker's layout, ``{"auths": {"<host>": {"auth": base64("user:pass")}}}``.
   `save` and `remove` write it atomically (a temporary file in the same directory, ``fsync``,
   ``rename``), mode 0600, in a directory created 0700; other keys in it are kept.
2. Docker's ``config.json`` (``settings.docker_config``; ``$DOCKER_CONFIG`` or ``~/.docker``), read only:
   an ``auths`` entry's ``auth`` (base64 ``user:pass``), or ``username``/``password``, or an
   ``identitytoken`` (an OAuth2 refresh token, exchanged at the token server). Credential helpers
   (``credsStore``, ``credHelpers``) are not run. A malformed Docker config is skipped with a warning:
   it belongs to another program, and a pull that needs no login must not fail over it.

Keys are matched as Docker matches them: exactly first, then after normalising (scheme and path
dropped, lower-cased), so ``https://host``, ``host/v1/`` and ``https://index.docker.io/v1/`` (for
``docker.io`` and its aliases) all find a host.

A `Credential` never shows its secret: its ``repr`` and ``str`` redact the password and token, and
nothing here logs or raises with file contents.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

from ..errors import CredentialsFileError
from ..settings import Settings

log = structlog.get_logger("supervisor.registry")

DOCKER_HUB_ALIASES = frozenset({"docker.io", "index.docker.io", "registry-1.docker.io"})
FILE_MODE = 0o600
DIR_MODE = 0o700


@dataclass(frozen=True, repr=False)
class Credential:
    """A user name and password, or an identity token, for one registry; ``source`` is the file it came from."""

    username: str
    password: str = ""
    identity_token: str = ""
    source: str = ""

    @property
    def secrets(self) -> tuple[str, ...]:
        """Every secret string this credential holds (for scrubbing text that might echo them)."""
        return tuple(s for s in (self.password, self.identity_token) if s)

    def basic_authorization(self) -> str:
        """``Basic base64(user:password)``."""
        return "Basic " + base64.b64encode(f"{self.username}:{self.password}".encode()).decode()

    def __repr__(self) -> str:
        kind = "identity_token" if self.identity_token else "password"
        return f"Credential(username={self.username!r}, {kind}=<redacted>, source={self.source!r})"

    __str__ = __repr__


def normalize_host(key: str) -> str:
    """``https://Host:5000/v1/`` → ``host:5000``: Docker's ``ConvertToHostname``, lower-cased, with the
    Docker Hub aliases folded into ``docker.io``."""
    s = key.strip().lower()
    for prefix in ("https://", "http://"):
        if s.startswith(prefix):
            s = s[len(prefix) :]
            break
    s = s.split("/", 1)[0]
    return "docker.io" if s in DOCKER_HUB_ALIASES else s


def _decode_entry(entry: Any, source: str) -> Credential | None:
    if not isinstance(entry, dict):
        return None
    username, password = entry.get("username"), entry.get("password")
    auth = entry.get("auth")
    if isinstance(auth, str) and auth:
        try:
            decoded = base64.b64decode(auth + "=" * (-len(auth) % 4), validate=False).decode()
        except (binascii.Error, UnicodeDecodeError):
            return None
        user, sep, secret = decoded.partition(":")
        if not sep:
            return None
        username, password = user, secret
    token = entry.get("identitytoken")
    if isinstance(token, str) and token:
        return Credential(username if isinstance(username, str) else "", identity_token=token, source=source)
    if isinstance(username, str) and username and isinstance(password, str):
        return Credential(username, password, source=source)
    return None


def _find(auths: dict[str, Any], host: str, source: str) -> Credential | None:
    """The entry for ``host``: an exact key wins over a normalised match."""
    if host in auths and (found := _decode_entry(auths[host], source)) is not None:
        return found
    wanted = normalize_host(host)
    for key, entry in auths.items():
        if normalize_host(key) == wanted and (found := _decode_entry(entry, source)) is not None:
            return found
    return None


class CredentialStore:
    """Looks credentials up by registry host; `save`/`remove` change llamasup's own file only."""

    def __init__(self, path: Path, *, docker_config: Path | None = None) -> None:
        self.path = path
        self.docker_config = docker_config

    @classmethod
    def from_settings(cls, settings: Settings) -> CredentialStore:
        return cls(settings.credentials_file, docker_config=settings.docker_config)

    def __repr__(self) -> str:
        return f"CredentialStore(path={str(self.path)!r}, docker_config={str(self.docker_config) if self.docker_config else None!r})"

    def lookup(self, host: str) -> Credential | None:
        """The credential for ``host`` (``registry.example.com`` or ``127.0.0.1:5000``), or None."""
        own = _auths(self._read_own())
        if (found := _find(own, host, str(self.path))) is not None:
            return found
        if self.docker_config is not None:
            return _find(_auths(self._read_docker()), host, str(self.docker_config))
        return None

    def save(self, host: str, username: str, password: str) -> None:
        """Store (or replace) the login for ``host`` in llamasup's credentials file."""
        key = normalize_host(host)
        if not key:
            raise CredentialsFileError("a registry host is required")
        if not username or ":" in username:
            raise CredentialsFileError("a user name is required and cannot contain ':'")
        document = self._read_own()
        auths = _auths(document)
        for other in [k for k in auths if normalize_host(k) == key]:
            del auths[other]
        auths[key] = {"auth": base64.b64encode(f"{username}:{password}".encode()).decode()}
        document["auths"] = auths
        self._write_own(document)
        log.info("registry_login_saved", host=key)

    def remove(self, host: str) -> bool:
        """Forget ``host`` in llamasup's file (every key form of it); whether anything was removed.
        Docker's config is never changed, so a login kept there still applies."""
        key = normalize_host(host)
        document = self._read_own()
        auths = _auths(document)
        gone = [k for k in auths if normalize_host(k) == key]
        if not gone:
            return False
        for k in gone:
            del auths[k]
        document["auths"] = auths
        self._write_own(document)
        log.info("registry_login_removed", host=key)
        return True

    # -- files ---------------------------------------------------------------------------------------
    def _read_own(self) -> dict[str, Any]:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return {}
        except OSError as e:
            raise CredentialsFileError(f"cannot read credentials file {self.path}: {e.strerror}") from None
        try:
            document = json.loads(text)
        except json.JSONDecodeError as e:  # e.msg and the position only: never the text
            raise CredentialsFileError(f"credentials file {self.path} is not valid JSON: {e.msg} (line {e.lineno})") from None
        if not isinstance(document, dict) or not isinstance(document.get("auths", {}), dict):
            raise CredentialsFileError(f'credentials file {self.path} must hold {{"auths": {{"<host>": {{"auth": "…"}}}}}}')
        return document

    def _read_docker(self) -> dict[str, Any]:
        assert self.docker_config is not None
        try:
            document = json.loads(self.docker_config.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as e:
            reason = e.msg if isinstance(e, json.JSONDecodeError) else type(e).__name__
            log.warning("docker_config_unreadable", path=str(self.docker_config), reason=reason)
            return {}
        return document if isinstance(document, dict) else {}

    def _write_own(self, document: dict[str, Any]) -> None:
        data = (json.dumps(document, indent=2, sort_keys=True) + "\n").encode()
        directory = self.path.parent
        tmp = directory / f".{self.path.name}.{secrets.token_hex(6)}.tmp"
        try:
            directory.mkdir(parents=True, exist_ok=True, mode=DIR_MODE)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
            with os.fdopen(fd, "wb") as out:
                os.fchmod(out.fileno(), FILE_MODE)  # exact, whatever the umask
                out.write(data)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, self.path)
            _fsync_dir(directory)
        except OSError as e:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise CredentialsFileError(f"cannot write credentials file {self.path}: {e.strerror}") from None


def _auths(document: dict[str, Any]) -> dict[str, Any]:
    auths = document.get("auths")
    return auths if isinstance(auths, dict) else {}


def _fsync_dir(directory: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
