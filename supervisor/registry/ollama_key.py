"""Ollama's registry signing key: ``id_ed25519`` / ``id_ed25519.pub`` in ``~/.ollama``.

Ollama proves who it is to ollama.com by signing each token request with this key, and users register
the public half with their account; sharing the very same files keeps a switch between Ollama and
llamasup invisible to the registry. Like Ollama, a missing private key is generated on first use (an
OpenSSH ``openssh-key-v1`` container, unencrypted, no comment, mode 0600) beside its authorized_keys
line (mode 0644); an existing key is only ever read.

The OpenSSH container (PROTOCOL.key), base64 between ``-----BEGIN/END OPENSSH PRIVATE KEY-----``::

    "openssh-key-v1\\0"  string ciphername  string kdfname  string kdfoptions  uint32 nkeys (1)
    string public key blob  (string "ssh-ed25519", string pub[32])
    string private section:
        uint32 checkint  uint32 checkint (equal; differ when a passphrase is wrong)
        string "ssh-ed25519"  string pub[32]  string seed[32]‖pub[32]  string comment
        padding 1, 2, 3, … to a multiple of 8 (the "none" cipher's block size)

The codec (``encode_private_key``, ``decode_private_key``) is pure; ``OllamaKey.load_or_create`` is
the one place that touches the file system, with blocking I/O (async callers use ``asyncio.to_thread``).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import secrets
import struct
import tempfile
from dataclasses import dataclass
from pathlib import Path

import structlog

from ..errors import SigningKeyError
from . import ed25519

__all__ = [
    "PRIVATE_KEY_NAME",
    "PUBLIC_KEY_NAME",
    "OllamaKey",
    "PrivateKeyParts",
    "decode_private_key",
    "encode_private_key",
    "public_blob",
]

log = structlog.get_logger("supervisor.registry")

PRIVATE_KEY_NAME = "id_ed25519"
PUBLIC_KEY_NAME = "id_ed25519.pub"
KEY_TYPE = "ssh-ed25519"

_MAGIC = b"openssh-key-v1\0"
_BEGIN = "-----BEGIN OPENSSH PRIVATE KEY-----"
_END = "-----END OPENSSH PRIVATE KEY-----"
_PEM_WIDTH = 64  # Go's encoding/pem, which Ollama writes with (ssh-keygen uses 70; both read either)
_BLOCK_SIZE = 8  # the "none" cipher's block size, which the private section is padded to
_PRIVATE_MODE = 0o600
_PUBLIC_MODE = 0o644
_DIR_MODE = 0o755

# Ollama signs "<method>,<url>,<base64 of the hex SHA-256 of the body>"; token requests have no body.
_EMPTY_BODY_HASH = base64.b64encode(hashlib.sha256(b"").hexdigest().encode()).decode()


@dataclass(frozen=True, repr=False)
class PrivateKeyParts:
    """What an OpenSSH ed25519 private key file holds (``repr`` hides the seed)."""

    seed: bytes
    public: bytes
    comment: str = ""

    def __repr__(self) -> str:
        return f"PrivateKeyParts(public={self.public.hex()!r}, comment={self.comment!r}, seed=<redacted>)"


def _string(data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + data


def public_blob(public: bytes) -> bytes:
    """The SSH wire form of an ed25519 public key: string "ssh-ed25519", string key."""
    return _string(KEY_TYPE.encode()) + _string(public)


class _Reader:
    """Reads SSH wire fields; a short buffer raises ValueError (reported as a malformed key)."""

    def __init__(self, data: bytes) -> None:
        self._data = data
        self._pos = 0

    def take(self, n: int) -> bytes:
        if n > len(self._data) - self._pos:
            raise ValueError("truncated")
        chunk = self._data[self._pos : self._pos + n]
        self._pos += n
        return chunk

    def u32(self) -> int:
        value: int = struct.unpack(">I", self.take(4))[0]
        return value

    def string(self) -> bytes:
        return self.take(self.u32())

    def rest(self) -> bytes:
        return self.take(len(self._data) - self._pos)


def encode_private_key(seed: bytes, *, comment: str = "", checkint: int | None = None) -> bytes:
    """The PEM-armoured ``openssh-key-v1`` file (unencrypted) for an ed25519 seed.

    ``checkint`` is random unless given (tests pin it to compare bytes).
    """
    public = ed25519.public_key(seed)
    check = secrets.randbits(32) if checkint is None else checkint
    section = (
        struct.pack(">II", check, check)
        + _string(KEY_TYPE.encode())
        + _string(public)
        + _string(seed + public)
        + _string(comment.encode())
    )
    section += bytes(range(1, 1 + (-len(section) % _BLOCK_SIZE)))
    body = (
        _MAGIC
        + _string(b"none")
        + _string(b"none")
        + _string(b"")
        + struct.pack(">I", 1)
        + _string(public_blob(public))
        + _string(section)
    )
    text = base64.b64encode(body).decode()
    lines = [text[i : i + _PEM_WIDTH] for i in range(0, len(text), _PEM_WIDTH)]
    return "\n".join([_BEGIN, *lines, _END, ""]).encode()


def _unarmor(text: str, source: str) -> bytes:
    lines = [line.strip() for line in text.splitlines()]
    if _BEGIN not in lines:
        found = next((line for line in lines if line.startswith("-----BEGIN ")), None)
        what = f"it starts with {found!r}" if found else "no '-----BEGIN OPENSSH PRIVATE KEY-----' line"
        raise SigningKeyError(
            f"{source} is not an OpenSSH private key ({what}); llamasup reads the OpenSSH format that "
            f"Ollama and ssh-keygen write: convert it with `ssh-keygen -p -f {source}` or move it away to "
            "have a new key generated"
        )
    start = lines.index(_BEGIN) + 1
    try:
        end = lines.index(_END, start)
    except ValueError:
        raise SigningKeyError(f"{source}: malformed OpenSSH private key: no '{_END}' line") from None
    try:
        return base64.b64decode("".join(lines[start:end]), validate=True)
    except ValueError:
        raise SigningKeyError(f"{source}: malformed OpenSSH private key: invalid base64") from None


def decode_private_key(data: bytes, *, source: str = "private key") -> PrivateKeyParts:
    """Parse an unencrypted OpenSSH ed25519 private key file; ``source`` names it in errors.

    Raises SigningKeyError for an encrypted key, another key type, or anything malformed.
    """
    body = _unarmor(data.decode("utf-8", errors="replace"), source)
    try:
        return _decode_body(body, source)
    except ValueError as e:
        raise SigningKeyError(f"{source}: malformed OpenSSH private key: {e}") from None


def _decode_body(body: bytes, source: str) -> PrivateKeyParts:
    """Parse the binary container; structural problems raise ValueError, policy ones SigningKeyError."""
    if not body.startswith(_MAGIC):
        raise ValueError("bad magic")
    reader = _Reader(body[len(_MAGIC) :])
    cipher, kdf, _kdf_options = reader.string(), reader.string(), reader.string()
    if cipher != b"none" or kdf != b"none":
        raise SigningKeyError(
            f"{source} is encrypted with a passphrase ({cipher.decode(errors='replace')}), which llamasup "
            f'cannot use: remove the passphrase with `ssh-keygen -p -N "" -f {source}`, or move the file '
            "away to have a new key generated"
        )
    count = reader.u32()
    if count != 1:
        raise ValueError(f"it holds {count} keys, expected 1")
    header_blob = reader.string()
    section = _Reader(reader.string())
    if section.u32() != section.u32():
        raise ValueError("check integers differ")
    key_type = section.string().decode(errors="replace")
    if key_type != KEY_TYPE:
        raise SigningKeyError(
            f"{source} holds a {key_type} key; Ollama's registry key must be {KEY_TYPE}: move it away to "
            "have a new key generated"
        )
    public = section.string()
    private = section.string()
    comment = section.string().decode(errors="replace")
    padding = section.rest()
    if padding != bytes(range(1, 1 + len(padding))):
        raise ValueError("bad padding")
    if len(public) != ed25519.PUBLIC_KEY_SIZE or len(private) != 64 or private[32:] != public:
        raise ValueError("bad ed25519 key sizes")
    seed = private[:32]
    if header_blob != public_blob(public) or ed25519.public_key(seed) != public:
        raise ValueError("the public key does not match the private key")
    return PrivateKeyParts(seed=seed, public=public, comment=comment)


class OllamaKey:
    """An ed25519 key as Ollama uses it to sign registry token requests (the ``Signer`` of auth.py).

    ``repr`` shows the path and fingerprint, never the private key.
    """

    __slots__ = ("_seed", "path", "public")

    def __init__(self, seed: bytes, *, path: Path | None = None) -> None:
        self._seed = seed
        self.public = ed25519.public_key(seed)
        self.path = path

    @classmethod
    def load(cls, path: Path) -> OllamaKey:
        """Read an existing private key file (SigningKeyError when missing, unreadable or unusable)."""
        data = _read(path)
        if data is None:
            raise SigningKeyError(f"no private key at {path}")
        return cls(decode_private_key(data, source=str(path)).seed, path=path)

    @classmethod
    def load_or_create(cls, directory: Path) -> OllamaKey:
        """The key in ``directory`` (``~/.ollama`` for Ollama), generated there first when missing.

        Generation writes the private key atomically and exclusively: when two processes race, the
        first key written wins and the other process loads it instead of replacing it.
        """
        path = directory / PRIVATE_KEY_NAME
        data = _read(path)
        if data is not None:
            return cls(decode_private_key(data, source=str(path)).seed, path=path)
        key = cls(secrets.token_bytes(ed25519.SEED_SIZE), path=path)
        log.info("generating ollama signing key", path=str(path))
        try:
            directory.mkdir(mode=_DIR_MODE, parents=True, exist_ok=True)
            if not _publish(path, encode_private_key(key._seed), _PRIVATE_MODE, exclusive=True):
                return cls.load(path)
            _publish(directory / PUBLIC_KEY_NAME, f"{key.public_line}\n".encode(), _PUBLIC_MODE, exclusive=False)
        except OSError as e:
            raise SigningKeyError(f"cannot write the signing key in {directory}: {e.strerror or e}") from None
        log.info("generated ollama signing key", path=str(path), public_key=key.public_line)
        return key

    @property
    def public_blob(self) -> bytes:
        """The SSH wire form of the public key (what authorized_keys lines carry in base64)."""
        return public_blob(self.public)

    @property
    def public_line(self) -> str:
        """The authorized_keys line, ``ssh-ed25519 AAAA…`` (no comment, no newline), as in ``id_ed25519.pub``."""
        return f"{KEY_TYPE} {base64.b64encode(self.public_blob).decode()}"

    @property
    def fingerprint(self) -> str:
        """``SHA256:…`` as ``ssh-keygen -l`` prints it."""
        digest = hashlib.sha256(self.public_blob).digest()
        return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")

    def sign(self, data: bytes) -> str:
        """``<base64 public key blob>:<base64 signature of data>``: Ollama's signature header value."""
        key = base64.b64encode(self.public_blob).decode()
        return f"{key}:{base64.b64encode(ed25519.sign(self._seed, data)).decode()}"

    def authorization(self, method: str, url: str) -> str:
        """The ``Authorization`` header value for a body-less request to ``url`` (the token request,
        ``<realm>?service=…&scope=…&ts=…&nonce=…``): the signature of
        ``<method>,<url>,<base64(hex(sha256("")))>``, exactly as Ollama builds it."""
        return self.sign(f"{method},{url},{_EMPTY_BODY_HASH}".encode())

    def __repr__(self) -> str:
        return f"OllamaKey(path={str(self.path)!r}, fingerprint={self.fingerprint!r})"


class KeyOnFirstUse:
    """The ``Signer`` a server holds: the key in ``directory`` is read (or generated) the first time a
    token request to Ollama's registry needs it, so nothing is written to ``~/.ollama`` before then."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._key: OllamaKey | None = None

    def authorization(self, method: str, url: str) -> str:
        if self._key is None:
            self._key = OllamaKey.load_or_create(self.directory)
        return self._key.authorization(method, url)


def _read(path: Path) -> bytes | None:
    """The file's bytes, or None when it does not exist; other failures are SigningKeyError."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as e:
        raise SigningKeyError(f"cannot read {path}: {e.strerror or e}") from None


def _publish(path: Path, data: bytes, mode: int, *, exclusive: bool) -> bool:
    """Write ``data`` to a temp file beside ``path`` (created 0600, then set to ``mode``), fsync it and
    move it into place: by replacing, or, when ``exclusive``, only if ``path`` does not exist yet
    (False then). Readers never see a partial file; the temp file never outlives the call."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), mode)  # exact mode, whatever the umask (Ollama's files are 0600/0644)
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        if not exclusive:
            os.replace(tmp, path)
            return True
        try:
            os.link(tmp, path)  # atomic and fails if the name exists, unlike rename
        except FileExistsError:
            return False
        except OSError:
            os.replace(tmp, path)  # a file system without hard links: atomic, not exclusive
        return True
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
