"""The lockout through a real Apache with mod_python, the shipped conf snippets and real stores."""

from __future__ import annotations

import http.client
import re
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from devkit.apache import Apache
from devkit.redis import RedisServer
from devkit.site import (
    USERS,
    basic,
    crashes,
    denial_lines,
    get,
    metric,
    site_body,
    status_page,
    write_users,
)
from tests.adversarial.test_apache_adversarial import raw_request

pytestmark = pytest.mark.apache

StartApache = Callable[..., Apache]
ONE_CHILD = "StartServers 1\nMinSpareServers 1\nMaxSpareServers 1\nServerLimit 1\nMaxRequestWorkers 1"
GOOD = basic("alice", USERS["alice"])
WRONG = basic("alice", "guess")


def start_site(start_apache: StartApache, scratch: Path, options: str, server_conf: str = "") -> Apache:
    scratch.mkdir(mode=0o755, exist_ok=True)
    users = scratch / "users"
    write_users(users, USERS)
    body = site_body(scratch / "www", users, options)
    return start_apache(body, server_conf=server_conf)


def test_lockout_refuses_without_checking_the_password(start_apache: StartApache, scratch: Path) -> None:
    apache = start_site(
        start_apache,
        scratch,
        "PythonOption authn.lockout.threshold 3\nPythonOption authn.lockout.window 3",
        ONE_CHILD,  # one child: its counters on the status page cover every request
    )
    assert get(apache.port, authorization=GOOD).status == 200
    for _ in range(3):
        reply = get(apache.port, authorization=WRONG)
        assert reply.status == 401 and "basic realm" in reply.headers["www-authenticate"].lower()
    before = status_page(apache.port, prometheus=True)
    offset = apache.error_log_size()
    for _ in range(5):  # the right password, from the locked address
        reply = get(apache.port, authorization=GOOD)
        assert reply.status == 429
        assert 1 <= int(reply.headers["retry-after"]) <= 3
    after = status_page(apache.port, prometheus=True)
    # No password was checked for the five: only the status request itself was a success.
    assert metric(after, "authn_lockout_refused_total") - metric(before, "authn_lockout_refused_total") == 5
    assert (
        metric(after, "authn_lockout_successes_total") - metric(before, "authn_lockout_successes_total") == 1
    )
    assert metric(after, "authn_lockout_failures_total") == metric(before, "authn_lockout_failures_total")
    # Bytes Apache ignores after the base64 text (here not even UTF-8) change nothing.
    status, _ = raw_request(apache.port, f"Authorization: {GOOD}".encode() + b"=\xe9\r\n")
    assert status == 429
    lines = denial_lines(apache.error_log_since(offset))
    # One line per lock and child (the first refusal), not one per refused request: a
    # flood must not flood the log (each line also costs CPU).
    assert len(lines) == 1
    assert all('reason="locked out"' in line and 'user="alice"' in line for line in lines)
    # Another address is not affected, for the same user.
    assert get(apache.port, authorization=GOOD, source="127.0.0.2").status == 200
    # The status page lists the lockout.
    assert re.search(r'LOCKED\s+user="alice" client=127\.0\.0\.1 failures=3', status_page(apache.port))
    # The window passes: access returns, and a success clears the pair counter.
    time.sleep(3.2)
    assert get(apache.port, authorization=GOOD).status == 200
    assert 'user="alice" client=127.0.0.1' not in status_page(apache.port)
    assert not crashes(apache.error_log())


def test_counters_are_shared_by_prefork_children(start_apache: StartApache, scratch: Path) -> None:
    access = scratch / "pids.log"
    apache = start_site(
        start_apache,
        scratch,
        "PythonOption authn.lockout.threshold 8",
        "StartServers 4\nMinSpareServers 4\nMaxSpareServers 8\n"
        f'LogFormat "%P %>s" pidstatus\nCustomLog "{access}" pidstatus',
    )
    # Four keep-alive connections, each held by its own prefork child while open: the eight
    # failures are spread over four children for sure (new connections often all land on
    # the same idle child).
    conns = [http.client.HTTPConnection("127.0.0.1", apache.port, timeout=30) for _ in range(4)]
    try:
        for i in range(8):
            conn = conns[i % 4]
            conn.request("GET", "/private/", headers={"Authorization": WRONG})
            response = conn.getresponse()
            response.read()
            assert response.status == 401
    finally:
        for conn in conns:
            conn.close()
    assert get(apache.port, authorization=WRONG).status == 429
    entries = [line.split() for line in access.read_text().splitlines()]
    served_401 = {pid for pid, status in entries if status == "401"}
    assert len(served_401) >= 2, f"all failures landed on one child: {entries}"


def test_redis_store_shared_by_two_apache_servers(
    start_apache: StartApache, scratch: Path, redis_server: RedisServer
) -> None:
    options = (
        "PythonOption authn.lockout.threshold 4\nPythonOption authn.lockout.store redis\n"
        f"PythonOption authn.lockout.redis {redis_server.url}"
    )
    first = start_site(start_apache, scratch / "a", options)
    second = start_site(start_apache, scratch / "b", options)
    for server in (first, second, first, second):  # two machines behind one balancer
        assert get(server.port, authorization=WRONG).status == 401
    for server in (first, second):
        reply = get(server.port, authorization=GOOD)
        assert reply.status == 429 and int(reply.headers["retry-after"]) > 0
    assert "redis:127.0.0.1" in status_page(second.port)


def test_store_down_fails_open_with_a_log_line_and_recovers(
    start_apache: StartApache, scratch: Path, redis_server: RedisServer
) -> None:
    apache = start_site(
        start_apache,
        scratch,
        "PythonOption authn.lockout.threshold 2\nPythonOption authn.lockout.store redis\n"
        f"PythonOption authn.lockout.redis {redis_server.url}",
        ONE_CHILD,
    )
    redis_server.stop()
    for _ in range(4):  # no lockout while the store is down, but passwords are still checked
        assert get(apache.port, authorization=WRONG).status == 401
    assert get(apache.port, authorization=GOOD).status == 200
    log = apache.error_log()
    assert log.count("lockout store down, failing open") == 1, log
    assert "authn_lockout_store_up" in status_page(apache.port, prometheus=True)
    redis_server.start()  # same port, empty
    time.sleep(5.5)  # the store is left alone for RETRY_SECONDS after a fault
    for _ in range(2):
        assert get(apache.port, authorization=WRONG).status == 401
    assert get(apache.port, authorization=GOOD).status == 429
    assert "answers again" in apache.error_log()


def test_sqlite_folder_unwritable_fails_open(start_apache: StartApache, scratch: Path) -> None:
    blocker = scratch / "blocker"
    blocker.write_text("a file where the folder should be")
    blocker.chmod(0o644)
    apache = start_site(
        start_apache,
        scratch,
        f"PythonOption authn.lockout.threshold 1\nPythonOption authn.lockout.dir {blocker}/sub",
    )
    for _ in range(3):
        assert get(apache.port, authorization=WRONG).status == 401
    assert get(apache.port, authorization=GOOD).status == 200
    assert "lockout store down, failing open" in apache.error_log()
    assert "authn.lockout.dir" in apache.error_log()


def test_lockout_off_and_bad_option(start_apache: StartApache, scratch: Path) -> None:
    apache = start_site(
        start_apache,
        scratch,
        "PythonOption authn.lockout off\nPythonOption authn.lockout.threshold 1",
    )
    for _ in range(3):
        assert get(apache.port, authorization=WRONG).status == 401
    assert get(apache.port, authorization=GOOD).status == 200
    apache.stop()
    apache = start_site(start_apache, scratch / "bad", "PythonOption authn.lockout.window soon")
    assert get(apache.port, authorization=GOOD).status == 500
    assert "authn.lockout.window: bad value 'soon'" in apache.error_log()
