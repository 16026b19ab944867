"""``authn lockout list`` / ``unlock``: against the SQLite and the Redis store, and through a
prefork Apache with several children, each remembering the lock, that all let the user in
at once after the unlock."""

from __future__ import annotations

import http.client
import re
import shutil
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from authn.lockout.policy import Lockout, Policy
from authn.lockout.stores import RedisStore, SqliteStore
from devkit.apache import Apache, run_user
from devkit.redis import RedisServer
from devkit.site import USERS, basic, get, site_body, write_users
from tests.cli.helpers import AUTHN, authn, env

StartApache = Callable[..., Apache]
GOOD = basic("alice", USERS["alice"])
WRONG = basic("alice", "guess")
CHILDREN = "StartServers 4\nMinSpareServers 4\nMaxSpareServers 8\nServerLimit 8\nMaxRequestWorkers 8"


class Syslog:
    """A unix datagram socket standing in for /dev/log (AUTHN_SYSLOG points the CLI here)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(5)

    def line(self) -> str:
        return self.sock.recv(4096).decode()

    def close(self) -> None:
        self.sock.close()


def cli(*args: str | Path, syslog: Syslog | None = None) -> tuple[int, str, str]:
    extra = env()
    # never the machine's own syslog from a test
    extra["AUTHN_SYSLOG"] = str(syslog.path) if syslog is not None else "/nonexistent/authn-test-log"
    got = subprocess.run(
        [*AUTHN, "lockout", *map(str, args)], capture_output=True, env=extra, timeout=60, check=False
    )
    return got.returncode, got.stdout.decode(), got.stderr.decode()


def lock(policy: Policy, store: SqliteStore | RedisStore, client: str, user: str) -> Lockout:
    lockout = Lockout(policy, store)
    for _ in range(policy.threshold):
        reservation = lockout.reserve(client, user)
        lockout.settle(reservation, "failed")
    assert lockout.check(client, user).locked
    return lockout


@pytest.mark.parametrize("kind", ["sqlite", "redis"])
def test_unlock_reaches_a_process_that_remembers_the_lock(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """Two processes' worth of Lockout objects over one store: the CLI's unlock deletes the
    counters and the one that remembers the lock lets the user in at its next request."""
    if kind == "redis":
        server: RedisServer = request.getfixturevalue("redis_server")
        store: SqliteStore | RedisStore = RedisStore(server.url)
        where = ["--redis", server.url]
    else:
        store = SqliteStore(str(tmp_path))
        where = ["--dir", str(tmp_path)]
    policy = Policy(threshold=3, client_threshold=100, window=600)
    lockout = lock(policy, store, "192.0.2.1", "alice")
    lock(policy, store, "192.0.2.2", "bob")
    syslog = Syslog(tmp_path / "log.sock")
    try:
        code, out, _ = cli(*where, "list", "--threshold", "3")
        assert code == 0
        assert re.search(r"^LOCKED +user=alice address=192\.0\.2\.1 failures=3 resets_in=\d+s$", out, re.M), (
            out
        )
        assert re.search(r"^counting address=192\.0\.2\.1 failures=3", out, re.M), out
        code, _, err = cli(*where, "unlock", "alice", syslog=syslog)
        assert code == 0, err
        assert "unlocked user alice in " in err and "1 counter(s) cleared" in err, err
        assert "unlocked user alice in " in syslog.line()
    finally:
        syslog.close()
    time.sleep(0.6 if kind == "redis" else 0)  # Redis: the generation is polled twice a second
    assert not lockout.check("192.0.2.1", "alice").locked
    assert lockout.check("192.0.2.2", "bob").locked  # only alice was unlocked
    code, _, err = cli(*where, "unlock", "--address", "192.0.2.2")
    assert code == 0 and "2 counter(s) cleared" in err, err  # the address and bob's pair
    time.sleep(0.6 if kind == "redis" else 0)
    assert not lockout.check("192.0.2.2", "bob").locked
    code, _, err = cli(*where, "unlock", "carol")
    assert code == 0 and "nothing to unlock" in err, err


def test_bad_command_lines_get_one_line_and_exit_2(tmp_path: Path) -> None:
    code, _, err = cli("--dir", tmp_path, "unlock")
    assert code == 2 and "name a USER" in err, err
    code, _, err = cli("--dir", tmp_path, "list")
    assert code == 1 and "no lockout.sqlite3 there" in err, err
    assert authn("lockout").returncode == 2


def _ask(conn: http.client.HTTPConnection) -> int:
    """One request with alice's right password on a kept-alive connection."""
    conn.request("GET", "/private/", headers={"Authorization": GOOD})
    reply = conn.getresponse()
    reply.read()
    return reply.status


def _pids(lines: list[str]) -> set[str]:
    return {m.group(1) for line in lines if (m := re.search(r"\[pid (\d+)", line))}


@pytest.mark.apache
@pytest.mark.parametrize("where", ["dir", "default"])
def test_unlock_lets_the_user_in_at_once_from_every_prefork_child(
    start_apache: StartApache, scratch: Path, where: str
) -> None:
    users = scratch / "users"
    write_users(users, USERS)
    options = "PythonOption authn.lockout.threshold 3\nPythonOption authn.lockout.window 600"
    if where == "dir":
        folder = scratch / "lockout"
        folder.mkdir()
        shutil.chown(folder, *run_user())
        options += f'\nPythonOption authn.lockout.dir "{folder}"'
    apache = start_apache(site_body(scratch / "www", users, options), server_conf=CHILDREN)
    assert apache.proc is not None
    store = ["--dir", str(folder)] if where == "dir" else ["--apache-pid", str(apache.proc.pid)]
    for _ in range(3):
        assert get(apache.port, authorization=WRONG).status == 401
    # Four connections held open at once: a prefork child serves one connection at a time,
    # so these are four children, and each asks again on its own connection after the unlock.
    conns = [http.client.HTTPConnection("127.0.0.1", apache.port, timeout=30) for _ in range(4)]
    try:
        assert [_ask(conn) for conn in conns] == [429] * 4
        knew = _pids([ln for ln in apache.error_log().splitlines() if 'reason="locked out"' in ln])
        assert len(knew) == 4, apache.error_log()  # four children remember the lock
        code, out, err = cli(*store, "list", "--threshold", "3")
        assert code == 0 and "LOCKED   user=alice address=127.0.0.1 failures=3" in out, (out, err)
        code, _, err = cli(*store, "unlock", "alice", "127.0.0.1")
        assert code == 0, err
        unlocked = time.monotonic()
        assert [_ask(conn) for conn in conns] == [200] * 4  # the same four children, at once
        elapsed = time.monotonic() - unlocked
    finally:
        for conn in conns:
            conn.close()
    print(f"unlock seen by the 4 children that remembered the lock within {elapsed:.3f} s")
    assert elapsed < 10  # generous on a busy machine; the point is: no wait for the window
    cleared = [ln for ln in apache.error_log().splitlines() if "lockout cleared by admin for" in ln]
    assert _pids(cleared) == knew, apache.error_log()[-3000:]  # each child says so, once
