"""`make demo` (devkit/demo.py) when things go wrong: a port another program holds, a demo
killed outright, Ctrl-C. Whatever happens, no Apache is left running and no scratch folder is
left behind."""

from __future__ import annotations

import http.server
import os
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from devkit.apache import REPO, apache_available, free_port
from devkit.http import basic, request
from devkit.processes import kill_all, processes_mentioning
from tests.conftest import need

READY = "Press Ctrl-C"


class Demo:
    """devkit/demo.py running with its temp folder (and so its scratch folder) in ``tmp``."""

    def __init__(self, tmp: Path, port: str) -> None:
        env = {**os.environ, "AUTHN_DEMO_PORT": port, "TMPDIR": str(tmp)}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "devkit.demo"],
            cwd=REPO,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        self.output = b""

    @property
    def text(self) -> str:
        return self.output.decode(errors="replace")

    def read_until(self, marker: str | None, timeout: float = 60) -> str:
        """Output until ``marker`` appears or the demo exits (None: until it exits); raises
        TimeoutExpired after ``timeout``."""
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + timeout
        while marker is None or marker not in self.text:
            if time.monotonic() > deadline:
                raise subprocess.TimeoutExpired(self.proc.args, timeout, self.output)
            ready, _, _ = select.select([fd], [], [], 0.2)
            if ready:
                chunk = os.read(fd, 65536)
                if not chunk:  # the demo ended
                    self.proc.wait(max(1.0, deadline - time.monotonic()))
                    break
                self.output += chunk
        return self.text

    def stop(self) -> None:
        """Ctrl-C, as a user would; SIGKILL if it does not end."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.read_until(None, timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        assert self.proc.stdout is not None
        self.proc.stdout.close()


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[Callable[[str], Demo]]:
    """Factory: ``demo(port)`` starts the demo; afterwards, each is stopped, and the test
    fails if any process of theirs is left (they are killed then)."""
    need(apache_available())
    started: list[Demo] = []

    def start(port: str) -> Demo:
        started.append(Demo(tmp_path, port))
        return started[-1]

    yield start
    for one in started:
        one.stop()
    left = processes_mentioning(tmp_path)
    kill_all([pid for pid, _ in left])
    assert not left, f"processes left by the demo: {left}"


class _OtherServer(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def taken_port() -> Iterator[int]:
    """A port on which another HTTP server answers 200 to everything."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), _OtherServer)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def _lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


def test_a_taken_port_is_reported_in_one_line(
    demo: Callable[[str], Demo], taken_port: int, tmp_path: Path
) -> None:
    one = demo(str(taken_port))
    out = one.read_until(READY)
    assert "Apache is serving" not in out
    assert one.proc.returncode == 1, out
    assert _lines(out) == [
        f"authn demo: port {taken_port} is in use by another program; stop it or choose another "
        "port: AUTHN_DEMO_PORT=8080 make demo"
    ]
    assert os.listdir(tmp_path) == []  # no scratch folder made


@pytest.mark.parametrize("value", ["http", "0", "70000", "-1"])
def test_a_bad_port_value_is_reported_in_one_line(demo: Callable[[str], Demo], value: str) -> None:
    one = demo(value)
    out = one.read_until(None)
    assert one.proc.returncode == 1
    assert _lines(out) == [f"authn demo: AUTHN_DEMO_PORT={value!r} is not a port number (1-65535)"]


def test_ctrl_c_stops_apache_and_removes_the_scratch_folder(
    demo: Callable[[str], Demo], tmp_path: Path
) -> None:
    port = free_port()
    one = demo(str(port))
    assert READY in one.read_until(READY), one.text
    assert request(port, "/static/", auth=basic("alice", "wonderland")).status == 200
    assert [name for name in os.listdir(tmp_path) if name.startswith("authn-demo-")]
    assert processes_mentioning(tmp_path), "the demo's Apache is not found"
    one.proc.send_signal(signal.SIGINT)
    out = one.read_until(None)
    assert one.proc.returncode == 0 and "Apache stopped" in out, out
    assert os.listdir(tmp_path) == []
    assert processes_mentioning(tmp_path) == []


def test_a_killed_demo_takes_its_apache_along(demo: Callable[[str], Demo], tmp_path: Path) -> None:
    """Apache runs in its own session (a terminal's Ctrl-C reaches the demo first); killed
    by SIGKILL, the demo cannot stop it, the kernel must."""
    port = free_port()
    one = demo(str(port))
    assert READY in one.read_until(READY), one.text
    apache = processes_mentioning(tmp_path)
    assert apache, "the demo's Apache is not found"
    one.proc.kill()
    one.proc.wait()
    deadline = time.monotonic() + 15
    while processes_mentioning(tmp_path) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert processes_mentioning(tmp_path) == []
