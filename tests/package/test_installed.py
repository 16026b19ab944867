"""The installed Debian package (``make deb``, ``apt install ./authn_*.deb``): run by .ci/run
with ``AUTHN_TEST_INSTALLED=1``, after the Apache suite has run against the same install.

What the package promises an admin: the conf enabled, the snippets where Apache admins look,
the command and its man page, the folders of the cache and the lockout for the Apache user
only, and Apache loading authn from Debian's python3 with Debian's bcrypt and passlib."""

from __future__ import annotations

import os
import pwd
import stat
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

import authn
from authn import hashes
from devkit.apache import INSTALLED, Apache
from devkit.http import basic, request

pytestmark = pytest.mark.skipif(
    not INSTALLED, reason="runs against the installed package (AUTHN_TEST_INSTALLED=1)"
)


def test_layout() -> None:
    assert Path("/etc/apache2/conf-enabled/authn.conf").resolve() == Path(
        "/etc/apache2/conf-available/authn.conf"
    )
    conffiles = Path("/var/lib/dpkg/info/authn.conffiles").read_text().split()
    assert "/etc/apache2/conf-available/authn.conf" in conffiles
    for name in (
        "authn.conf",
        "authn-basic.conf",
        "authn-form.conf",
        "authn-login.conf",
        "authn-status.conf",
        "htaccess.example",
    ):
        assert (Path("/usr/share/authn/conf") / name).is_file()
    assert Path("/etc/fail2ban/filter.d/authn.conf").is_file()
    assert Path("/usr/share/authn/fail2ban/jail.d/authn.conf").is_file()
    assert Path("/usr/share/man/man1/authn.1.gz").is_file()
    www = pwd.getpwnam("www-data")
    for folder in ("/var/cache/authn", "/var/lib/authn"):
        st = os.stat(folder)
        assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (www.pw_uid, www.pw_gid, 0o700), folder


def test_command_is_debians_python_and_this_version() -> None:
    out = subprocess.run(["/usr/bin/authn", "--version"], capture_output=True, text=True, check=True)
    assert out.stdout == f"authn {authn.__version__}\n"
    shebang = Path("/usr/bin/authn").read_text().splitlines()[0]
    assert shebang.replace(" ", "") == "#!/usr/bin/python3", shebang


def test_stock_config_checks_clean() -> None:
    out = subprocess.run(["/usr/bin/authn", "check", "/etc/apache2"], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


WHERE = """\
import sys
from mod_python import apache


def handler(req):
    import authn, bcrypt, passlib
    req.content_type = "text/plain"
    req.write("%s %s %s %s\\n" % (req.interpreter, authn.__file__, bcrypt.__version__, passlib.__version__))
    return apache.OK
"""


def test_apache_runs_the_package_with_debians_libraries(
    scratch: Path, start_apache: Callable[..., Apache]
) -> None:
    users = scratch / "users"
    users.write_text(
        f"alice:{hashes.make_hash(b'pw', 'bcrypt', 5)}\nbob:{hashes.make_hash(b'pw2', 'apr1')}\n"
    )
    (scratch / "app").mkdir()
    (scratch / "app" / "where.py").write_text(WHERE)
    body = f"""
DocumentRoot "{scratch}"
<Directory "{scratch}/app">
    Include /usr/share/authn/conf/authn-basic.conf
    AuthName "package"
    PythonOption authn.file "{users}"
    Require valid-user
    SetHandler mod_python
    PythonHandler where
</Directory>
"""
    server = start_apache(body)  # the server part is the package's conf-enabled/authn.conf
    assert request(server.port, "/app/x").status == 401
    for user, password in (("alice", "pw"), ("bob", "pw2")):  # bcrypt, and passlib's apr1
        reply = request(server.port, "/app/x", auth=basic(user, password))
        assert reply.status == 200, server.error_log()[-3000:]
    interpreter, path, bcrypt_version, passlib_version = reply.body.decode().split()
    assert interpreter == "main_interpreter"
    assert path == "/usr/lib/python3/dist-packages/authn/__init__.py"
    installed = subprocess.run(
        ["dpkg-query", "-W", "-f=${Version} ", "python3-bcrypt", "python3-passlib"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert [bcrypt_version, passlib_version] == [v.split("-")[0] for v in installed]


def test_the_readme_block_protects_a_folder_and_checks_clean(
    scratch: Path, start_apache: Callable[..., Apache]
) -> None:
    """The README's steps after `apt install`: one <Directory> block, a password file made by
    `authn passwd -c` (as root: 0640, group www-data), and `authn check` finds no problem."""
    (scratch / "www" / "private").mkdir(parents=True)
    (scratch / "www" / "private" / "index.html").write_text("secret\n")
    users = scratch / "authn" / "users"
    users.parent.mkdir()
    made = subprocess.run(
        ["/usr/bin/authn", "passwd", "-cbB", "-C", "5", str(users), "alice", "pw"],
        capture_output=True,
        text=True,
    )
    assert made.returncode == 0, made.stderr
    body = f"""
DocumentRoot "{scratch}/www"
<Directory "{scratch}/www/private">
    Include /usr/share/authn/conf/authn-basic.conf
    AuthName "Private area"
    PythonOption authn.file {users}
    Require valid-user
</Directory>
"""
    server = start_apache(body)
    assert request(server.port, "/private/").status == 401
    assert request(server.port, "/private/", auth=basic("alice", "nope")).status == 401
    assert request(server.port, "/private/", auth=basic("alice", "pw")).status == 200
    check = subprocess.run(
        ["/usr/bin/authn", "check", str(server.confdir / "apache2.conf")], capture_output=True, text=True
    )
    assert check.returncode == 0, check.stdout + check.stderr
