"""The one HTTP client of the tests, the benchmark and the demo: raw sockets, so it sends
exactly the bytes asked for, including headers no well-behaved client library would send
(NUL, CR, LF, 8 KB names, non-UTF-8), from any source address (``127.x.y.z`` on Linux: a
test can be many clients)."""

from __future__ import annotations

import base64
import socket
from dataclasses import dataclass, field


@dataclass
class Response:
    status: int
    headers: dict[str, str]  #: lower-case name -> value (the last of a repeated header)
    body: bytes
    all_headers: list[tuple[str, str]] = field(default_factory=list)  #: every header, in order

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())

    def set_cookies(self) -> dict[str, str]:
        """The ``Set-Cookie`` headers by cookie name: name -> the whole header value."""
        found = {}
        for name, value in self.all_headers:
            if name.lower() == "set-cookie":
                found[value.split("=", 1)[0].strip()] = value
        return found

    def cookie(self, name: str) -> str | None:
        """The value a ``Set-Cookie`` gives cookie ``name`` (None when not set)."""
        header = self.set_cookies().get(name)
        return None if header is None else header.split("=", 1)[1].split(";", 1)[0]


def basic(user: bytes | str, password: bytes | str) -> bytes:
    """The value of a Basic Authorization header for raw user and password bytes."""
    u = user.encode() if isinstance(user, str) else user
    p = password.encode() if isinstance(password, str) else password
    return b"Basic " + base64.b64encode(u + b":" + p)


def request(
    port: int,
    path: str,
    *,
    method: str = "GET",
    auth: bytes | str | None = None,
    headers: dict[str, bytes | str] | None = None,
    timeout: float = 30.0,
    source: str | None = None,
    host: str = "127.0.0.1",
    body: bytes | None = None,
) -> Response:
    """One request on a new connection (so each may land on any Apache child); ``auth`` is
    the whole Authorization value (see :func:`basic`), ``source`` the address to send from."""
    lines = [f"{method} {path} HTTP/1.1".encode(), f"Host: {host}".encode(), b"Connection: close"]
    if auth is not None:
        lines.append(b"Authorization: " + (auth.encode("latin-1") if isinstance(auth, str) else auth))
    for name, value in (headers or {}).items():
        lines.append(name.encode() + b": " + (value.encode() if isinstance(value, str) else value))
    if body is not None:
        lines.append(f"Content-Length: {len(body)}".encode())
    raw = b"\r\n".join(lines) + b"\r\n\r\n" + (body or b"")
    address = (source, 0) if source is not None else None
    with socket.create_connection((host, port), timeout, source_address=address) as sock:
        sock.sendall(raw)
        chunks = []
        while True:
            data = sock.recv(65536)
            if not data:
                break
            chunks.append(data)
    return parse_response(b"".join(chunks), method)


def parse_response(data: bytes, method: str = "GET") -> Response:
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    status = int(status_line.split()[1])
    headers: dict[str, str] = {}
    everything: list[tuple[str, str]] = []
    for line in header_lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
        everything.append((name.strip(), value.strip()))
    if headers.get("transfer-encoding", "").lower() == "chunked":
        body = _dechunk(body)
    return Response(status, headers, body, everything)


def _dechunk(body: bytes) -> bytes:
    out = b""
    while body:
        size_line, _, rest = body.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            break
        out += rest[:size]
        body = rest[size + 2 :]
    return out
