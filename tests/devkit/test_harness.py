"""The test harness itself: an Apache is ready only when it is ours that answers, writes only
in its own folder, and leaves no process behind."""

from __future__ import annotations

import os
import pwd
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from devkit.apache import Apache, PortInUse, apache_available, free_port, run_user
from devkit.http import basic, request
from devkit.processes import kill_all, processes_mentioning
from tests.apache.test_environment import protected_site
from tests.conftest import need


@pytest.fixture
def listening_port() -> Iterator[int]:
    """A port another program listens on (connections are accepted by the kernel)."""
    with socket.socket() as other:
        other.bind(("127.0.0.1", free_port()))
        other.listen(16)
        yield other.getsockname()[1]


@pytest.fixture
def work(scratch: Path) -> Iterator[Path]:
    """A folder for one Apache; the test fails if any process started from it is left."""
    need(apache_available())
    yield scratch
    left = processes_mentioning(scratch)
    kill_all([pid for pid, _ in left])
    assert not left, f"processes left behind: {left}"


def test_another_program_on_the_port_is_not_taken_for_our_apache(work: Path, listening_port: int) -> None:
    """Apache dies with "Address already in use" while the other program accepts
    connections: the readiness poll must not take that for a running Apache."""
    server = Apache(work / "apache", "", port=listening_port)
    with pytest.raises(PortInUse) as caught:
        server.start()
    assert caught.value.port == listening_port
    assert server.proc is None


def test_temp_files_and_cache_stay_in_the_apache_folder(work: Path) -> None:
    """The lockout's default folder follows TMPDIR, the credential cache a server-level
    authn.cache.dir: neither lands in /tmp or /var/cache/authn."""
    server = Apache(work / "apache", protected_site(work))
    server.start()
    try:
        assert request(server.port, "/", auth=basic("alice", "wrong")).status == 401
        assert request(server.port, "/", auth=basic("alice", "pw")).status == 200
        assert server.proc is not None
        parent = server.proc.pid
    finally:
        server.stop()
    uid = pwd.getpwnam(run_user()[0]).pw_uid
    databases = os.listdir(work / "apache" / "tmp" / f"authn-lockout-{uid}")
    assert f"apache-{parent}.sqlite3" in databases
    assert not os.path.exists(f"/tmp/authn-lockout-{uid}/apache-{parent}.sqlite3")
    assert (work / "apache" / "cache" / "key").exists()
    assert "/var/cache/authn" not in server.error_log()


def test_stop_leaves_no_child_whose_parent_died(work: Path) -> None:
    server = Apache(work / "apache", "", mpm="prefork")
    server.start()
    assert server.proc is not None
    parent = server.proc.pid
    deadline = time.monotonic() + 10
    while len(processes_mentioning(work)) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    children = [pid for pid, _ in processes_mentioning(work) if pid != parent]
    assert children
    os.kill(parent, signal.SIGKILL)  # a parent that crashed: nobody stops its children
    server.proc.wait()
    server.stop()
    assert [pid for pid in children if os.path.exists(f"/proc/{pid}")] == []
