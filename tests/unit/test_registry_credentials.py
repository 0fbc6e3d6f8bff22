"""Registry credentials: lookup forms in llamasup's file and Docker's config, atomic 0600 writes,
redaction, and the settings that locate the files. Every path is under tmp_path."""

from __future__ import annotations

import base64
import json
import stat
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from supervisor.errors import CredentialsFileError
from supervisor.registry.credentials import Credential, CredentialStore, normalize_host
from supervisor.settings import ProxySettings, load_settings, proxy_settings_from_env

PASSWORD = "s3cret-Pa55word"


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def write_json(path: Path, document: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document))
    return path


@pytest.fixture
def own(tmp_path: Path) -> Path:
    return tmp_path / "config" / "llamasup" / "credentials.json"


@pytest.fixture
def docker(tmp_path: Path) -> Path:
    return tmp_path / "docker" / "config.json"


def test_missing_files_mean_no_credentials(own: Path, docker: Path) -> None:
    """Neither file exists: nothing is found and nothing is created."""
    store = CredentialStore(own, docker_config=docker)
    assert store.lookup("registry.example.com") is None
    assert not own.exists() and not own.parent.exists()


@pytest.mark.parametrize(
    ("key", "host"),
    [
        ("registry.example.com", "registry.example.com"),
        ("https://registry.example.com", "registry.example.com"),
        ("http://registry.example.com/", "registry.example.com"),
        ("https://registry.example.com/v1/", "registry.example.com"),
        ("Registry.Example.com", "registry.example.com"),
        ("127.0.0.1:5000", "127.0.0.1:5000"),
        ("http://127.0.0.1:5000/v2/", "127.0.0.1:5000"),
        ("https://index.docker.io/v1/", "docker.io"),
        ("https://index.docker.io/v1/", "registry-1.docker.io"),
        ("docker.io", "index.docker.io"),
    ],
)
def test_docker_key_forms_are_found(docker: Path, own: Path, key: str, host: str) -> None:
    """Docker's key forms (scheme, path, case, Docker Hub aliases) all find the host."""
    write_json(docker, {"auths": {key: {"auth": b64(f"me:{PASSWORD}")}}})
    found = CredentialStore(own, docker_config=docker).lookup(host)
    assert found is not None
    assert (found.username, found.password, found.source) == ("me", PASSWORD, str(docker))


def test_other_ports_and_hosts_do_not_match(docker: Path, own: Path) -> None:
    """A port is part of the host: 127.0.0.1:5000's login is not 127.0.0.1:5001's."""
    write_json(docker, {"auths": {"127.0.0.1:5000": {"auth": b64("me:pw")}, "example.com": {"auth": b64("me:pw")}}})
    store = CredentialStore(own, docker_config=docker)
    assert store.lookup("127.0.0.1:5001") is None
    assert store.lookup("127.0.0.1") is None
    assert store.lookup("sub.example.com") is None


def test_docker_entry_forms(docker: Path, own: Path) -> None:
    """``auth`` (padding optional), ``username``/``password`` and ``identitytoken`` entries; broken ones skipped."""
    write_json(
        docker,
        {
            "auths": {
                "a.example": {"auth": b64("alice:pw:with:colons").rstrip("=")},
                "b.example": {"username": "bob", "password": "pw-b"},
                "c.example": {"auth": b64("<token>:"), "identitytoken": "refresh-123"},
                "d.example": {"auth": "!!!not base64"},
                "e.example": {"auth": b64("no-colon")},
                "f.example": {},
            },
            "credsStore": "desktop",
        },
    )
    store = CredentialStore(own, docker_config=docker)
    a, b, c = store.lookup("a.example"), store.lookup("b.example"), store.lookup("c.example")
    assert a is not None and (a.username, a.password) == ("alice", "pw:with:colons")
    assert b is not None and (b.username, b.password) == ("bob", "pw-b")
    assert c is not None and (c.username, c.identity_token, c.password) == ("<token>", "refresh-123", "")
    for host in ("d.example", "e.example", "f.example", "g.example"):
        assert store.lookup(host) is None


def test_exact_key_beats_a_normalised_one(docker: Path, own: Path) -> None:
    """When several keys name the host, the one spelt exactly as asked wins."""
    write_json(docker, {"auths": {"https://h.example/v1/": {"auth": b64("old:1")}, "h.example": {"auth": b64("new:2")}}})
    found = CredentialStore(own, docker_config=docker).lookup("h.example")
    assert found is not None and found.username == "new"


def test_own_file_wins_over_docker(docker: Path, own: Path) -> None:
    """llamasup's file is read first; Docker's config is the fallback; None disables Docker's."""
    write_json(docker, {"auths": {"h.example": {"auth": b64("docker-user:pw")}}})
    write_json(own, {"auths": {"h.example": {"auth": b64("own-user:pw")}}})
    found = CredentialStore(own, docker_config=docker).lookup("h.example")
    assert found is not None and (found.username, found.source) == ("own-user", str(own))
    assert CredentialStore(own.parent / "none.json", docker_config=None).lookup("h.example") is None


def test_save_is_atomic_private_and_keeps_other_keys(own: Path, tmp_path: Path) -> None:
    """`save` creates the directory 0700 and the file 0600, leaves no temporary file, replaces other key
    forms of the same host, and keeps unrelated entries and keys."""
    write_json(own, {"auths": {"https://h.example/": {"auth": b64("old:old")}, "other.example": {"auth": b64("o:p")}}, "note": "kept"})
    own.chmod(0o644)
    store = CredentialStore(own)
    with capture_logs() as logs:
        store.save("H.example", "me", PASSWORD)
    document = json.loads(own.read_text())
    assert document["note"] == "kept"
    assert document["auths"] == {"h.example": {"auth": b64(f"me:{PASSWORD}")}, "other.example": {"auth": b64("o:p")}}
    assert stat.S_IMODE(own.stat().st_mode) == 0o600
    assert sorted(p.name for p in own.parent.iterdir()) == ["credentials.json"]
    found = store.lookup("h.example")
    assert found is not None and (found.username, found.password) == ("me", PASSWORD)
    assert [e["event"] for e in logs] == ["registry_login_saved"]
    assert PASSWORD not in repr(logs) and b64(f"me:{PASSWORD}") not in repr(logs)

    fresh = tmp_path / "new" / "dir" / "credentials.json"
    CredentialStore(fresh).save("127.0.0.1:5000", "u", "p")
    assert stat.S_IMODE(fresh.stat().st_mode) == 0o600
    assert stat.S_IMODE(fresh.parent.stat().st_mode) == 0o700


def test_save_refuses_bad_input(own: Path) -> None:
    """A user name with ':' cannot be sent as Basic; an empty host is no host."""
    store = CredentialStore(own)
    with pytest.raises(CredentialsFileError):
        store.save("h.example", "a:b", "pw")
    with pytest.raises(CredentialsFileError):
        store.save("", "a", "pw")
    assert not own.exists()


def test_remove_forgets_every_form(own: Path, docker: Path) -> None:
    """`remove` drops all keys naming the host from llamasup's file only; Docker's login still applies."""
    write_json(own, {"auths": {"https://h.example": {"auth": b64("a:1")}, "h.example": {"auth": b64("b:2")}, "k.example": {"auth": b64("c:3")}}})
    write_json(docker, {"auths": {"h.example": {"auth": b64("docker:4")}}})
    store = CredentialStore(own, docker_config=docker)
    assert store.remove("h.example") is True
    assert json.loads(own.read_text())["auths"] == {"k.example": {"auth": b64("c:3")}}
    assert stat.S_IMODE(own.stat().st_mode) == 0o600
    assert store.remove("h.example") is False
    found = store.lookup("h.example")
    assert found is not None and found.username == "docker"
    assert CredentialStore(own.parent / "absent.json").remove("h.example") is False


def test_credentials_are_redacted() -> None:
    """Neither repr nor str of a credential shows the password or the token."""
    cred = Credential("me", PASSWORD, source="/tmp/x.json")
    for text in (repr(cred), str(cred), f"{cred}", repr([cred])):
        assert PASSWORD not in text
        assert "<redacted>" in text and "me" in text
    token = Credential("<token>", identity_token="refresh-xyz")
    assert "refresh-xyz" not in repr(token) and "identity_token=<redacted>" in repr(token)
    assert cred.secrets == (PASSWORD,) and token.secrets == ("refresh-xyz",)
    assert cred.basic_authorization() == "Basic " + b64(f"me:{PASSWORD}")


def test_unreadable_files(own: Path, docker: Path) -> None:
    """A corrupt llamasup file is an error naming the file but not its contents; a corrupt Docker config
    is skipped with a warning."""
    own.parent.mkdir(parents=True)
    own.write_text('{"auths": {"h": {"auth": "' + PASSWORD)
    with pytest.raises(CredentialsFileError) as e:
        CredentialStore(own).lookup("h")
    assert str(own) in str(e.value) and PASSWORD not in str(e.value)
    own.write_text('["a list"]')
    with pytest.raises(CredentialsFileError):
        CredentialStore(own).lookup("h")

    docker.parent.mkdir(parents=True)
    docker.write_text("{" + PASSWORD)
    with capture_logs() as logs:
        assert CredentialStore(own.parent / "absent.json", docker_config=docker).lookup("h") is None
    assert [(e["event"], e["path"]) for e in logs] == [("docker_config_unreadable", str(docker))]
    assert PASSWORD not in repr(logs)


def test_normalize_host() -> None:
    """Scheme and path dropped, lower-cased, Docker Hub aliases folded."""
    assert normalize_host("https://Registry.Example.com:443/v2/") == "registry.example.com:443"
    assert normalize_host("registry-1.docker.io") == "docker.io"


def test_settings_locate_the_files(tmp_path: Path) -> None:
    """Defaults under XDG_CONFIG_HOME and DOCKER_CONFIG; LLAMASUP_CREDENTIALS and the config file override."""
    env = {"XDG_CONFIG_HOME": str(tmp_path / "xdg"), "DOCKER_CONFIG": str(tmp_path / "dock")}
    s = load_settings(env=env)
    assert s.credentials_file == tmp_path / "xdg" / "llamasup" / "credentials.json"
    assert s.docker_config == tmp_path / "dock" / "config.json"
    assert load_settings(env={}).credentials_file == Path.home() / ".config" / "llamasup" / "credentials.json"
    assert load_settings(env={}).docker_config == Path.home() / ".docker" / "config.json"
    assert load_settings(env={**env, "LLAMASUP_CREDENTIALS": str(tmp_path / "c.json")}).credentials_file == tmp_path / "c.json"
    cfg = tmp_path / "llamasup.yaml"
    cfg.write_text(f"credentials_file: {tmp_path / 'f.json'}\ndocker_config: null\n")
    from_file = load_settings(env={"LLAMASUP_CONFIG": str(cfg)})
    assert (from_file.credentials_file, from_file.docker_config) == (tmp_path / "f.json", None)
    assert CredentialStore.from_settings(from_file).path == tmp_path / "f.json"


def test_settings_read_proxies_upper_case_first() -> None:
    """HTTPS_PROXY/HTTP_PROXY/NO_PROXY, upper case before lower case, resolved once into settings."""
    env = {"HTTPS_PROXY": "http://upper:1", "https_proxy": "http://lower:2", "http_proxy": "http://lower:3", "no_proxy": "a,b"}
    expected = ProxySettings(https="http://upper:1", http="http://lower:3", no_proxy="a,b")
    assert load_settings(env=env).proxies == expected
    assert proxy_settings_from_env(env) == expected
    assert load_settings(env={}).proxies == ProxySettings()
