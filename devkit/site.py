"""A protected site builder: a folder, a password file, the shipped snippets, a status page,
and the helpers that read its answers and its error log."""

from __future__ import annotations

import base64
import re
from pathlib import Path

from authn import hashes
from devkit.http import Response, request

USERS = {"alice": b"wonderland", "bob": b"builder", "admin": b"status-secret"}


def write_users(path: Path, users: dict[str, bytes], cost: int = 5) -> None:
    lines = [f"{u}:{hashes.make_hash(p, 'bcrypt', cost)}" for u, p in users.items()]
    path.write_text("\n".join(lines) + "\n")
    path.chmod(0o644)


def site_body(root: Path, users_file: Path, extra_options: str = "", *, status: bool = True) -> str:
    """A protected folder at /private/ and, when ``status``, the status page at
    /authn-status (protected by the same file) using the shipped conf snippets."""
    (root / "private").mkdir(parents=True, exist_ok=True)
    (root / "private" / "index.html").write_text("secret\n")
    body = f"""
Include "${{AUTHN_CONF}}/authn.conf"
{extra_options}
DocumentRoot "{root}"
<Directory "{root}/private">
    Include "${{AUTHN_CONF}}/authn-basic.conf"
    AuthName "Private"
    PythonOption authn.file "{users_file}"
    Require valid-user
</Directory>
"""
    if status:
        body += f'Define AUTHN_STATUS_USERS "{users_file}"\n'
        body += 'Include "${AUTHN_CONF}/authn-status.conf"\n'
    return body


def basic(user: str | bytes, password: str | bytes) -> str:
    raw = (
        (user.encode() if isinstance(user, str) else user)
        + b":"
        + (password.encode() if isinstance(password, str) else password)
    )
    return "Basic " + base64.b64encode(raw).decode()


def get(
    port: int,
    path: str = "/private/",
    authorization: str | bytes | None = None,
    source: str = "127.0.0.1",
    host: str = "127.0.0.1",
) -> Response:
    """One request on a new connection from ``source`` (any 127.x.y.z works on Linux), so each
    request may land on any Apache child. ``authorization`` may be raw bytes."""
    return request(port, path, auth=authorization, source=source, host=host)


def status_page(port: int, prometheus: bool = False) -> str:
    path = "/authn-status" + ("?format=prometheus" if prometheus else "")
    reply = get(port, path, basic("admin", USERS["admin"]))
    assert reply.status == 200, reply
    return reply.body.decode()


def metric(text: str, name: str) -> float:
    """The value of one Prometheus series by name (the first one)."""
    found = re.search(rf"^{re.escape(name)}\{{[^}}]*\}} (\S+)$", text, re.M)
    assert found, f"{name} not in status page:\n{text}"
    return float(found.group(1))


def denial_lines(log: str) -> list[str]:
    return [line for line in log.splitlines() if "authn: denied" in line]


def crashes(log: str) -> list[str]:
    """Error-log lines that tell of a crashed child."""
    return [
        line
        for line in log.splitlines()
        if "exit signal" in line or "Segmentation fault" in line or "segfault" in line
    ]
