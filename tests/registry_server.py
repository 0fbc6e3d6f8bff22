"""A real registry for tests: Debian's ``docker-registry`` (the CNCF distribution registry, v2.8) on 127.0.0.1.

`RegistryServer` runs one registry child in one of three modes:

- ``"open"``: no authentication.
- ``"basic"``: htpasswd basic auth (bcrypt, the only hash the registry accepts); every request carries
  ``Authorization: Basic …``; an unauthenticated one gets ``401`` with ``WWW-Authenticate: Basic realm="…"``.
- ``"token"``: the Docker token protocol. The registry trusts the self-signed certificate of a
  `TokenServer` (an aiohttp app in the test process) and answers unauthenticated requests with
  ``401`` and ``WWW-Authenticate: Bearer realm="<token url>",service="…",scope="repository:<name>:pull,push"``.
  The client GETs ``<realm>?service=…&scope=…`` (with basic credentials, or none for anonymous
  access) and retries with ``Authorization: Bearer <token>``.

The registry stores blobs on the filesystem under `RegistryServer.storage`, so a test can find
(`blob_path`) and corrupt a stored blob. `kill` is SIGKILL now (a registry dying mid-transfer);
`start` again brings it back on the same port with the same storage and HTTP secret, so upload
sessions begun before the kill stay valid. Waits race readiness, the child's exit and a deadline
(`tests.processes.wait_until_serving`); start-up failures carry the exit status and the log's tail.

How the token is built (what distribution 2.8's token access controller checks): a JWT signed
ES256 whose header carries ``x5c`` = [the signing certificate, base64 DER], which must chain to a
certificate in ``auth.token.rootcertbundle`` (here it *is* that certificate); claims ``iss`` =
the configured issuer, ``aud`` = the configured service, ``exp``/``nbf`` (60 s leeway), and
``access`` = [{"type": "repository", "name": …, "actions": [...]}] covering what the request needs.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Literal

import bcrypt
import yaml
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID

from tests.net import free_port
from tests.processes import stop_process, wait_until_serving

Mode = Literal["open", "basic", "token"]

REGISTRY_BIN = "docker-registry"
START_TIMEOUT = 30.0
BASIC_REALM = "llamasup-test-registry"
SERVICE = "llamasup-test-registry"
ISSUER = "llamasup-test-token-issuer"
TOKEN_TTL = 300
BIND_ATTEMPTS = 3  # free_port() can lose a race with another process; the registry then exits at once


@dataclass(frozen=True)
class Credentials:
    username: str
    password: str

    def basic_header(self) -> str:
        """The ``Authorization`` value for these credentials (aiohttp 3.14 deprecates its ``BasicAuth``)."""
        return "Basic " + base64.b64encode(f"{self.username}:{self.password}".encode()).decode()


DEFAULT_CREDENTIALS = Credentials("llamasup", "registry-password")


def registry_binary() -> str:
    """The registry's path; `make test` / `make registry` install it (apt package docker-registry)."""
    path = shutil.which(REGISTRY_BIN)
    if path is None:
        raise AssertionError(f"{REGISTRY_BIN} is not installed; run `make registry` (apt-get install docker-registry)")
    return path


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


MANIFEST_V2 = "application/vnd.docker.distribution.manifest.v2+json"


def manifest_for(config: bytes, layer: bytes) -> bytes:
    """A manifest of one model layer and a config, indented (not compact): the registry must hand back
    these exact bytes, not a re-encoding."""
    return json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": MANIFEST_V2,
            "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "digest": sha256_digest(config), "size": len(config)},
            "layers": [{"mediaType": "application/vnd.ollama.image.model", "digest": sha256_digest(layer), "size": len(layer)}],
        },
        indent=2,
    ).encode()


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class SigningKey:
    """An EC P-256 key and a self-signed certificate for it: the token issuer's identity."""

    def __init__(self) -> None:
        self._key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, ISSUER)])
        now = datetime.now(timezone.utc)
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self._key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(hours=1))
            .not_valid_after(now + timedelta(days=2))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(self._key, hashes.SHA256())
        )

    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    def jwt(self, claims: dict[str, object]) -> str:
        """A compact JWS (ES256) with the certificate in ``x5c``; the signature is JOSE's raw r‖s."""
        header = {"typ": "JWT", "alg": "ES256", "x5c": [base64.b64encode(self.cert.public_bytes(serialization.Encoding.DER)).decode()]}
        signing_input = _b64url(json.dumps(header).encode()) + "." + _b64url(json.dumps(claims).encode())
        r, s = decode_dss_signature(self._key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256())))
        return signing_input + "." + _b64url(r.to_bytes(32, "big") + s.to_bytes(32, "big"))


def parse_scope(scope: str) -> tuple[str, str, list[str]]:
    """``repository:ns/model:pull,push`` → ("repository", "ns/model", ["pull", "push"]): the type is split
    off the front and the actions off the back, so a name may hold ``/`` (and a ``host:port`` prefix)."""
    kind, _, rest = scope.partition(":")
    name, _, actions = rest.rpartition(":")
    if not kind or not name:
        raise ValueError(f"malformed scope {scope!r}")
    return kind, name, [a for a in actions.split(",") if a]


@dataclass
class TokenRequest:
    """One request the token server answered: who asked (None = anonymous), for what, with what result."""

    user: str | None
    service: str | None
    scopes: list[str]
    status: int


@dataclass
class TokenServer:
    """The Docker token endpoint (``GET /token``) on 127.0.0.1, in the test's event loop.

    Authenticated users (`users`) get every action they ask for; anonymous callers get only
    `anonymous_actions` (none by default, so an anonymous token grants nothing); a wrong password
    is 401. Granted actions are the intersection of what was asked and what is allowed.
    """

    users: dict[str, str] = field(default_factory=lambda: {DEFAULT_CREDENTIALS.username: DEFAULT_CREDENTIALS.password})
    anonymous_actions: frozenset[str] = frozenset()
    expires_in: int = TOKEN_TTL
    key: SigningKey = field(default_factory=SigningKey)
    requests: list[TokenRequest] = field(default_factory=list)
    _runner: web.AppRunner | None = field(default=None, init=False, repr=False)
    _port: int = field(default=0, init=False)

    @property
    def realm(self) -> str:
        assert self._port, "the token server is not started"
        return f"http://127.0.0.1:{self._port}/token"

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/token", self._token)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self._port = int(self._runner.addresses[0][1])

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def mint(self, subject: str, access: list[dict[str, object]], *, service: str = SERVICE, issuer: str = ISSUER, ttl: int | None = None) -> str:
        """A signed token as the registry expects it (tests may also forge wrong ones through the args)."""
        now = int(time.time())
        claims: dict[str, object] = {
            "iss": issuer,
            "sub": subject,
            "aud": service,
            "exp": now + (self.expires_in if ttl is None else ttl),
            "nbf": now - 1,
            "iat": now,
            "jti": secrets.token_hex(16),
            "access": access,
        }
        return self.key.jwt(claims)

    async def _token(self, request: web.Request) -> web.Response:
        scopes = [s for value in request.query.getall("scope", []) for s in value.split(" ") if s]
        service = request.query.get("service")
        user: str | None = None
        header = request.headers.get("Authorization")
        if header is not None:
            login = _basic_login(header)
            if login is None:
                return self._refuse(None, service, scopes, 400, "malformed Authorization header")
            if self.users.get(login[0]) != login[1]:
                return self._refuse(login[0], service, scopes, 401, "invalid username or password")
            user = login[0]
        if service != SERVICE:
            return self._refuse(user, service, scopes, 400, f"unknown service {service!r}")
        access: list[dict[str, object]] = []
        for scope in scopes:
            try:
                kind, name, wanted = parse_scope(scope)
            except ValueError as e:
                return self._refuse(user, service, scopes, 400, str(e))
            granted = wanted if user is not None else [a for a in wanted if a in self.anonymous_actions]
            if granted:
                access.append({"type": kind, "name": name, "actions": granted})
        token = self.mint(user or "", access)
        self.requests.append(TokenRequest(user, service, scopes, 200))
        issued = datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")
        return web.json_response({"token": token, "access_token": token, "expires_in": self.expires_in, "issued_at": issued})

    def _refuse(self, user: str | None, service: str | None, scopes: list[str], status: int, message: str) -> web.Response:
        self.requests.append(TokenRequest(user, service, scopes, status))
        headers = {"WWW-Authenticate": 'Basic realm="token"'} if status == 401 else {}
        return web.json_response({"errors": [{"code": "UNAUTHORIZED" if status == 401 else "DENIED", "message": message}]}, status=status, headers=headers)


def _basic_login(header: str) -> tuple[str, str] | None:
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        user, sep, password = base64.b64decode(encoded.strip(), validate=True).decode().partition(":")
    except ValueError:  # binascii.Error and UnicodeDecodeError are ValueErrors
        return None
    return (user, password) if sep else None


class RegistryServer:
    """One docker-registry child on 127.0.0.1:<free port>, configured under ``workdir``.

    ``url`` (``http://127.0.0.1:PORT``), ``host`` (``127.0.0.1:PORT``), ``credentials`` (None in
    open mode), ``storage`` (the filesystem driver's root), ``log`` (stdout+stderr of every start).
    `start` is idempotent; `stop` (SIGTERM, then SIGKILL) and `kill` (SIGKILL) always reap and are
    no-ops on a stopped registry. The port, storage and HTTP secret survive a restart.
    """

    def __init__(
        self,
        workdir: Path,
        mode: Mode = "open",
        *,
        credentials: Credentials = DEFAULT_CREDENTIALS,
        token_server: TokenServer | None = None,
    ) -> None:
        if mode == "token" and token_server is None:
            raise ValueError("token mode needs a started TokenServer")
        self.mode: Mode = mode
        self.workdir = workdir
        self.storage = workdir / "storage"
        self.log = workdir / "registry.log"
        self.config_path = workdir / "config.yml"
        self.credentials: Credentials | None = None if mode == "open" else credentials
        self.token_server = token_server if mode == "token" else None
        self.port = free_port()
        self._secret = secrets.token_hex(16)  # fixed for this server's life: upload state survives restarts
        self._proc: subprocess.Popen[bytes] | None = None
        workdir.mkdir(parents=True, exist_ok=True)
        self.storage.mkdir(exist_ok=True)
        if mode == "basic":
            hashed = bcrypt.hashpw(credentials.password.encode(), bcrypt.gensalt(rounds=4)).decode()  # 4: cheapest cost Go accepts
            (workdir / "htpasswd").write_text(f"{credentials.username}:{hashed}\n")
        if self.token_server is not None:
            (workdir / "token-root.pem").write_bytes(self.token_server.key.cert_pem())

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def config(self) -> dict[str, object]:
        cfg: dict[str, object] = {
            "version": 0.1,
            "log": {"level": "info", "formatter": "text", "accesslog": {"disabled": False}},
            "storage": {
                "filesystem": {"rootdirectory": str(self.storage)},
                "delete": {"enabled": True},
                # No background sweeps: nothing changes on disk except by a request.
                "maintenance": {"uploadpurging": {"enabled": False}},
            },
            "http": {"addr": self.host, "secret": self._secret, "headers": {"X-Content-Type-Options": ["nosniff"]}},
            "health": {"storagedriver": {"enabled": False}},
        }
        if self.mode == "basic":
            cfg["auth"] = {"htpasswd": {"realm": BASIC_REALM, "path": str(self.workdir / "htpasswd")}}
        elif self.token_server is not None:
            cfg["auth"] = {
                "token": {
                    "realm": self.token_server.realm,
                    "service": SERVICE,
                    "issuer": ISSUER,
                    "rootcertbundle": str(self.workdir / "token-root.pem"),
                }
            }
        return cfg

    def start(self) -> None:
        """Start the registry and return once ``GET /`` answers 200 and ``/v2/`` speaks registry/2.0."""
        if self.running:
            return
        binary = registry_binary()
        for attempt in range(BIND_ATTEMPTS):
            self.config_path.write_text(yaml.safe_dump(self.config(), sort_keys=False))
            offset = self.log.stat().st_size if self.log.exists() else 0
            with self.log.open("ab") as out:
                self._proc = subprocess.Popen(
                    [binary, "serve", str(self.config_path)],
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    env=_child_env(),
                )
            try:
                # "/" is the registry's own liveness handler: 200 in every auth mode (it sits before auth).
                wait_until_serving(self._proc, self.url + "/", self.log, timeout=START_TIMEOUT)
                break
            except AssertionError:
                stop_process(self._proc)
                lost_port = "address already in use" in self.log.read_text(errors="replace")[offset:]
                if not lost_port or attempt == BIND_ATTEMPTS - 1:
                    raise
                self.port = free_port()
        self._check_api()

    def _check_api(self) -> None:
        expected = 200 if self.mode == "open" else 401
        try:
            with urllib.request.urlopen(self.url + "/v2/", timeout=10) as resp:
                status, version = resp.status, resp.headers.get("Docker-Distribution-Api-Version")
        except urllib.error.HTTPError as e:
            status, version = e.code, e.headers.get("Docker-Distribution-Api-Version")
        if status != expected or version != "registry/2.0":
            self.stop()
            raise AssertionError(f"{self.url}/v2/ answered {status} ({version}), expected {expected} (registry/2.0):\n{self.log_tail()}")

    def stop(self) -> None:
        """SIGTERM, a bounded wait, SIGKILL; reaped (a no-op when not running)."""
        if self._proc is not None:
            stop_process(self._proc)

    def kill(self) -> None:
        """SIGKILL now and reap: the registry vanishes mid-transfer (open connections are reset)."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
        if self._proc is not None:
            self._proc.wait()

    def restart(self) -> None:
        self.stop()
        self.start()

    def log_tail(self, chars: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""

    # Storage layout of the filesystem driver (docker/registry/v2/…), for tests that inspect or corrupt it.

    @property
    def v2_root(self) -> Path:
        return self.storage / "docker" / "registry" / "v2"

    def blob_path(self, digest: str) -> Path:
        """The stored bytes of a blob: ``…/blobs/sha256/<2 hex>/<64 hex>/data`` (exists once pushed)."""
        algo, _, hexpart = digest.partition(":")
        if algo != "sha256" or len(hexpart) != 64:
            raise ValueError(f"not a sha256 digest: {digest!r}")
        return self.v2_root / "blobs" / "sha256" / hexpart[:2] / hexpart / "data"

    def upload_paths(self, repository: str) -> list[Path]:
        """The ``data`` files of a repository's unfinished uploads (``…/repositories/<name>/_uploads/<uuid>/data``)."""
        uploads = self.v2_root / "repositories" / repository / "_uploads"
        return sorted(uploads.glob("*/data")) if uploads.is_dir() else []


def _child_env() -> dict[str, str]:
    # REGISTRY_* variables override the config file (e.g. REGISTRY_HTTP_ADDR); ours must win.
    return {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_")}


@contextmanager
def registry_server(
    workdir: Path,
    mode: Mode = "open",
    *,
    credentials: Credentials = DEFAULT_CREDENTIALS,
    token_server: TokenServer | None = None,
) -> Iterator[RegistryServer]:
    """A started `RegistryServer` for the block; stopped and reaped afterwards, even if start failed."""
    server = RegistryServer(workdir, mode, credentials=credentials, token_server=token_server)
    try:
        server.start()
        yield server
    finally:
        server.stop()
