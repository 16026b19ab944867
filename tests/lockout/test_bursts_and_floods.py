"""The lockout bound through a real Apache: concurrent bursts and floods from many addresses.

Each real password check of a refused request writes one denial line with reason "bad
password" or "unknown user" (a lock writes "locked out" instead, and no check runs), so the
error log counts the checks that happened.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import os
import re
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from devkit.apache import Apache, run_user
from devkit.site import USERS, basic, crashes, get, site_body, write_users

pytestmark = pytest.mark.apache

StartApache = Callable[..., Apache]


def _checks(log: str, client: str, reason: str) -> int:
    return len(
        re.findall(rf'authn: denied user=.* client={re.escape(client)} source=\S+ reason="{reason}"', log)
    )


def _burst(port: int, headers: list[str], source: str = "127.0.0.1") -> list[int]:
    """Send every header at once, each on its own connection and thread."""
    start = threading.Barrier(len(headers))
    statuses: list[int] = []

    def one(header: str) -> None:
        start.wait()
        statuses.append(get(port, authorization=header, source=source).status)

    threads = [threading.Thread(target=one, args=(h,)) for h in headers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return statuses


@pytest.mark.parametrize("mpm", ["event", "prefork"])
def test_a_concurrent_burst_gets_at_most_the_threshold_of_checks(
    start_apache: StartApache, scratch: Path, mpm: str
) -> None:
    """100 concurrent wrong passwords for one user (threshold 10), then 200 concurrent unknown
    users from one address (client threshold 100): the failure is counted before the hash."""
    users = scratch / "users"
    write_users(users, USERS)
    body = site_body(scratch / "www", users, "", status=False)
    server_conf = "" if mpm == "event" else "StartServers 10\nMinSpareServers 10\nMaxRequestWorkers 40"
    apache = start_apache(body, mpm=mpm, server_conf=server_conf)
    statuses = _burst(apache.port, [basic("alice", f"guess{i}") for i in range(100)])
    log = apache.error_log()
    assert _checks(log, "127.0.0.1", "bad password") <= 10
    assert statuses.count(401) == _checks(log, "127.0.0.1", "bad password")
    assert set(statuses) <= {401, 429} and statuses.count(429) >= 90
    statuses = _burst(apache.port, [basic(f"ghost{i}", "x") for i in range(200)], source="127.0.0.2")
    log = apache.error_log()
    assert _checks(log, "127.0.0.2", "unknown user") <= 100
    assert set(statuses) <= {401, 429} and statuses.count(429) >= 100
    assert not crashes(log)


def test_a_flood_from_many_addresses_cannot_force_the_lockout_open(
    start_apache: StartApache, scratch: Path
) -> None:
    """Thousands of rotating addresses send cheap failures (a {SHA} file: almost no hash cost,
    so every failure is a store write; empty passwords too) as fast as they can, on many
    prefork children, while one fixed address guesses one user's password. The fixed address
    still gets at most 10 real checks; the store never counts as down; the database and its
    write-ahead log stay small."""
    users = scratch / "users"
    sha = "{SHA}" + base64.b64encode(hashlib.sha1(b"wonderland").digest()).decode()
    users.write_text(f"alice:{sha}\n")
    users.chmod(0o644)
    lockout_dir = scratch / "lockout"
    lockout_dir.mkdir()
    os.chown(lockout_dir, *_ids())
    body = site_body(scratch / "www", users, f'PythonOption authn.lockout.dir "{lockout_dir}"', status=False)
    server_conf = "StartServers 20\nMinSpareServers 20\nMaxSpareServers 40\nMaxRequestWorkers 40"
    apache = start_apache(body, mpm="prefork", server_conf=server_conf)
    stop = threading.Event()
    sent = itertools.count()
    flood_statuses: list[int] = []

    def flood(worker: int) -> None:
        n = 0
        while not stop.is_set():
            n += 1
            address = f"127.{1 + worker}.{(n >> 8) % 256}.{1 + n % 250}"
            password = "" if n % 5 == 0 else f"x{n}"
            header = basic(f"user{n % 997}", password)
            flood_statuses.append(get(apache.port, authorization=header, source=address).status)
            next(sent)

    workers = [threading.Thread(target=flood, args=(i,)) for i in range(24)]
    for w in workers:
        w.start()
    guesses: list[int] = []
    deadline = time.monotonic() + 12
    try:
        while time.monotonic() < deadline:
            guesses.append(
                get(
                    apache.port, authorization=basic("alice", f"guess{len(guesses)}"), source="127.0.0.9"
                ).status
            )
            time.sleep(0.05)
    finally:
        stop.set()
        for w in workers:
            w.join()
    log = apache.error_log()
    checks = _checks(log, "127.0.0.9", "bad password")
    total = next(sent)
    print(
        f"flood: {total} requests from rotating addresses, {Counter(flood_statuses)}; fixed address: "
        f"{checks} real checks, {Counter(guesses)}; files: "
        f"{ {p.name: p.stat().st_size for p in lockout_dir.iterdir()} }"
    )
    assert checks <= 10, f"{checks} real checks for the fixed address"
    assert guesses.count(401) == checks and guesses.count(429) == len(guesses) - checks, Counter(guesses)
    assert "lockout store down" not in log and "database is locked" not in log
    assert set(flood_statuses) <= {401, 429}
    assert total > 3000, "the flood was too small to prove anything"
    sizes = {p.name: p.stat().st_size for p in lockout_dir.iterdir()}
    wal = sum(size for name, size in sizes.items() if name.endswith("-wal"))
    assert wal <= 8 * 1024 * 1024, sizes
    assert not crashes(log)


def _ids() -> tuple[int, int]:
    import grp
    import pwd

    user, group = run_user()
    return pwd.getpwnam(user).pw_uid, grp.getgrnam(group).gr_gid


@pytest.mark.parametrize("mpm", ["event", "prefork"])
def test_a_burst_of_right_passwords_is_never_locked_out(
    start_apache: StartApache, scratch: Path, mpm: str
) -> None:
    """Forty concurrent first requests of one user with the right password (the cache off, so
    each is a real check): checks in flight wait for each other, none is refused."""
    users = scratch / "users"
    write_users(users, USERS, cost=4)
    body = site_body(scratch / "www", users, "PythonOption authn.cache.ttl 0", status=False)
    server_conf = "" if mpm == "event" else "StartServers 10\nMinSpareServers 10\nMaxRequestWorkers 40"
    apache = start_apache(body, mpm=mpm, server_conf=server_conf)
    statuses = _burst(apache.port, [basic("alice", USERS["alice"])] * 40)
    assert statuses == [200] * 40
    assert "locked out" not in apache.error_log()
