"""Files written by ``authn`` work in a real Apache: native mod_authn_file and our handlers.

Disabled users are refused by both.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from devkit.apache import CONF_DIR, Apache
from devkit.http import basic, request
from tests.cli.helpers import authn

pytestmark = pytest.mark.apache

USERS = {"bcrypt": ("-B", "pw-bcrypt"), "sha512": ("-5", "pw-sha512"), "md5": ("-m", "pw-md5")}


def _status(server: Apache, path: str, user: str | None = None, password: str = "") -> int:
    return request(server.port, path, auth=None if user is None else basic(user, password)).status


def test_native_apache_and_authn_accept_our_users_and_refuse_disabled_ones(
    scratch: Path, start_apache: Callable[..., Apache]
) -> None:
    users = scratch / "users"
    for i, (name, (flag, password)) in enumerate(USERS.items()):
        args = [flag + ("cb" if i == 0 else "b")]
        assert authn("passwd", *args, users, name, password).returncode == 0
    assert authn("passwd", "-b", users, "gone", "pw-gone").returncode == 0
    assert authn("disable", users, "gone").returncode == 0
    users.chmod(0o644)
    site = scratch / "site"
    site.mkdir()
    (site / "index.html").write_text("hello\n")
    body = f"""
Alias /native "{site}"
Alias /authn "{site}"
<Location /native>
    AuthType Basic
    AuthName "native"
    AuthBasicProvider file
    AuthUserFile "{users}"
    Require valid-user
</Location>
<Directory "{site}">
    Require all granted
</Directory>
<Location /authn>
    Include "{CONF_DIR}/authn-basic.conf"
    PythonOption authn.file "{users}"
    Require valid-user
</Location>
"""
    server = start_apache(body, server_conf=f'Include "{CONF_DIR}/authn.conf"')
    for area in ("native", "authn"):
        url = f"/{area}/index.html"
        assert _status(server, url) == 401
        for name, (_, password) in USERS.items():
            assert _status(server, url, name, password) == 200, (area, name)
            assert _status(server, url, name, password + "x") == 401, (area, name)
        assert _status(server, url, "gone", "pw-gone") == 401, area
    assert authn("enable", users, "gone").returncode == 0
    assert _status(server, "/native/index.html", "gone", "pw-gone") == 200
    proc = server.proc
    server.stop()
    if proc is not None and proc.stdout is not None:  # a harness that kept a pipe open
        proc.stdout.close()
