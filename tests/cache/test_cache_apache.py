"""The cache through a real Apache: shared by all children, invalidated by a changed file,
never in the way of a wrong password, and never failing a request when its folder is bad."""

from __future__ import annotations

import base64
import http.client
import os
import time
from pathlib import Path

import pytest

from authn import hashes
from tests.cache.conftest import give_to_apache_user, protected_site
from tests.harness.apache import Apache

pytestmark = pytest.mark.apache


def status(apache: Apache, user: str, password: str) -> int:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    conn = http.client.HTTPConnection("127.0.0.1", apache.port, timeout=10)
    try:
        conn.request("GET", "/index.html", headers={"Authorization": f"Basic {token}"})
        return conn.getresponse().status
    finally:
        conn.close()


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


def test_one_check_serves_every_child_even_after_restart(tmp_path: Path, apaches: list[Apache]) -> None:
    cache_dir = tmp_path / "cache"
    cache_dir.mkdir()
    give_to_apache_user(cache_dir, 0o700)
    users, body = site(tmp_path, cache_dir)
    apache = Apache(tmp_path / "apache", body)
    apaches.append(apache.start())
    assert status(apache, "alice", "right") == 200
    assert (cache_dir / "key").stat().st_mode & 0o777 == 0o600
    # Same generation (inode, size, mtime), other content: only a cache can still say yes.
    st = users.stat()
    other = f"alice:{hashes.make_hash(b'other', 'bcrypt', 4)}\n".encode()
    assert len(other) == st.st_size
    with open(users, "r+b") as fh:
        fh.write(other)
    os.utime(users, ns=(st.st_atime_ns, st.st_mtime_ns))
    # A new Apache: new children with empty per-process layers that have not read the file.
    # (Not apache.graceful(): after it, prefork's shutdown signals its whole process group.)
    apache.stop()
    apache = Apache(tmp_path / "apache2", body)
    apaches.append(apache.start())
    assert [status(apache, "alice", "right") for _ in range(10)] == [200] * 10
    assert status(apache, "alice", "other") == 200  # the file's password, by a full check
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


def test_unusable_folder_logs_and_still_serves(tmp_path: Path, apaches: list[Apache]) -> None:
    cache_dir = tmp_path / "root-only" / "cache"  # the Apache user cannot create it
    cache_dir.parent.mkdir(mode=0o755)
    if os.geteuid() != 0:
        cache_dir.parent.chmod(0o555)
    _, body = site(tmp_path, cache_dir)
    apache = Apache(tmp_path / "apache", body)
    apaches.append(apache.start())
    assert [status(apache, "alice", "right") for _ in range(5)] == [200] * 5
    assert status(apache, "alice", "wrong") == 401
    log = apache.error_log()
    assert f"cache folder {cache_dir} unusable" in log, log
    assert "install -d -o www-data -g www-data -m 0700" in log
    assert not cache_dir.exists()


def test_ttl_zero_runs_the_full_check(tmp_path: Path, apaches: list[Apache]) -> None:
    cache_dir = tmp_path / "cache"
    _, body = site(tmp_path, cache_dir, **{"authn.cache.ttl": "0"})
    apache = Apache(tmp_path / "apache", body)
    apaches.append(apache.start())
    assert status(apache, "alice", "right") == 200
    assert status(apache, "alice", "wrong") == 401
    assert not cache_dir.exists()
