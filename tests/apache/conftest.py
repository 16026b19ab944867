"""One real Apache per MPM, shared by the tests of this folder, serving every kind of area:
<Directory>, .htaccess, <Location> over files, <Location> over a reverse proxy, PHP, CGI,
a group rule, native mod_authn_file on the same password file, and broken configurations."""

from __future__ import annotations

import http.server
import os
import shutil
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from authn import hashes
from devkit.apache import CONF_DIR, Apache, apache_available, free_port, make_readable
from tests.conftest import need

# (user bytes, password bytes, scheme) written to the shared password file
USERS: list[tuple[bytes, bytes, str]] = [
    (b"alice", b"wonderland", "bcrypt"),
    (b"bob", b"builder", "apr1"),
    (b"carol", b"c-pass", "sha512-crypt"),
    (b"dave", b"d-pass", "sha1"),
    (b"erin", b"e-pass", "crypt"),
    (b"frank", b"f-pass", "sha256-crypt"),
    ("jörg".encode(), "pässwörd".encode(), "bcrypt"),
    (b"longpw", b"L" * 72 + b"-tail-ignored-by-bcrypt", "bcrypt"),
]
EXTRA_LINES = [
    "# a comment",
    "plain:secret",  # plaintext: never grants on Unix
    "nohash:",
    "alice:" + hashes.make_hash(b"second-line", "apr1"),  # duplicate: first line wins
    # Apache's line reader joins a line ending in a backslash with the next one:
    "# a comment that goes on \\",
    "hidden:" + hashes.make_hash(b"h-pass", "apr1"),  # part of the comment: no such user
    "# the same with CRLF \\\r",
    "hidden2:" + hashes.make_hash(b"h2-pass", "apr1"),
    "joined\\",
    ":" + hashes.make_hash(b"j-pass", "apr1"),  # "joined:<hash>": a user
]
GROUPS = "admins: alice\nweb team: bob\n"


@dataclass
class Site:
    apache: Apache
    root: Path
    users_file: Path
    mpm: str

    @property
    def port(self) -> int:
        return self.apache.port


class _Backend(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = f"backend saw {self.path} user-header={self.headers.get('Authorization') is not None}\n"
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body.encode())

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="session")
def backend() -> Iterator[int]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), _Backend)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def write_users(path: Path) -> None:
    lines = [u + b":" + hashes.make_hash(p, s, 5 if s == "bcrypt" else None).encode() for u, p, s in USERS]
    lines += [line.encode() for line in EXTRA_LINES]
    path.write_bytes(b"\n".join(lines) + b"\n")


def build_site(root: Path, backend_port: int, mpm: str) -> str:
    www = root / "www"
    users = root / "users"
    groups = root / "groups"
    write_users(users)
    groups.write_text(GROUPS)
    for area in ("dir", "ht", "loc", "admin", "open", "native", "badopt", "missing", "unreadable"):
        (www / area).mkdir(parents=True)
        (www / area / "index.html").write_text(f"<p>{area} index</p>\n")
        (www / area / "file.txt").write_text("0123456789" * 100)
        (www / area / "env.php").write_text(
            '<?php echo "REMOTE_USER=", $_SERVER["REMOTE_USER"] ?? "", '
            '" AUTH_TYPE=", $_SERVER["AUTH_TYPE"] ?? "", "\\n";\n'
        )
    cgi = www / "dir" / "env.cgi"
    cgi.write_text('#!/bin/sh\nprintf "Content-Type: text/plain\\n\\nREMOTE_USER=%s AUTH_TYPE=%s\\n" '
                   '"$REMOTE_USER" "$AUTH_TYPE"\n')  # fmt: skip
    cgi.chmod(0o755)
    htaccess = (CONF_DIR / "htaccess.example").read_text().replace("/etc/apache2/authn/users", str(users))
    (www / "ht" / ".htaccess").write_text(htaccess)
    unreadable = root / "unreadable-users"
    shutil.copy(users, unreadable)
    unreadable.chmod(0o600)  # owned by root (or us): the Apache run user cannot read it

    def protected(extra: str) -> str:
        return f'    Include "{CONF_DIR}/authn-basic.conf"\n    AuthName "authn test"\n{extra}'

    file_opt = f'    PythonOption authn.file "{users}"\n'
    return f"""
Include "{CONF_DIR}/authn.conf"
DocumentRoot "{www}"
DirectoryIndex index.html index.php
AddHandler cgi-script .cgi
<Directory "{www}">
    Options +ExecCGI
    AllowOverride None
    Require all granted
</Directory>
<Directory "{www}/dir">
{protected(file_opt)}    Require valid-user
</Directory>
<Directory "{www}/ht">
    AllowOverride AuthConfig
</Directory>
<Location "/loc">
{protected(file_opt)}    Require valid-user
</Location>
<Location "/proxy">
{protected(file_opt)}    Require valid-user
</Location>
ProxyPass "/proxy/" "http://127.0.0.1:{backend_port}/"
<Directory "{www}/admin">
{protected(file_opt)}    PythonOption authn.groupfile "{groups}"
    PythonOption authn.require.group "admins 'web team'"
    Require valid-user
</Directory>
<Location "/admin/only-admins">
    PythonOption authn.require.group admins
</Location>
<Directory "{www}/native">
    AuthType Basic
    AuthName "native"
    AuthBasicProvider file
    AuthUserFile "{users}"
    Require valid-user
</Directory>
<Directory "{www}/badopt">
{protected(file_opt)}    PythonOption authn.soruce file
    Require valid-user
</Directory>
<Directory "{www}/missing">
{protected(f'    PythonOption authn.file "{root}/no-such-file"{chr(10)}')}    Require valid-user
</Directory>
<Directory "{www}/unreadable">
{protected(f'    PythonOption authn.file "{unreadable}"{chr(10)}')}    Require valid-user
</Directory>
"""


@pytest.fixture(scope="session", params=["prefork", "event"])
def site(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, backend: int
) -> Iterator[Site]:
    need(apache_available())
    mpm = str(request.param)
    root = tmp_path_factory.mktemp(f"site-{mpm}")
    make_readable(root)
    body = build_site(root, backend, mpm)
    make_readable(root)
    modules = ("proxy", "proxy_http", "cgi" if mpm == "prefork" else "cgid")
    if mpm == "prefork":
        modules += ("php8.2",)
    server = Apache(root / "apache", body, mpm=mpm, modules=modules)
    server.start()
    try:
        yield Site(server, root, root / "users", mpm)
    finally:
        server.stop()
        if os.environ.get("AUTHN_SHOW_LOGS"):
            print(server.error_log())


@pytest.fixture
def log_offset(site: Site) -> int:
    return site.apache.error_log_size()
