"""``authn check`` sees what makes a 500 (or grants what it should refuse): one test per
finding, each on a real Apache configuration that the same test starts, to show that what
the doctor reports is what Apache does."""

from __future__ import annotations

import http.client
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from devkit.apache import CONF_DIR, Apache, run_user
from devkit.http import basic, request
from tests.cli.helpers import authn

pytestmark = pytest.mark.apache

StartApache = Callable[..., Apache]


def _layout(scratch: Path, options: str = "", *, mode: int = 0o640) -> tuple[Path, str, Path]:
    """The recommended layout: users (mode ``mode``, group of the Apache user), a site, a
    cache folder. Returns the password file, the vhost body and the site folder."""
    users = scratch / "users"
    assert authn("passwd", "-cbB", "-C", "4", users, "alice", "pw").returncode == 0
    shutil.chown(users, "root", run_user()[1])
    users.chmod(mode)
    site = scratch / "site"
    site.mkdir(exist_ok=True)
    (site / "index.html").write_text("hi\n")
    cache = scratch / "cache"
    cache.mkdir(mode=0o700, exist_ok=True)
    shutil.chown(cache, *run_user())
    body = f"""
Alias /private "{site}"
<Directory "{site}">
    Include "{CONF_DIR}/authn-basic.conf"
    AuthName "Private area"
    PythonOption authn.file "{users}"
    PythonOption authn.cache.dir "{cache}"
{options}
    Require valid-user
</Directory>
"""
    return users, body, site


SERVER = f'Include "{CONF_DIR}/authn.conf"'


def _check(server: Apache) -> tuple[int, str]:
    got = authn("check", server.write_config())
    return got.returncode, got.stdout.decode()


def _status(server: Apache, path: str = "/private/index.html") -> int:
    return request(server.port, path, auth=basic("alice", "pw")).status


def test_the_layout_these_tests_break_is_clean(scratch: Path, start_apache: StartApache) -> None:
    _, body, _ = _layout(scratch)
    server = start_apache(body, server_conf=SERVER)
    code, out = _check(server)
    assert code == 0, out
    assert _status(server) == 200


def test_the_python_path_finding_without_a_system_wide_authn(
    scratch: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An admin's server-level PythonPath (the layout of earlier versions) naming a folder
    without authn (after a Python upgrade, a typo): every request would be 500 where no other
    authn stands behind it (the Debian package, or a venv named by a .pth file)."""
    from authn.cli import check as doctor
    from authn.httpd.config import read_config

    monkeypatch.setattr(doctor, "SYSTEM_PACKAGES", ())
    _, body, _ = _layout(scratch)
    stale = scratch / "python3.9" / "site-packages"
    conf = Apache(
        scratch / "a", body, server_conf=SERVER + f"\nPythonPath \"['{stale}'] + sys.path\"\n"
    ).write_config()
    lines = doctor.check(read_config(str(conf)))
    assert any(f"PythonPath names {stale}, which holds no authn package" in ln for ln in lines), lines


@pytest.mark.parametrize("option", ["bind_password_file", "ca_file"])
def test_an_ldap_file_that_is_missing_or_unreadable_is_500(
    scratch: Path, start_apache: StartApache, option: str
) -> None:
    secret = scratch / "secret"
    secret.mkdir(mode=0o700)  # the Apache user cannot enter it
    (secret / "pw").write_text("x\n")
    readable = scratch / "pw"
    readable.write_text("x\n")
    shutil.chown(readable, "root", run_user()[1])
    readable.chmod(0o640)
    path = secret / "pw" if option == "bind_password_file" else scratch / "no-such-ca.pem"
    password = secret / "pw" if option == "bind_password_file" else readable
    options = (
        "    PythonOption authn.source ldap\n"
        '    PythonOption authn.ldap.url "ldaps://127.0.0.1:1/dc=example,dc=org?uid"\n'
        '    PythonOption authn.ldap.bind_dn "cn=svc,dc=example,dc=org"\n'
        f'    PythonOption authn.ldap.bind_password_file "{password}"\n'
    )
    if option == "ca_file":
        options += f'    PythonOption authn.ldap.ca_file "{path}"\n'
    _, body, _ = _layout(scratch, options)
    server = start_apache(body, server_conf=SERVER)
    code, out = _check(server)
    assert code == 1
    if option == "ca_file":
        assert f"authn.ldap.ca_file: {path} does not exist" in out, out
    else:
        assert f"authn.ldap.bind_password_file: the Apache user cannot read {path}" in out, out
    assert _status(server) == 500
    assert f"authn.ldap.{option}: cannot read {path}" in server.error_log()


def test_a_typo_in_an_htaccess_file_is_500(scratch: Path, start_apache: StartApache) -> None:
    users, _, site = _layout(scratch)
    body = f"""
Alias /private "{site}"
<Directory "{site}">
    AllowOverride AuthConfig
    Require all granted
</Directory>
"""
    htaccess = site / ".htaccess"
    text = (CONF_DIR / "htaccess.example").read_text().replace("/etc/apache2/authn/users", str(users))
    htaccess.write_text(text + "PythonOption authn.lockout.treshold 3\n")
    server = start_apache(body, server_conf=SERVER)
    code, out = _check(server)
    assert code == 1
    typo_line = len(htaccess.read_text().splitlines())  # the last line
    assert f"{htaccess}:{typo_line}: " in out and "did you mean authn.lockout.threshold" in out, out
    assert _status(server) == 500
    htaccess.write_text(text)
    code, out = _check(server)
    assert code == 0, out
    assert _status(server) == 200


def test_a_missing_group_file_gets_the_group_command_as_fix(scratch: Path, start_apache: StartApache) -> None:
    groups = scratch / "groups"
    options = f'    PythonOption authn.groupfile "{groups}"\n    PythonOption authn.require.group admins\n'
    _, body, _ = _layout(scratch, options)
    server = start_apache(body, server_conf=SERVER)
    code, out = _check(server)
    assert code == 1
    assert f"authn.groupfile: {groups} does not exist" in out, out
    assert f"fix: create it with 'authn group add -c {groups} GROUP USER'" in out, out
    assert "authn passwd" not in out
    assert _status(server) == 500


def test_hashes_readable_by_every_local_user(scratch: Path, start_apache: StartApache) -> None:
    """Not a 500: Apache grants as it should, but any local account can copy the hashes."""
    users, body, _ = _layout(scratch, mode=0o644)
    server = start_apache(body, server_conf=SERVER)
    code, out = _check(server)
    assert code == 1
    assert f"authn.file: {users} is readable by every local user (mode 0644)" in out, out
    assert f"fix: chgrp {run_user()[0]} {users} && chmod 0640 {users}" in out
    assert _status(server) == 200


def test_a_cache_file_owned_by_another_user(scratch: Path, start_apache: StartApache) -> None:
    _, body, _ = _layout(scratch)
    server = start_apache(body, server_conf=SERVER)
    assert _status(server) == 200  # makes the cache's files, as the Apache user
    deadline = time.monotonic() + 10
    cache = scratch / "cache"
    while not any(cache.iterdir()) and time.monotonic() < deadline:
        time.sleep(0.05)
    stray = cache / "left-by-root"
    stray.write_bytes(b"")
    code, out = _check(server)
    assert code == 1
    assert f"the credential cache file {stray} belongs to uid 0, not to the Apache user" in out, out


def test_a_vhost_file_alone_gives_no_false_finding(scratch: Path) -> None:
    """``authn check site.conf``: the server-level lines come from the main config above it,
    and a file with no main config above it is checked without the server-level checks."""
    _, body, _ = _layout(scratch)
    etc = scratch / "etc"
    (etc / "sites-available").mkdir(parents=True)
    main = etc / "apache2.conf"
    main.write_text(
        f'ServerRoot "{etc}"\nUser {run_user()[0]}\n'
        "LoadModule auth_basic_module /usr/lib/apache2/modules/mod_auth_basic.so\n"
        "LoadModule python_module /usr/lib/apache2/modules/mod_python.so\n"
        f'Define AUTHN_SITE_PACKAGES "{Apache(scratch / "a", "").defines["AUTHN_SITE_PACKAGES"]}"\n'
        f"{SERVER}\nIncludeOptional sites-enabled/*.conf\n"
    )
    vhost = etc / "sites-available" / "site.conf"
    vhost.write_text(f"<VirtualHost *:80>\n{body}</VirtualHost>\n")
    for target in (vhost, scratch / "alone.conf"):
        if target != vhost:
            shutil.copy(vhost, target)
        got = authn("check", target)
        assert got.returncode == 0, got.stdout.decode()
    main.write_text(main.read_text().replace(SERVER, ""))  # authn.conf no longer included
    got = authn("check", vhost)
    assert got.returncode == 1 and "so authn never runs" in got.stdout.decode()


def test_the_status_page_outside_every_vhost_is_reported(scratch: Path, start_apache: StartApache) -> None:
    users, body, _ = _layout(scratch)
    status = f'Define AUTHN_STATUS_USERS "{users}"\nInclude "{CONF_DIR}/authn-status.conf"\n'
    other = "<VirtualHost 127.0.0.1:*>\n    ServerName other.example\n</VirtualHost>\n"
    server = start_apache(body + status + other, server_conf=SERVER)
    code, out = _check(server)
    assert code == 1 and "status page stands outside every <VirtualHost>" in out, out
    assert _status_on(server, "other.example") == 200  # what the finding says: every site serves it
    server.stop()
    scoped = f"<VirtualHost 127.0.0.1:*>\n    ServerName admin.example\n{status}</VirtualHost>\n"
    server = start_apache(body + scoped + other, server_conf=SERVER)
    code, out = _check(server)
    assert code == 0, out
    assert _status_on(server, "other.example") in (403, 404)  # not served there
    assert _status_on(server, "admin.example") == 200


def _status_on(server: Apache, site: str) -> int:
    """The status page's answer on the name-based vhost ``site``."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        conn.putrequest("GET", "/authn-status", skip_host=True)
        conn.putheader("Host", site)
        conn.putheader("Authorization", basic("alice", "pw"))
        conn.endheaders()
        return conn.getresponse().status
    finally:
        conn.close()


def test_check_is_cheap(scratch: Path) -> None:
    """Debian's stock /etc/apache2 (when there is one) is read and checked well within a
    deploy script's patience."""
    if not Path("/etc/apache2/apache2.conf").exists():
        pytest.skip("no /etc/apache2 here")
    started = time.monotonic()
    got = authn("check", "/etc/apache2")
    assert got.returncode in (0, 1), got
    assert time.monotonic() - started < 10


def test_form_sign_in_findings(scratch: Path, start_apache: StartApache) -> None:
    """authn.login form with AuthType Basic (mod_auth_basic answers first: a 401, never the
    sign-in page) is a problem; no sign-in pages and plain HTTP are warnings (exit 0)."""
    _users, body, _site = _layout(scratch, "    PythonOption authn.login form")
    server = start_apache(SERVER + body)
    code, out = _check(server)
    assert code == 1 and "with AuthType Basic" in out and "conf/authn-form.conf" in out
    assert request(server.port, "/private/index.html", headers={"Accept": "text/html"}).status == 401
    fixed = body.replace("authn-basic.conf", "authn-form.conf").replace(
        "    PythonOption authn.login form\n", ""
    )
    server = start_apache(SERVER + fixed)
    code, out = _check(server)
    assert code == 0, out
    assert "warning: " in out and "no sign-in pages" in out and "over plain HTTP" in out
    server = start_apache(SERVER + f'\nInclude "{CONF_DIR}/authn-login.conf"\n' + fixed)
    code, out = _check(server)
    assert code == 0 and "no sign-in pages" not in out and "over plain HTTP" in out
    assert request(server.port, "/private/index.html", headers={"Accept": "text/html"}).status == 303
