"""The verdict cache: what it stores, what it never stores, when entries die."""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

import pytest

from authn import hashes
from authn.authenticator import Authenticator
from authn.cache import verdicts as cache_mod
from authn.cache.shared import SharedStore
from authn.cache.verdicts import VerdictCache, _LocalLayer, cache_for, chain_identity
from authn.errors import ConfigError
from authn.settings import parse_settings
from authn.sources.passwordfile import PasswordFile
from authn.verdict import Outcome, Verdict


class CountingSource:
    """A real PasswordFile that counts the full checks it runs."""

    def __init__(self, path: str) -> None:
        self.inner = PasswordFile(path, interval=0.0)
        self.name = "file"
        self.checks = 0

    def check(self, user: str, password: bytes) -> Verdict:
        self.checks += 1
        return self.inner.check(user, password)

    def generation(self) -> object:
        return self.inner.generation()


@pytest.fixture
def pwfile(tmp_path: Path) -> Path:
    path = tmp_path / "users"
    path.write_text(
        f"alice:{hashes.make_hash(b'right', 'bcrypt', 4)}\nbob:{hashes.make_hash(b'bobpw', 'bcrypt', 4)}\n"
    )
    return path


def make_cache(tmp_path: Path, source: object, ttl: int = 300) -> VerdictCache:
    store = SharedStore(str(tmp_path / "cache"), 256)
    return VerdictCache(b"test chain", [source], ttl, store, _LocalLayer(16))  # type: ignore[list-item]


def authenticate(cache: VerdictCache, source: CountingSource, user: str, pw: bytes) -> Verdict:
    """The same order as Authenticator.authenticate."""
    found = cache.lookup(user, pw)
    if found is not None:
        return found
    verdict = source.check(user, pw)
    cache.store_verdict(user, pw, verdict)
    return verdict


def test_granted_is_cached_and_denials_never(tmp_path: Path, pwfile: Path) -> None:
    source = CountingSource(str(pwfile))
    cache = make_cache(tmp_path, source)
    assert authenticate(cache, source, "alice", b"right").granted
    assert authenticate(cache, source, "alice", b"right").granted
    assert source.checks == 1
    for _ in range(3):
        assert authenticate(cache, source, "alice", b"wrong").outcome is Outcome.DENIED
        assert authenticate(cache, source, "nobody", b"right").outcome is Outcome.UNKNOWN
    assert source.checks == 7  # every failure ran the full check


def test_another_process_layer_hits_the_shared_store(tmp_path: Path, pwfile: Path) -> None:
    source = CountingSource(str(pwfile))
    first = make_cache(tmp_path, source)
    authenticate(first, source, "alice", b"right")
    second = make_cache(tmp_path, source)  # fresh per-process layer, same folder
    verdict = second.lookup("alice", b"right")
    assert verdict is not None and verdict.granted and verdict.user == "alice"
    assert second.lookup("alice", b"Right") is None


def test_groups_and_attrs_survive_the_shared_store(tmp_path: Path, pwfile: Path) -> None:
    source = CountingSource(str(pwfile))
    first = make_cache(tmp_path, source)
    granted = Verdict.grant("bob", "ldap", frozenset({"web team", "ops"}), {"mail": ("b@x",)})
    first.store_verdict("bob", b"bobpw", granted)
    found = make_cache(tmp_path, source).lookup("bob", b"bobpw")
    assert found is not None
    assert (found.source, found.groups, dict(found.attrs)) == (
        "ldap",
        frozenset({"web team", "ops"}),
        {"mail": ("b@x",)},
    )


def test_changed_file_invalidates_at_once(tmp_path: Path, pwfile: Path) -> None:
    source = CountingSource(str(pwfile))
    cache = make_cache(tmp_path, source)
    authenticate(cache, source, "alice", b"right")
    new = pwfile.with_name("users.new")
    new.write_text(f"alice:{hashes.make_hash(b'changed', 'bcrypt', 4)}\n")
    settled = pwfile.stat().st_mtime - 10  # past WatchedFile's settle time
    os.utime(new, (settled, settled))
    os.replace(new, pwfile)
    assert authenticate(cache, source, "alice", b"right").outcome is Outcome.DENIED
    assert authenticate(cache, source, "alice", b"changed").granted


def test_entries_expire_and_cannot_outlive_a_lower_ttl(
    tmp_path: Path, pwfile: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = CountingSource(str(pwfile))
    clock = [1_000_000.0]
    monkeypatch.setattr(cache_mod.time, "time", lambda: clock[0])
    cache = make_cache(tmp_path, source, ttl=60)
    authenticate(cache, source, "alice", b"right")
    clock[0] += 59
    assert cache.lookup("alice", b"right") is not None
    clock[0] += 2
    assert cache.lookup("alice", b"right") is None
    authenticate(cache, source, "alice", b"right")  # stored again, expires in 60 s
    shorter = make_cache(tmp_path, source, ttl=10)
    assert shorter.lookup("alice", b"right") is None
    clock[0] -= 3600  # clock stepped back an hour
    assert cache.lookup("alice", b"right") is None


def test_password_is_never_written(tmp_path: Path, pwfile: Path) -> None:
    source = CountingSource(str(pwfile))
    cache = make_cache(tmp_path, source)
    authenticate(cache, source, "alice", b"right")
    for name in ("entries", "key"):
        assert b"right" not in (tmp_path / "cache" / name).read_bytes()
    assert all(b"right" not in key for key in cache.local.entries)


def test_chains_do_not_share_entries(tmp_path: Path, pwfile: Path) -> None:
    source = CountingSource(str(pwfile))
    store = SharedStore(str(tmp_path / "cache"), 256)
    one = VerdictCache(b"chain one", [source], 300, store, _LocalLayer(16))  # type: ignore[list-item]
    two = VerdictCache(b"chain two", [source], 300, store, _LocalLayer(16))  # type: ignore[list-item]
    authenticate(one, source, "alice", b"right")
    assert two.lookup("alice", b"right") is None


def test_identity_ignores_cache_options_only() -> None:
    a = parse_settings([("authn.file", "/etc/a"), ("authn.cache.ttl", "10")])
    b = parse_settings([("authn.file", "/etc/a"), ("authn.cache.ttl", "99")])
    c = parse_settings([("authn.file", "/etc/b")])
    assert chain_identity(a) == chain_identity(b) != chain_identity(c)


def _two_with_missing_folder(
    tmp_path: Path, pwfile: Path, caplog: pytest.LogCaptureFixture, tmp: str
) -> tuple[str, Path, Authenticator, Authenticator, list[str]]:
    """Two authenticators of a location whose cache folder cannot be made, with TMPDIR at
    ``tmp_path / tmp``: (folder, fallback folder, first, second, the warnings)."""
    folder = str(tmp_path / "missing-parent" / "cache")
    private = tmp_path / tmp / f"authn-cache-{os.geteuid()}"
    settings = parse_settings([("authn.file", str(pwfile)), ("authn.cache.dir", folder)])
    with caplog.at_level(logging.WARNING, logger="authn"):
        first = Authenticator(settings)
        second = Authenticator(settings)
    assert first.authenticate("alice", b"right").granted
    assert second.cache is not None and second.cache.lookup("alice", b"right") is not None
    messages = [r.getMessage() for r in caplog.records if "unusable" in r.getMessage()]
    return folder, private, first, second, messages


def test_unusable_folder_warns_once_and_falls_back_to_the_private_folder(
    tmp_path: Path, pwfile: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TMPDIR", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    folder, private, first, _, messages = _two_with_missing_folder(tmp_path, pwfile, caplog, "tmp")
    assert messages == [
        f"authn: cache folder {folder} unusable, the cache is in {private} instead (shared by this "
        f"machine's Apache processes, emptied on reboot): cannot create cache folder {folder}: No "
        f"such file or directory; create it for the Apache user: install -d -o www-data -g "
        f"www-data -m 0700 {folder}"
    ]
    assert first.cache is not None and first.cache.store is not None
    assert first.cache.store.folder == str(private)
    assert stat.S_IMODE(private.stat().st_mode) == 0o700


def test_no_usable_folder_warns_once_and_caches_per_process(
    tmp_path: Path, pwfile: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TMPDIR", str(tmp_path / "no-tmp"))  # the fallback cannot be made either
    folder, private, first, _, messages = _two_with_missing_folder(tmp_path, pwfile, caplog, "no-tmp")
    assert len(messages) == 1
    assert messages[0].startswith(
        f"authn: cache folder {folder} unusable, nor {private}, each Apache process keeps its own "
        f"cache until Apache restarts: cannot create cache folder {folder}"
    )
    assert first.cache is not None and first.cache.store is None


def test_ttl_zero_turns_it_off(pwfile: Path) -> None:
    settings = parse_settings([("authn.file", str(pwfile)), ("authn.cache.ttl", "0")])
    assert cache_for(settings, []) is None
    assert Authenticator(settings).cache is None


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("authn.cache.ttl", "-1"),
        ("authn.cache.ttl", "5m"),
        ("authn.cache.ttl", "86401"),
        ("authn.cache.dir", "relative/dir"),
        ("authn.cache.entries", "10"),
    ],
)
def test_bad_values_name_the_option(option: str, value: str) -> None:
    with pytest.raises(ConfigError, match=option):
        parse_settings([("authn.file", "/etc/a"), (option, value)])


def test_defaults() -> None:
    settings = parse_settings([("authn.file", "/etc/a")])
    assert (settings.cache.ttl, settings.cache.dir, settings.cache.entries) == (
        300,
        "/var/cache/authn",
        16384,
    )


def test_authenticator_through_the_cache(tmp_path: Path, pwfile: Path) -> None:
    settings = parse_settings([("authn.file", str(pwfile)), ("authn.cache.dir", str(tmp_path / "c"))])
    auth = Authenticator(settings)
    assert auth.cache is not None and auth.cache.store is not None
    assert auth.authenticate("alice", b"right").granted
    assert auth.cache.lookup("alice", b"right") is not None
    assert auth.authenticate("alice", b"wrong").outcome is Outcome.DENIED
    assert auth.authenticate("alice", b"").reason == "empty password"


def test_authenticator_for_serves_the_same_object_and_rejects_bad_options(
    tmp_path: Path, pwfile: Path
) -> None:
    from authn.authenticator import authenticator_for

    options = {"authn.source": "file", "authn.file": str(pwfile), "authn.cache.ttl": "0"}
    first = authenticator_for(options)
    assert authenticator_for(dict(options)) is first
    bad = {**options, "authn.cache.ttl": "soon"}
    for _ in range(2):  # a bad option set is never remembered
        with pytest.raises(ConfigError, match=r"authn\.cache\.ttl"):
            authenticator_for(bad)


def test_entry_key_is_keyed_blake2b_of_the_chain_user_and_password(tmp_path: Path, pwfile: Path) -> None:
    import hashlib

    source = CountingSource(str(pwfile))
    cache = make_cache(tmp_path, source)
    assert cache.store is not None
    name = "bé".encode()
    msg = len(b"test chain").to_bytes(4, "big") + b"test chain" + len(name).to_bytes(4, "big")
    expected = hashlib.blake2b(msg + name + b"pw", key=cache.store.secret, digest_size=32).digest()
    assert cache._key("bé", b"pw") == expected
