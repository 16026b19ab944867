"""Hostile and heavy traffic through a real Apache: bad headers, a password file replaced
under load, memory over many requests. Every answer is checked; the error log must show no
crashed child."""

from __future__ import annotations

import base64
import http.client
import os
import re
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from authn import hashes
from devkit.apache import Apache
from devkit.site import USERS, basic, crashes, get, site_body, write_users

pytestmark = pytest.mark.apache

StartApache = Callable[..., Apache]
ONE_CHILD = "StartServers 1\nMinSpareServers 1\nMaxSpareServers 1\nServerLimit 1\nMaxRequestWorkers 1"


def raw_request(port: int, header_lines: bytes) -> tuple[int, bytes]:
    """Send bytes exactly as given (no client library cleans them up); status and head."""
    with socket.create_connection(("127.0.0.1", port), 10) as sock:
        sock.sendall(
            b"GET /private/ HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n" + header_lines + b"\r\n"
        )
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head = data.split(b"\r\n\r\n", 1)[0]
    match = re.match(rb"HTTP/1\.[01] (\d{3})", head)
    assert match, data[:200]
    return int(match.group(1)), head


def b64(raw: bytes) -> bytes:
    return base64.b64encode(raw)


BAD_HEADERS = {
    "no header": b"",
    "empty": b"Authorization: \r\n",
    "bearer": b"Authorization: Bearer abc.def.ghi\r\n",
    "scheme only": b"Authorization: Basic\r\n",
    "invalid base64": b"Authorization: Basic !!!not-base64!!!\r\n",
    "no colon": b"Authorization: Basic " + b64(b"alice") + b"\r\n",
    "empty user": b"Authorization: Basic " + b64(b":wonderland") + b"\r\n",
    "colon in user": b"Authorization: Basic " + b64(b"ali:ce:wonderland") + b"\r\n",
    "NUL in decoded": b"Authorization: Basic " + b64(b"alice\x00x:wonderland") + b"\r\n",
    "NUL in header": b"Authorization: Basic \x00" + b64(b"alice:x") + b"\r\n",
    "bare CR": b"Authorization: Basic " + b64(b"alice:x") + b"\rX: y\r\n",
    "LF split": b"Authorization: Basic " + b64(b"alice:x") + b"\nX-Other: y\r\n",
    "CRLF in decoded": b"Authorization: Basic " + b64(b"ali\r\nce:x\r\n") + b"\r\n",
    "8 KB user": b"Authorization: Basic " + b64(b"u" * 6000 + b":x") + b"\r\n",
    "too long header": b"Authorization: Basic " + b64(b"u" * 9000 + b":x") + b"\r\n",
    "non-UTF-8": b"Authorization: Basic " + b64(b"\xff\xfe\xc3(:\xa0\xa1") + b"\r\n",
    "UTF-8 user": b"Authorization: Basic " + b64("zoë:ünïcode".encode()) + b"\r\n",
    "latin-1 header": b"Authorization: Basic \xe9\xe8\r\n",
    "two headers": b"Authorization: Basic " + b64(b"a:b") + b"\r\nAuthorization: Basic x\r\n",
}


def test_bad_authorization_headers_get_400_or_a_401_challenge(
    start_apache: StartApache, scratch: Path
) -> None:
    users = scratch / "users"
    write_users(users, USERS)
    apache = start_apache(site_body(scratch / "www", users, "", status=False))
    for _ in range(3):  # again and again, so that lockout counters are involved too
        for name, header in BAD_HEADERS.items():
            status, head = raw_request(apache.port, header)
            assert status in (400, 401, 429), f"{name}: {status}"
            if status == 401:
                assert b'www-authenticate: basic realm="private"' in head.lower(), name
    log = apache.error_log()
    assert not crashes(log), crashes(log)
    assert "Traceback" not in log, log
    # The server still answers well.
    assert get(apache.port, authorization=basic("bob", USERS["bob"])).status == 200


def test_a_path_that_is_not_utf8_gets_401_and_its_denial_line(
    start_apache: StartApache, scratch: Path
) -> None:
    """mod_python raises on ``req.uri`` for a %-encoded non-UTF-8 byte: the answer must still
    be 401 (then 429 once locked out) with the denial line fail2ban reads, as native answers."""
    users = scratch / "users"
    write_users(users, USERS)
    apache = start_apache(
        site_body(scratch / "www", users, "PythonOption authn.lockout.threshold 3", status=False)
    )
    statuses = [get(apache.port, "/private/%ff", basic("bob", "wrong")).status for _ in range(4)]
    assert statuses == [401, 401, 401, 429]
    assert get(apache.port, "/private/%fe%41", basic("nobody", "x")).status == 401
    assert get(apache.port, "/private/%ff", basic("alice", USERS["alice"])).status == 404
    log = apache.error_log()
    assert (
        log.count(r'user="bob" client=127.0.0.1 source=file reason="bad password" uri="/private/\\xff"') == 3
    )
    # Apache's error log doubles our backslash: the byte 0xff reads \\xff there
    assert r'reason="locked out" uri="/private/\\xff"' in log
    assert 'user="nobody"' in log and r'uri="/private/\\xfeA"' in log
    assert "Traceback" not in log and not crashes(log)


def test_password_file_replaced_under_load_answers_for_old_or_new(
    start_apache: StartApache, scratch: Path
) -> None:
    """alice's password is "old" in one file and "new" in the other; "stable" is the same
    in both. The file is swapped with os.replace about 100 times a second while 8 clients
    send requests: stable always gets 200, a wrong password always 401, alice 200 or 401,
    never anything else."""
    users = scratch / "users"
    stable = hashes.make_hash(b"same", "bcrypt", 4)
    versions = []
    for password in (b"old", b"new"):
        text = f"stable:{stable}\nalice:{hashes.make_hash(password, 'bcrypt', 4)}\n"
        versions.append(text + "".join(f"user{i}:{stable}\n" for i in range(200)))
    users.write_text(versions[0])
    users.chmod(0o644)
    apache = start_apache(
        site_body(scratch / "www", users, "PythonOption authn.lockout off", status=False),
        server_conf="StartServers 4\nMinSpareServers 4\nMaxSpareServers 8",
    )
    stop = threading.Event()
    swaps = 0

    def swapper() -> None:
        nonlocal swaps
        tmp = scratch / "users.tmp"
        while not stop.is_set():
            tmp.write_text(versions[swaps % 2])
            tmp.chmod(0o644)
            os.replace(tmp, users)
            swaps += 1
            time.sleep(0.01)

    seen: Counter[tuple[str, int]] = Counter()
    lock = threading.Lock()
    cases = [("stable", "same", {200}), ("alice", "old", {200, 401}),
             ("alice", "new", {200, 401}), ("alice", "neither", {401}),
             ("stable", "wrong", {401})]  # fmt: skip
    bad: list[str] = []

    def client(n: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", apache.port, timeout=30)
        i = n
        while not stop.is_set():
            user, password, allowed = cases[i % len(cases)]
            i += 1
            conn.request("GET", "/private/", headers={"Authorization": basic(user, password)})
            resp = conn.getresponse()
            resp.read()
            with lock:
                seen[(f"{user}:{password}", resp.status)] += 1
                if resp.status not in allowed:
                    bad.append(f"{user}:{password} -> {resp.status}")
        conn.close()

    threads = [threading.Thread(target=swapper)] + [
        threading.Thread(target=client, args=(n,)) for n in range(8)
    ]
    for t in threads:
        t.start()
    time.sleep(4)
    stop.set()
    for t in threads:
        t.join(30)
    assert not bad, bad[:20]
    assert swaps > 100
    # Both files were seen by the server: each of alice's passwords was granted sometimes.
    assert seen[("alice:old", 200)] and seen[("alice:new", 200)], seen
    assert not crashes(apache.error_log())


def _child_rss_kb(apache: Apache) -> tuple[int, int]:
    assert apache.proc is not None
    children = Path(f"/proc/{apache.proc.pid}/task/{apache.proc.pid}/children").read_text().split()
    assert len(children) == 1, children
    status = Path(f"/proc/{children[0]}/status").read_text()
    match = re.search(r"VmRSS:\s+(\d+) kB", status)
    assert match
    return int(children[0]), int(match.group(1))


def test_memory_per_child_is_flat_over_20k_requests(start_apache: StartApache, scratch: Path) -> None:
    users = scratch / "users"
    users.write_text("".join(f"user{i}:{hashes.make_hash(b'pw', 'apr1')}\n" for i in range(50)))
    users.chmod(0o644)
    apache = start_apache(
        site_body(
            scratch / "www",
            users,
            "PythonOption authn.lockout.threshold 1000000\n"
            "PythonOption authn.lockout.client_threshold 1000000",
            status=False,
        ),
        server_conf=ONE_CHILD + "\nMaxConnectionsPerChild 0\nMaxKeepAliveRequests 0",
    )
    conn = http.client.HTTPConnection("127.0.0.1", apache.port, timeout=30)
    statuses: Counter[int] = Counter()

    def run(n: int) -> None:
        for i in range(n):
            kind = i % 4  # granted, wrong password, unknown user, a new user name every time
            user = f"user{i % 50}" if kind < 2 else f"nobody{i if kind == 3 else 0}"
            password = "pw" if kind == 0 else "wrong"
            conn.request("GET", "/private/", headers={"Authorization": basic(user, password)})
            resp = conn.getresponse()
            resp.read()
            statuses[resp.status] += 1

    run(4000)  # warm up: caches, sqlite pages, the interpreter's free lists
    pid, before = _child_rss_kb(apache)
    run(16000)
    same_pid, after = _child_rss_kb(apache)
    conn.close()
    assert same_pid == pid
    assert statuses == {200: 5000, 401: 15000}, statuses
    assert after - before < 2048, f"child RSS grew from {before} kB to {after} kB"
    assert not crashes(apache.error_log())
