"""The cache through a real Apache: shared by all children, invalidated by a changed file,
never in the way of a wrong password, and never failing a request when its folder is bad."""

from __future__ import annotations

import os
import pwd
import stat
import time
from pathlib import Path

import pytest

from authn import hashes
from devkit.apache import Apache, run_user
from devkit.http import basic, request
from tests.cache.conftest import give_to_apache_user, protected_site

pytestmark = pytest.mark.apache


def status(apache: Apache, user: str, password: str) -> int:
    return request(apache.port, "/index.html", auth=basic(user, password), timeout=10).status


def write_users(path: Path, password: bytes) -> None:
    """Write the file, with an mtime in the past so the watcher takes it at once."""
    tmp = path.with_name(path.name + ".new")
    tmp.write_text(f"alice:{hashes.make_hash(password, 'bcrypt', 4)}\n")
    past = time.time() - 10
    os.utime(tmp, (past, past))
    tmp.chmod(0o644)
    os.replace(tmp, path)


def site(tmp_path: Path, cache_dir: Path, **extra: str) -> tuple[Path, str]:
    docroot = tmp_path / "www"
    docroot.mkdir()
    (docroot / "index.html").write_text("hello\n")
    users = tmp_path / "users"
    write_users(users, b"right")
    options = {"authn.file": str(users), "authn.cache.dir": str(cache_dir), **extra}
    return users, protected_site(docroot, options)


ONE_CHILD = "StartServers 1\nMinSpareServers 1\nMaxSpareServers 1\nServerLimit 1\nMaxRequestWorkers 1"


def metric(apache: Apache, name: str) -> float:
    """One value of the status page's Prometheus text (the page is protected by alice)."""
    response = request(
        apache.port, "/authn-status?format=prometheus", auth=basic("alice", "right"), timeout=10
    )
    text = response.body.decode()
    assert response.status == 200, text
    values = [
        float(line.split()[-1]) for line in text.splitlines() if line.startswith((name + " ", name + "{"))
    ]
    assert values, text
    return values[0]


def test_one_check_serves_every_child_even_after_restart(tmp_path: Path, apaches: list[Apache]) -> None:
    cache_dir = tmp_path / "cache"
    cache_dir.mkdir()
    give_to_apache_user(cache_dir, 0o700)
    users, body = site(tmp_path, cache_dir)
    body += (
        f'\nPythonOption authn.cache.dir "{cache_dir}"\nDefine AUTHN_STATUS_USERS "{users}"\n'
        'Include "${AUTHN_CONF}/authn-status.conf"\n'
    )
    apache = Apache(tmp_path / "apache", body)
    apaches.append(apache.start())
    assert status(apache, "alice", "right") == 200
    assert (cache_dir / "key").stat().st_mode & 0o777 == 0o600
    # A new Apache with a single child: its per-process layer is empty, so a hit there can
    # only come from the machine-wide store that the first Apache's child wrote.
    # (Not apache.graceful(): after it, prefork's shutdown signals its whole process group.)
    apache.stop()
    apache = Apache(tmp_path / "apache2", body, server_conf=ONE_CHILD)
    apaches.append(apache.start())
    assert [status(apache, "alice", "right") for _ in range(10)] == [200] * 10
    assert metric(apache, "authn_cache_shared_hits_total") >= 1
    assert status(apache, "alice", "wrong") == 401


def test_changed_file_invalidates_and_wrong_password_is_refused(
    tmp_path: Path, apaches: list[Apache]
) -> None:
    cache_dir = tmp_path / "cache"
    cache_dir.mkdir()
    give_to_apache_user(cache_dir, 0o700)
    users, body = site(tmp_path, cache_dir)
    apache = Apache(tmp_path / "apache", body)
    apaches.append(apache.start())
    assert status(apache, "alice", "right") == 200
    assert status(apache, "alice", "wrong") == 401
    write_users(users, b"changed")
    time.sleep(1.2)  # the password file is looked at once per second
    assert [status(apache, "alice", "right") for _ in range(5)] == [401] * 5
    assert status(apache, "alice", "changed") == 200


def test_unusable_folder_falls_back_to_a_private_shared_folder(tmp_path: Path, apaches: list[Apache]) -> None:
    """A missing folder (the package not installed, the step skipped) must not cost every
    process every bcrypt check: the cache moves to the Apache user's private folder under its
    temp folder, still shared by the children, and one warning names the folder and the fix."""
    cache_dir = tmp_path / "root-only" / "cache"  # the Apache user cannot create it
    cache_dir.parent.mkdir(mode=0o755)
    if os.geteuid() != 0:
        cache_dir.parent.chmod(0o555)
    users, body = site(tmp_path, cache_dir)
    body += f'\nDefine AUTHN_STATUS_USERS "{users}"\nInclude "${{AUTHN_CONF}}/authn-status.conf"\n'
    apache = Apache(tmp_path / "apache", body, server_conf=ONE_CHILD)
    apaches.append(apache.start())
    assert [status(apache, "alice", "right") for _ in range(5)] == [200] * 5
    assert status(apache, "alice", "wrong") == 401
    log = apache.error_log()
    private = apache.workdir / "tmp" / f"authn-cache-{pwd.getpwnam(run_user()[0]).pw_uid}"
    assert f"cache folder {cache_dir} unusable, the cache is in {private} instead" in log, log
    assert "install -d -o www-data -g www-data -m 0700" in log
    assert not cache_dir.exists()
    assert stat.S_IMODE(private.stat().st_mode) == 0o700
    assert {p.name for p in private.iterdir()} == {"key", "entries"}
    # a new Apache (a new child, an empty per-process layer) hits the fallback's entries
    apache.stop()
    apache = Apache(tmp_path / "apache", body, server_conf=ONE_CHILD)
    apaches.append(apache.start())
    assert status(apache, "alice", "right") == 200
    assert metric(apache, "authn_cache_shared_hits_total") >= 1


def test_fallback_folder_of_another_user_is_refused(tmp_path: Path, apaches: list[Apache]) -> None:
    """Anyone can create names in /tmp: a fallback folder that is not the Apache user's own is
    never used (each process then keeps its own cache), and the log says both folders."""
    if os.geteuid() != 0:
        pytest.skip("needs root to make a folder of another user")
    cache_dir = tmp_path / "missing" / "sub" / "cache"
    _, body = site(tmp_path, cache_dir)
    apache = Apache(tmp_path / "apache", body)
    private = apache.workdir / "tmp" / f"authn-cache-{pwd.getpwnam(run_user()[0]).pw_uid}"
    private.mkdir(parents=True, mode=0o777)  # root's: planted by someone else
    apaches.append(apache.start())
    assert [status(apache, "alice", "right") for _ in range(3)] == [200] * 3
    log = apache.error_log()
    assert f"cache folder {cache_dir} unusable, nor {private}" in log, log
    assert list(private.iterdir()) == []


def test_ttl_zero_runs_the_full_check(tmp_path: Path, apaches: list[Apache]) -> None:
    cache_dir = tmp_path / "cache"
    _, body = site(tmp_path, cache_dir, **{"authn.cache.ttl": "0"})
    apache = Apache(tmp_path / "apache", body)
    apaches.append(apache.start())
    assert status(apache, "alice", "right") == 200
    assert status(apache, "alice", "wrong") == 401
    assert not cache_dir.exists()
