"""A throwaway HAProxy load balancer in front of several Apache nodes (Debian's haproxy).

* Round robin over the nodes, HTTP health checks every 200 ms (a node is out after two
  failed checks and back after two good ones; a busy node has 2 s to answer one), and a
  request that finds a node dead (refused connection, connection closed without an answer)
  is sent again to another node (``retry-on``, ``option redispatch``): a killed node costs
  the clients no error.
* It adds the client's address to ``X-Forwarded-For`` and connects to the nodes from its own
  address (``source``), the only address the nodes' mod_remoteip trusts
  (:func:`remoteip_conf`).
* It runs in the foreground (``-db``), dies with the process that started it, and answers its
  state on an admin socket in its folder (:meth:`Balancer.servers`).
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from devkit.apache import free_port
from devkit.processes import DIE_WITH_PARENT, stop_group

HAPROXY_BIN = shutil.which("haproxy", path="/usr/sbin:/usr/bin:/sbin") or "/usr/sbin/haproxy"


def haproxy_available() -> str | None:
    """None when haproxy is installed; else what is missing."""
    return None if Path(HAPROXY_BIN).exists() else "haproxy is not installed (apt-get install haproxy)"


def remoteip_conf(balancer_address: str) -> str:
    """The lines a node needs (mod_remoteip loaded) to see the real client address behind the
    balancer, trusting the header from the balancer's address only."""
    return f"RemoteIPHeader X-Forwarded-For\nRemoteIPInternalProxy {balancer_address}\n"


class Balancer:
    """HAProxy on ``127.0.0.1:<port>`` in front of ``nodes`` (name -> "address:port"),
    connecting to them from ``source``; ``health`` is the path of the nodes' health check."""

    def __init__(self, workdir: Path, nodes: dict[str, str], *, source: str, health: str) -> None:
        self.workdir = workdir
        self.nodes = nodes
        self.source = source
        self.health = health
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def admin_socket(self) -> Path:
        return self.workdir / "admin.sock"

    def config_text(self) -> str:
        servers = "\n".join(f"    server {name} {where}" for name, where in self.nodes.items())
        return f"""global
    maxconn 2000
    stats socket {self.admin_socket} mode 600 level admin

defaults
    mode http
    timeout connect 1s
    timeout client 30s
    timeout server 30s
    timeout http-request 10s
    timeout check 2s
    retries 3
    option redispatch 1
    retry-on conn-failure empty-response
    option forwardfor

frontend web
    bind 127.0.0.1:{self.port}
    default_backend nodes

backend nodes
    balance roundrobin
    source {self.source}
    option httpchk GET {self.health}
    default-server check inter 200ms fall 2 rise 2
{servers}
"""

    def start(self, timeout: float = 15.0) -> Balancer:
        """Start HAProxy and wait until every node is up behind it; raises RuntimeError."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        conf = self.workdir / "haproxy.cfg"
        conf.write_text(self.config_text())
        with open(self.workdir / "haproxy.log", "ab") as out:
            self.proc = subprocess.Popen(
                [*DIE_WITH_PARENT, HAPROXY_BIN, "-db", "-f", str(conf)],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            self.wait_until(lambda states: all(s == "UP" for s in states.values()), timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def servers(self) -> dict[str, str]:
        """Each node's state as HAProxy sees it now ("UP", "DOWN", "UP 1/2", ...)."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(2)
            sock.connect(str(self.admin_socket))
            sock.sendall(b"show stat\n")
            data = b""
            while chunk := sock.recv(65536):
                data += chunk
        states = {}
        for row in data.decode().splitlines():
            fields = row.split(",")
            if len(fields) > 17 and fields[0] == "nodes" and fields[1] in self.nodes:
                states[fields[1]] = fields[17]
        return states

    def wait_until(self, wanted: Callable[[dict[str, str]], bool], timeout: float) -> dict[str, str]:
        """Poll :meth:`servers` until ``wanted(states)`` is true; raises RuntimeError."""
        deadline = time.monotonic() + timeout
        states: dict[str, str] = {}
        while time.monotonic() < deadline:
            if self.proc is None or self.proc.poll() is not None:
                raise RuntimeError(f"haproxy exited:\n{self.log()}")
            with contextlib.suppress(OSError):
                states = self.servers()
                if states and wanted(states):
                    return states
            time.sleep(0.05)
        raise RuntimeError(f"haproxy: nodes not as wanted after {timeout} s: {states}\n{self.log()}")

    def log(self) -> str:
        try:
            return (self.workdir / "haproxy.log").read_text(errors="replace")
        except OSError:
            return ""

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None:
            stop_group(proc)
