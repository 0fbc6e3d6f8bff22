"""The pure-Python Ed25519: RFC 8032 §7.1 test vectors and cross-checks against the cryptography package."""

from __future__ import annotations

import hashlib
import random

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from supervisor.registry import ed25519

# RFC 8032 §7.1, "Test Vectors for Ed25519": (name, SECRET KEY, PUBLIC KEY, MESSAGE, SIGNATURE).
_TEST_1024_MESSAGE = (
    "08b8b2b733424243760fe426a4b54908632110a66c2f6591eabd3345e3e4eb98"
    "fa6e264bf09efe12ee50f8f54e9f77b1e355f6c50544e23fb1433ddf73be84d8"
    "79de7c0046dc4996d9e773f4bc9efe5738829adb26c81b37c93a1b270b20329d"
    "658675fc6ea534e0810a4432826bf58c941efb65d57a338bbd2e26640f89ffbc"
    "1a858efcb8550ee3a5e1998bd177e93a7363c344fe6b199ee5d02e82d522c4fe"
    "ba15452f80288a821a579116ec6dad2b3b310da903401aa62100ab5d1a36553e"
    "06203b33890cc9b832f79ef80560ccb9a39ce767967ed628c6ad573cb116dbef"
    "efd75499da96bd68a8a97b928a8bbc103b6621fcde2beca1231d206be6cd9ec7"
    "aff6f6c94fcd7204ed3455c68c83f4a41da4af2b74ef5c53f1d8ac70bdcb7ed1"
    "85ce81bd84359d44254d95629e9855a94a7c1958d1f8ada5d0532ed8a5aa3fb2"
    "d17ba70eb6248e594e1a2297acbbb39d502f1a8c6eb6f1ce22b3de1a1f40cc24"
    "554119a831a9aad6079cad88425de6bde1a9187ebb6092cf67bf2b13fd65f270"
    "88d78b7e883c8759d2c4f5c65adb7553878ad575f9fad878e80a0c9ba63bcbcc"
    "2732e69485bbc9c90bfbd62481d9089beccf80cfe2df16a2cf65bd92dd597b07"
    "07e0917af48bbb75fed413d238f5555a7a569d80c3414a8d0859dc65a46128ba"
    "b27af87a71314f318c782b23ebfe808b82b0ce26401d2e22f04d83d1255dc51a"
    "ddd3b75a2b1ae0784504df543af8969be3ea7082ff7fc9888c144da2af58429e"
    "c96031dbcad3dad9af0dcbaaaf268cb8fcffead94f3c7ca495e056a9b47acdb7"
    "51fb73e666c6c655ade8297297d07ad1ba5e43f1bca32301651339e22904cc8c"
    "42f58c30c04aafdb038dda0847dd988dcda6f3bfd15c4b4c4525004aa06eeff8"
    "ca61783aacec57fb3d1f92b0fe2fd1a85f6724517b65e614ad6808d6f6ee34df"
    "f7310fdc82aebfd904b01e1dc54b2927094b2db68d6f903b68401adebf5a7e08"
    "d78ff4ef5d63653a65040cf9bfd4aca7984a74d37145986780fc0b16ac451649"
    "de6188a7dbdf191f64b5fc5e2ab47b57f7f7276cd419c17a3ca8e1b939ae49e4"
    "88acba6b965610b5480109c8b17b80e1b7b750dfc7598d5d5011fd2dcc5600a3"
    "2ef5b52a1ecc820e308aa342721aac0943bf6686b64b2579376504ccc493d97e"
    "6aed3fb0f9cd71a43dd497f01f17c0e2cb3797aa2a2f256656168e6c496afc5f"
    "b93246f6b1116398a346f1a641f3b041e989f7914f90cc2c7fff357876e506b5"
    "0d334ba77c225bc307ba537152f3f1610e4eafe595f6d9d90d11faa933a15ef1"
    "369546868a7f3a45a96768d40fd9d03412c091c6315cf4fde7cb68606937380d"
    "b2eaaa707b4c4185c32eddcdd306705e4dc1ffc872eeee475a64dfac86aba41c"
    "0618983f8741c5ef68d3a101e8a3b8cac60c905c15fc910840b94c00a0b9d0"
)
RFC8032_VECTORS = [
    (
        "TEST 1",
        "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
        "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
        "",
        "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e06522490155"
        "5fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b",
    ),
    (
        "TEST 2",
        "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
        "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c",
        "72",
        "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da"
        "085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00",
    ),
    (
        "TEST 3",
        "c5aa8df43f9f837bedb7442f31dcb7b166d38535076f094b85ce3a2e0b4458f7",
        "fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025",
        "af82",
        "6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac"
        "18ff9b538d16f290ae67f760984dc6594a7c15e9716ed28dc027beceea1ec40a",
    ),
    (
        "TEST 1024",
        "f5e5767cf153319517630f226876b86c8160cc583bc013744c6bf255f5cc0ee5",
        "278117fc144c72340f67d0f2316e8386ceffbf2b2428c9c51fef7c597f1d426e",
        _TEST_1024_MESSAGE,
        "0aab4c900501b3e24d7cdf4663326a3a87df5e4843b2cbdb67cbf6e460fec350"
        "aa5371b1508f9f4528ecea23c436d94b5e8fcd4f681e30a6ac00a9704a188a03",
    ),
    (
        "TEST SHA(abc)",
        "833fe62409237b9d62ec77587520911e9a759cec1d19755b7da901b96dca3d42",
        "ec172b93ad5e563bf4932c70e1245034c35467ef2efd4d64ebf819683467e2bf",
        hashlib.sha512(b"abc").hexdigest(),
        "dc2a4459e7369633a52b1bf277839a00201009a3efbf3ecb69bea2186c26b589"
        "09351fc9ac90b3ecfdfbc7c66431e0303dca179c138ac17ad9bef1177331a704",
    ),
]
_IDS = [v[0] for v in RFC8032_VECTORS]

# The group order L, little-endian, to build out-of-range S values.
_L = 2**252 + 27742317777372353535851937790883648493


def _theirs_public(seed: bytes) -> bytes:
    return Ed25519PrivateKey.from_private_bytes(seed).public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def test_test_1024_message_is_1023_bytes() -> None:
    """The TEST 1024 message is transcribed whole (the RFC's message is 1023 octets)."""
    assert len(bytes.fromhex(_TEST_1024_MESSAGE)) == 1023


@pytest.mark.parametrize(("name", "secret", "public", "message", "signature"), RFC8032_VECTORS, ids=_IDS)
def test_rfc8032_public_key(name: str, secret: str, public: str, message: str, signature: str) -> None:
    """The public key derived from each RFC 8032 secret key is the RFC's PUBLIC KEY."""
    assert ed25519.public_key(bytes.fromhex(secret)).hex() == public


@pytest.mark.parametrize(("name", "secret", "public", "message", "signature"), RFC8032_VECTORS, ids=_IDS)
def test_rfc8032_signature(name: str, secret: str, public: str, message: str, signature: str) -> None:
    """Signing each RFC 8032 message gives the RFC's SIGNATURE byte for byte."""
    assert ed25519.sign(bytes.fromhex(secret), bytes.fromhex(message)).hex() == signature


@pytest.mark.parametrize(("name", "secret", "public", "message", "signature"), RFC8032_VECTORS, ids=_IDS)
def test_rfc8032_verify(name: str, secret: str, public: str, message: str, signature: str) -> None:
    """Each RFC 8032 signature verifies, and stops verifying when the message changes."""
    pub, msg, sig = bytes.fromhex(public), bytes.fromhex(message), bytes.fromhex(signature)
    assert ed25519.verify(pub, msg, sig)
    assert not ed25519.verify(pub, msg + b"\0", sig)


def test_verify_rejects_tampered_signatures() -> None:
    """Flipping any one of a sample of signature bits, or using another key, invalidates a signature."""
    seed = bytes.fromhex(RFC8032_VECTORS[1][1])
    public = ed25519.public_key(seed)
    message = b"GET,https://ollama.com/token"
    signature = ed25519.sign(seed, message)
    for bit in (0, 7, 100, 255, 256, 300, 511):
        tampered = bytearray(signature)
        tampered[bit // 8] ^= 1 << (bit % 8)
        assert not ed25519.verify(public, message, bytes(tampered)), bit
    other = ed25519.public_key(bytes.fromhex(RFC8032_VECTORS[0][1]))
    assert not ed25519.verify(other, message, signature)


def test_verify_rejects_non_canonical_s() -> None:
    """S + L is the same scalar mod L but is refused (S must be below L, RFC 8032 §5.1.7)."""
    seed = bytes.fromhex(RFC8032_VECTORS[0][1])
    signature = ed25519.sign(seed, b"m")
    s = int.from_bytes(signature[32:], "little")
    assert s + _L < 2**256
    forged = signature[:32] + (s + _L).to_bytes(32, "little")
    assert not ed25519.verify(ed25519.public_key(seed), b"m", forged)


@pytest.mark.parametrize(
    ("public", "signature"),
    [
        (b"\x01" + bytes(30), bytes(64)),  # 31-byte key
        (bytes(32), bytes(63)),  # 63-byte signature
        ((2**255 - 19 + 1).to_bytes(32, "little"), bytes(64)),  # y = p + 1 ≥ p: not canonical
        ((2).to_bytes(32, "little"), bytes(64)),  # y = 2 has no x on the curve
    ],
    ids=["short-key", "short-signature", "non-canonical-y", "not-on-curve"],
)
def test_verify_malformed_input_is_false(public: bytes, signature: bytes) -> None:
    """Malformed keys and signatures make verify return False rather than raise."""
    assert ed25519.verify(public, b"m", signature) is False


@pytest.mark.parametrize("size", [0, 31, 33, 64])
def test_seed_must_be_32_bytes(size: int) -> None:
    """A seed that is not 32 bytes is a ValueError (a 64-byte seed‖pub key is not accepted)."""
    with pytest.raises(ValueError, match="32 bytes"):
        ed25519.public_key(bytes(size))
    with pytest.raises(ValueError, match="32 bytes"):
        ed25519.sign(bytes(size), b"m")


def _random_cases(count: int) -> list[tuple[bytes, bytes]]:
    rng = random.Random(8032)
    return [(rng.randbytes(32), rng.randbytes(rng.choice([0, 1, 31, 32, 64, 200, 1500]))) for _ in range(count)]


@pytest.mark.parametrize(("seed", "message"), _random_cases(24))
def test_matches_cryptography(seed: bytes, message: bytes) -> None:
    """For random seeds and messages, ours and cryptography's keys and (deterministic) signatures agree,
    and each side verifies the other's signature."""
    theirs = Ed25519PrivateKey.from_private_bytes(seed)
    public = ed25519.public_key(seed)
    assert public == _theirs_public(seed)

    ours_sig = ed25519.sign(seed, message)
    theirs_sig = theirs.sign(message)
    assert ours_sig == theirs_sig
    Ed25519PublicKey.from_public_bytes(public).verify(ours_sig, message)
    assert ed25519.verify(public, message, theirs_sig)


def test_cryptography_rejects_what_we_reject() -> None:
    """A signature over another message fails in both implementations."""
    seed = random.Random(1).randbytes(32)
    signature = ed25519.sign(seed, b"one")
    assert not ed25519.verify(ed25519.public_key(seed), b"two", signature)
    with pytest.raises(InvalidSignature):
        Ed25519PublicKey.from_public_bytes(ed25519.public_key(seed)).verify(signature, b"two")
