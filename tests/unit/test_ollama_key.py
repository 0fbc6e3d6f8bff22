"""Ollama's signing key files (id_ed25519, id_ed25519.pub) and the token-request Authorization header."""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
import stat
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from supervisor.errors import SigningKeyError
from supervisor.registry.ollama_key import OllamaKey, decode_private_key, encode_private_key

SSH_KEYGEN = shutil.which("ssh-keygen")
needs_ssh_keygen = pytest.mark.skipif(SSH_KEYGEN is None, reason="ssh-keygen is not installed")

SEED = bytes(range(32))
TOKEN_URL = (
    "https://ollama.com/token?service=ollama.com&scope=repository%3Alibrary%2Fllama3%3Apull"
    "&ts=1767225600&nonce=q83vEjRWeJCrze8SNFZ4kA"
)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _openssh_bytes(key: Ed25519PrivateKey | ec.EllipticCurvePrivateKey, password: bytes | None = None) -> bytes:
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(password) if password else serialization.NoEncryption()
    )
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, encryption)


@pytest.fixture
def umask_077() -> Iterator[None]:
    old = os.umask(0o077)
    try:
        yield
    finally:
        os.umask(old)


def test_create_writes_both_files_with_ollamas_modes_and_formats(tmp_path: Path) -> None:
    """A missing key is generated: the directory is created, the private key is an unencrypted OpenSSH
    file with mode 0600, the public key an authorized_keys line with mode 0644, and nothing else."""
    directory = tmp_path / "home" / ".ollama"
    key = OllamaKey.load_or_create(directory)

    private, public = directory / "id_ed25519", directory / "id_ed25519.pub"
    assert sorted(p.name for p in directory.iterdir()) == ["id_ed25519", "id_ed25519.pub"]
    assert _mode(private) == 0o600
    assert _mode(public) == 0o644
    assert key.path == private

    text = private.read_text()
    lines = text.splitlines()
    assert lines[0] == "-----BEGIN OPENSSH PRIVATE KEY-----"
    assert lines[-1] == "-----END OPENSSH PRIVATE KEY-----"
    assert text.endswith("\n")
    assert all(len(line) <= 64 for line in lines[1:-1])
    body = base64.b64decode("".join(lines[1:-1]))
    assert body.startswith(b"openssh-key-v1\0\x00\x00\x00\x04none\x00\x00\x00\x04none\x00\x00\x00\x00\x00\x00\x00\x01")

    assert public.read_text() == key.public_line + "\n"
    assert key.public_line.startswith("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI")
    assert len(key.public_line.split()) == 2  # no comment, as Ollama writes it

    parts = decode_private_key(private.read_bytes())
    assert parts.public == key.public
    assert parts.comment == ""


def test_modes_are_exact_whatever_the_umask(tmp_path: Path, umask_077: None) -> None:
    """Under a restrictive umask the public key still gets 0644 (and the private key 0600)."""
    OllamaKey.load_or_create(tmp_path)
    assert _mode(tmp_path / "id_ed25519") == 0o600
    assert _mode(tmp_path / "id_ed25519.pub") == 0o644


def test_existing_key_is_loaded_not_replaced(tmp_path: Path) -> None:
    """A second load_or_create reads the same key and leaves both files untouched."""
    first = OllamaKey.load_or_create(tmp_path)
    before = {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in tmp_path.iterdir()}
    second = OllamaKey.load_or_create(tmp_path)
    assert second.public == first.public
    assert {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in tmp_path.iterdir()} == before


def test_existing_private_key_without_public_file_is_used_as_is(tmp_path: Path) -> None:
    """As in Ollama, only the private key decides: a missing .pub is not regenerated or required."""
    (tmp_path / "id_ed25519").write_bytes(encode_private_key(SEED))
    key = OllamaKey.load_or_create(tmp_path)
    assert key.public == Ed25519PrivateKey.from_private_bytes(SEED).public_key().public_bytes_raw()
    assert not (tmp_path / "id_ed25519.pub").exists()


def test_losing_a_creation_race_loads_the_winners_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """When another process writes id_ed25519 between our look and our write, its key is kept and
    loaded: ours is never published over it, and no temp file is left behind."""
    import supervisor.registry.ollama_key as module

    winner = encode_private_key(SEED)
    real_read = module._read

    def read_then_lose_the_race(path: Path) -> bytes | None:
        found = real_read(path)
        if found is None:
            path.write_bytes(winner)  # the other process finishes first
        return found

    monkeypatch.setattr(module, "_read", read_then_lose_the_race)
    key = OllamaKey.load_or_create(tmp_path)
    assert key.public == OllamaKey(SEED).public
    assert (tmp_path / "id_ed25519").read_bytes() == winner
    assert [p.name for p in tmp_path.iterdir()] == ["id_ed25519"]


def test_our_file_loads_in_cryptography(tmp_path: Path) -> None:
    """cryptography's OpenSSH loader reads what we write and finds the same key."""
    key = OllamaKey.load_or_create(tmp_path)
    loaded = serialization.load_ssh_private_key((tmp_path / "id_ed25519").read_bytes(), password=None)
    assert isinstance(loaded, Ed25519PrivateKey)
    assert loaded.public_key().public_bytes_raw() == key.public
    ssh_public = loaded.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    assert ssh_public.decode() == key.public_line


@needs_ssh_keygen
def test_our_file_loads_in_ssh_keygen(tmp_path: Path) -> None:
    """`ssh-keygen -y` derives our public line from our private key file, and `-l` our fingerprint."""
    key = OllamaKey.load_or_create(tmp_path)
    assert SSH_KEYGEN is not None
    derived = subprocess.run([SSH_KEYGEN, "-y", "-f", str(tmp_path / "id_ed25519")], capture_output=True, text=True, check=True)
    assert derived.stdout.split()[:2] == key.public_line.split()
    listed = subprocess.run([SSH_KEYGEN, "-l", "-f", str(tmp_path / "id_ed25519.pub")], capture_output=True, text=True, check=True)
    assert listed.stdout.split()[1] == key.fingerprint


@needs_ssh_keygen
def test_loads_a_key_ssh_keygen_wrote(tmp_path: Path) -> None:
    """A key made by `ssh-keygen -t ed25519 -N ""` (with its user@host comment and 70-column lines)
    loads, and its public key matches the .pub file ssh-keygen wrote."""
    assert SSH_KEYGEN is not None
    subprocess.run(
        [SSH_KEYGEN, "-q", "-t", "ed25519", "-N", "", "-C", "someone@somewhere", "-f", str(tmp_path / "id_ed25519")],
        check=True,
    )
    written_pub = (tmp_path / "id_ed25519.pub").read_bytes()
    key = OllamaKey.load_or_create(tmp_path)
    assert written_pub.decode().split()[:2] == key.public_line.split()
    assert (tmp_path / "id_ed25519.pub").read_bytes() == written_pub
    assert decode_private_key((tmp_path / "id_ed25519").read_bytes()).comment == "someone@somewhere"


def test_loads_a_key_cryptography_wrote(tmp_path: Path) -> None:
    """An unencrypted OpenSSH key serialized by cryptography loads with the same seed and public key."""
    theirs = Ed25519PrivateKey.generate()
    (tmp_path / "id_ed25519").write_bytes(_openssh_bytes(theirs))
    key = OllamaKey.load(tmp_path / "id_ed25519")
    assert key.public == theirs.public_key().public_bytes_raw()
    message = b"same key, same deterministic signature"
    signature = base64.b64decode(key.sign(message).split(":")[1])
    assert signature == theirs.sign(message)


@needs_ssh_keygen
def test_refuses_a_key_ssh_keygen_encrypted(tmp_path: Path) -> None:
    """A passphrase-protected key is refused with a message that says so and names the fix."""
    assert SSH_KEYGEN is not None
    path = tmp_path / "id_ed25519"
    subprocess.run([SSH_KEYGEN, "-q", "-t", "ed25519", "-N", "secret words", "-f", str(path)], check=True)
    with pytest.raises(SigningKeyError) as e:
        OllamaKey.load_or_create(tmp_path)
    assert "encrypted with a passphrase" in str(e.value)
    assert f'ssh-keygen -p -N "" -f {path}' in str(e.value)
    assert e.value.status == 500


def test_refuses_a_key_cryptography_encrypted(tmp_path: Path) -> None:
    """cryptography's encrypted OpenSSH key (aes256-ctr, bcrypt) is refused the same way."""
    (tmp_path / "id_ed25519").write_bytes(_openssh_bytes(Ed25519PrivateKey.generate(), b"pw"))
    with pytest.raises(SigningKeyError, match="encrypted with a passphrase"):
        OllamaKey.load(tmp_path / "id_ed25519")


def test_refuses_other_key_types(tmp_path: Path) -> None:
    """An OpenSSH ECDSA key is named as such: Ollama's key must be ssh-ed25519."""
    (tmp_path / "id_ed25519").write_bytes(_openssh_bytes(ec.generate_private_key(ec.SECP256R1())))
    with pytest.raises(SigningKeyError, match="holds a ecdsa-sha2-nistp256 key; Ollama's registry key must be ssh-ed25519"):
        OllamaKey.load(tmp_path / "id_ed25519")


def test_refuses_other_file_formats(tmp_path: Path) -> None:
    """A PKCS#8 PEM key is not mistaken for an OpenSSH key; the message names what was found."""
    pkcs8 = Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    (tmp_path / "id_ed25519").write_bytes(pkcs8)
    with pytest.raises(SigningKeyError, match="is not an OpenSSH private key .it starts with '-----BEGIN PRIVATE KEY-----'"):
        OllamaKey.load(tmp_path / "id_ed25519")


def _rearmor(body: bytes) -> bytes:
    text = base64.b64encode(body).decode()
    return ("-----BEGIN OPENSSH PRIVATE KEY-----\n" + text + "\n-----END OPENSSH PRIVATE KEY-----\n").encode()


def _body(data: bytes) -> bytes:
    return base64.b64decode("".join(data.decode().splitlines()[1:-1]))


@pytest.mark.parametrize(
    ("damage", "detail"),
    [
        (lambda body: body[:-20], "truncated"),
        (lambda body: body.replace(b"openssh-key-v1", b"openssh-key-v2"), "bad magic"),
        (lambda body: body[:-1] + b"\x09", "bad padding"),
        # the second check integer sits 4 bytes into the private section (after its length)
        (lambda body: _flip(body, len(body) - _section_len(body) + 4), "check integers differ"),
        # the header's public key blob ends right before the private section's length
        (lambda body: _flip(body, len(body) - _section_len(body) - 5), "does not match"),
    ],
    ids=["truncated", "magic", "padding", "checkint", "public-mismatch"],
)
def test_refuses_corrupt_files(tmp_path: Path, damage: Callable[[bytes], bytes], detail: str) -> None:
    """Structural damage is reported as a malformed key with the file's path and what is wrong."""
    path = tmp_path / "id_ed25519"
    path.write_bytes(_rearmor(damage(_body(encode_private_key(SEED)))))
    with pytest.raises(SigningKeyError, match=f"{path}: malformed OpenSSH private key: .*{detail}"):
        OllamaKey.load(path)


def _section_len(body: bytes) -> int:
    # the private section is the last string of the container: its 4-byte length precedes it
    for n in range(len(body) - 4, 0, -1):
        if int.from_bytes(body[n : n + 4], "big") == len(body) - n - 4:
            return len(body) - n - 4
    raise AssertionError("no private section")


def _flip(body: bytes, index: int) -> bytes:
    return body[:index] + bytes([body[index] ^ 0x01]) + body[index + 1 :]


def test_load_of_a_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    """OllamaKey.load does not create anything; a missing file names the path."""
    with pytest.raises(SigningKeyError, match=f"no private key at {tmp_path / 'id_ed25519'}"):
        OllamaKey.load(tmp_path / "id_ed25519")
    assert list(tmp_path.iterdir()) == []


def test_encoding_is_deterministic_given_the_check_integer() -> None:
    """With a pinned check integer the file is a pure function of the seed; it round-trips."""
    first = encode_private_key(SEED, checkint=0x01020304)
    assert first == encode_private_key(SEED, checkint=0x01020304)
    assert b"\x01\x02\x03\x04\x01\x02\x03\x04" in _body(first)
    parts = decode_private_key(first)
    assert parts.seed == SEED
    assert _section_len(_body(first)) % 8 == 0  # padded to the "none" cipher's block size


def test_authorization_header_is_ollamas_signature_of_the_token_request() -> None:
    """authorization() returns `<key blob b64>:<signature b64>`, the blob being the public line's second
    field and the signature an Ed25519 signature of `GET,<url>,<base64(hex(sha256("")))>`."""
    key = OllamaKey(SEED)
    header = key.authorization("GET", TOKEN_URL)
    blob_b64, signature_b64 = header.split(":")
    assert blob_b64 == key.public_line.split()[1]

    empty_body = base64.b64encode(hashlib.sha256(b"").hexdigest().encode()).decode()
    assert empty_body == "ZTNiMGM0NDI5OGZjMWMxNDlhZmJmNGM4OTk2ZmI5MjQyN2FlNDFlNDY0OWI5MzRjYTQ5NTk5MWI3ODUyYjg1NQ=="
    signed = f"GET,{TOKEN_URL},{empty_body}".encode()
    signature = base64.b64decode(signature_b64, validate=True)
    assert len(signature) == 64

    public = serialization.load_ssh_public_key(key.public_line.encode())
    assert isinstance(public, Ed25519PublicKey)
    public.verify(signature, signed)  # raises InvalidSignature when wrong
    assert signature == Ed25519PrivateKey.from_private_bytes(SEED).sign(signed)


def test_authorization_signs_the_method_and_url_given() -> None:
    """The signature covers the method and the exact URL: another URL gets another signature."""
    key = OllamaKey(SEED)
    assert key.authorization("GET", TOKEN_URL) != key.authorization("GET", TOKEN_URL + "x")
    assert key.authorization("GET", TOKEN_URL) != key.authorization("POST", TOKEN_URL)


def test_repr_never_shows_the_private_key(tmp_path: Path) -> None:
    """repr names the file and fingerprint only: no seed (hex or base64) and no private key text."""
    key = OllamaKey.load_or_create(tmp_path)
    parts = decode_private_key((tmp_path / "id_ed25519").read_bytes())
    text = repr(key) + str(key) + repr(parts)
    assert key.fingerprint in repr(key)
    assert str(tmp_path / "id_ed25519") in repr(key)
    assert parts.seed.hex() not in text
    assert base64.b64encode(parts.seed).decode()[:20] not in text
    assert "PRIVATE KEY" not in text
    assert "redacted" in repr(parts)
