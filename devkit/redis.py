"""A throwaway redis-server on a free port of the loopback, that can be stopped and started
again on the same port: the store of tests that go down and come back. No persistence, unless
``persistent`` (an append-only file, as a production Redis that keeps sessions should have)."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import time
from pathlib import Path

from devkit.apache import free_port
from devkit.processes import DIE_WITH_PARENT


class RedisServer:
    """A throwaway redis-server (no persistence) that can be stopped and started again on
    the same port, to test a store that goes down and comes back."""

    def __init__(self, binary: str, workdir: Path, *, persistent: bool = False) -> None:
        self.binary = binary
        self.persistent = persistent  #: an append-only file in workdir: data survive a restart
        self.workdir = workdir
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [*DIE_WITH_PARENT, self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "yes" if self.persistent else "no", "--dir", str(self.workdir),
             "--protected-mode", "no"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self.proc.returncode}")
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), 0.2) as s,
            ):
                s.sendall(b"PING\r\n")
                if s.recv(16).startswith(b"+PONG"):
                    return
            time.sleep(0.05)
        raise RuntimeError("redis-server did not answer PING")

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            proc.wait(10)
