"""``authn check`` on the recommended layout and on a config full of mistakes;
``authn apache-config`` output pasted into a real Apache."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from devkit.apache import CONF_DIR, Apache, run_user
from devkit.http import basic, request
from tests.cli.helpers import authn


def _protected_block(users: Path, site: Path, cache: Path) -> str:
    return f"""
Alias /private "{site}"
<Directory "{site}">
    Require all granted
</Directory>
<Location /private>
    Include "{CONF_DIR}/authn-basic.conf"
    AuthName "Private area"
    PythonOption authn.file "{users}"
    PythonOption authn.cache.dir "{cache}"
    Require valid-user
</Location>
"""


def test_the_recommended_layout_is_clean(scratch: Path) -> None:
    users = scratch / "users"
    assert authn("passwd", "-cbB", "-C", "4", users, "alice", "pw").returncode == 0
    shutil.chown(users, "root", run_user()[1])
    users.chmod(0o640)  # the README's mode: a 0644 file is a finding (hashes readable by all)
    site = scratch / "site"
    site.mkdir()
    cache = scratch / "cache"
    cache.mkdir(mode=0o700)
    user, group = run_user()
    shutil.chown(cache, user, group)
    server = Apache(
        scratch / "apache",
        _protected_block(users, site, cache),
        server_conf=f'Include "{CONF_DIR}/authn.conf"',
    )
    conf = server.write_config()
    got = authn("check", conf)
    assert got.returncode == 0, got.stdout.decode()
    shutil.rmtree(cache)
    got = authn("check", conf)
    assert got.returncode == 1
    assert f"cache folder {cache} does not exist" in got.stdout.decode()
    assert f"fix: install -d -o {user} -g {group} -m 0700 {cache}" in got.stdout.decode()


def test_each_mistake_is_reported_with_file_line_and_fix(scratch: Path) -> None:
    docroot = scratch / "htdocs"
    docroot.mkdir()
    (docroot / ".htpasswd").write_text("alice:$apr1$x$y\n")
    secret = scratch / "secret"
    secret.mkdir(mode=0o700)
    (secret / "users").write_text("alice:$apr1$x$y\n")
    (scratch / "sites").mkdir()
    main = scratch / "main.conf"
    main.write_text(
        f"""ServerRoot "{scratch}"
User www-data
LoadModule auth_basic_module /usr/lib/apache2/modules/mod_auth_basic.so
LoadModule python_module /usr/lib/apache2/modules/mod_python.so
DocumentRoot "{docroot}"
PythonDebug On
IncludeOptional sites/*.conf
"""
    )
    site = scratch / "sites" / "one.conf"
    site.write_text(
        f"""<Location /no-require>
    AuthType Basic
    AuthName "x"
    AuthUserFile "{docroot}/.htpasswd"
</Location>
<Location /handler>
    PythonAuthenHandler authn.handlers
    PythonOption authn.source file
    PythonOption authn.fiel /etc/users
    PythonOption authn.file relative/users
    Require valid-user
</Location>
<Directory /srv>
    AuthType Basic
    AuthName "y"
    PythonOption authn.source file
    PythonOption authn.file "{secret}/users"
    PythonOption authn.cache.dir "{docroot}/cache"
    Require valid-user
</Directory>
<Directory /opt/native>
    AuthType Basic
    AuthName "z"
    AuthUserFile "{secret}/users"
    PythonOption authn.groupfile "{secret}/users"
    PythonOption authn.require.group admins
    Require valid-user
</Directory>
"""
    )
    got = authn("check", main)
    out = got.stdout.decode()
    assert got.returncode == 1, out
    expected = [
        (f"{main}:6:", "PythonDebug On"),
        (f"{site}:1:", "no Require"),
        (f"{site}:4:", "under the DocumentRoot"),
        (f"{site}:7:", "404"),
        (f"{site}:9:", "did you mean authn.file"),
        (f"{site}:10:", "absolute path"),
        (f"{site}:13:", "before mod_python"),
        (f"{site}:17:", "cannot"),
        (f"{site}:18:", "is under the DocumentRoot"),
        (f"{site}:18:", "does not exist"),
        (f"{site}:21:", "the group rule is never applied"),
    ]
    for prefix, words in expected:
        assert any(ln.startswith(prefix) and words in ln and "; fix: " in ln for ln in out.splitlines()), (
            prefix,
            words,
            out,
        )
    if Path("/etc/passwd").read_text().count("www-data:"):
        assert "www-data cannot enter" in out


AUTH = "    AuthType Basic\n    AuthName x\n    AuthBasicProvider file\n    AuthUserFile /dev/null\n"


def test_where_apache_finds_the_require_line(scratch: Path) -> None:
    """Require lines as Apache applies them: inside <RequireAny> (counts), inside <Limit>
    (other methods open), beside 'Require all granted' (alternatives: all open), and merged
    from a parent <Directory> when the block has none of its own."""
    blocks = {
        "mixed": "    <RequireAny>\n        Require ip 10.0.0.0/8\n"
        "        Require valid-user\n    </RequireAny>\n",
        "none-only": "    <RequireNone>\n        Require user mallory\n    </RequireNone>\n",
        "limit": "    <Limit GET>\n        Require valid-user\n    </Limit>\n",
        "granted": "    Require all granted\n    Require valid-user\n",
        "parent": "    Require valid-user\n",
        "parent/inner": "",
        "parent/open": "    Require all granted\n",
    }
    text = f'ServerRoot "{scratch}"\n'
    lines: dict[str, int] = {}
    for name, body in blocks.items():
        lines[name] = text.count("\n") + 1
        text += f"<Directory /srv/{name}>\n{AUTH if name != 'parent' else ''}{body}</Directory>\n"
    main = scratch / "main.conf"
    main.write_text(text)
    out = authn("check", main).stdout.decode()

    def found(name: str, words: str) -> bool:
        return any(words in ln for ln in out.splitlines() if ln.startswith(f"{main}:{lines[name]}:"))

    assert not found("mixed", "no Require"), out
    assert found("none-only", "no Require"), out
    assert found("limit", "only inside <Limit>"), out
    assert any("'Require all granted' beside" in ln for ln in out.splitlines()), out
    assert not found("parent/inner", "no Require"), out  # merged from /srv/parent
    assert found("parent/open", "no Require"), out  # its own Require replaces the parent's


def _status(server: Apache, path: str, user: str, password: str) -> int:
    return request(server.port, path, auth=basic(user, password)).status


@pytest.mark.apache
@pytest.mark.parametrize("inline", [False, True])
def test_the_printed_snippet_works_in_apache(
    scratch: Path, start_apache: Callable[..., Apache], inline: bool
) -> None:
    got = authn("apache-config", *(["--inline"] if inline else []), check=True)
    snippet = got.stdout.decode()
    server_part = snippet.split("<Location /private>")[0]
    users = scratch / "users"
    assert authn("passwd", "-cbB", "-C", "4", users, "alice", "pw").returncode == 0
    users.chmod(0o644)
    site = scratch / "site"
    site.mkdir()
    (site / "index.html").write_text("hi\n")
    block = snippet[snippet.index("<Location /private>") :].replace("/etc/apache2/authn/users", str(users))
    body = f'Alias /private "{site}"\n<Directory "{site}">\n Require all granted\n</Directory>\n'
    server = start_apache(body + block, server_conf=server_part)
    assert _status(server, "/private/index.html", "alice", "pw") == 200
    assert _status(server, "/private/index.html", "alice", "nope") == 401
    proc = server.proc
    server.stop()
    if proc is not None and proc.stdout is not None:  # a harness that kept a pipe open
        proc.stdout.close()
