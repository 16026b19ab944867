"""Sessions with a directory and with Redis, and across a graceful restart."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import ldap
import pytest

from devkit.apache import Apache, make_readable
from devkit.redis import RedisServer
from devkit.slapd import PEOPLE, SERVICE_DN, USERS, Slapd
from tests.cli.helpers import authn
from tests.signin.test_signin_apache import Browser, site

pytestmark = pytest.mark.apache


def test_a_session_survives_a_graceful_restart(start_apache: Callable[..., Apache], scratch: Path) -> None:
    apache = site(start_apache, scratch, "prefork")
    browser = Browser(apache.port)
    assert browser.sign_in("/private/", "alice", "wonderland").status == 303
    apache.graceful()
    assert browser.send("/private/").status == 200


def test_directory_sessions_end_when_the_password_changes(
    start_apache: Callable[..., Apache], scratch: Path, slapd: Slapd, service_password_file: Path
) -> None:
    make_readable(service_password_file.parent)
    make_readable(Path(slapd.cafile).parent)
    root = scratch / "www"
    (root / "private").mkdir(parents=True)
    (root / "private" / "index.html").write_text("directory content\n")
    body = f"""
Include "${{AUTHN_CONF}}/authn.conf"
Include "${{AUTHN_CONF}}/authn-login.conf"
DocumentRoot "{root}"
<Directory "{root}/private">
    Include "${{AUTHN_CONF}}/authn-form.conf"
    PythonOption authn.source ldap
    PythonOption authn.ldap.url "{slapd.ldap_url}/dc=example,dc=org?uid?sub"
    PythonOption authn.ldap.bind_dn "{SERVICE_DN}"
    PythonOption authn.ldap.bind_password_file "{service_password_file}"
    PythonOption authn.cache.ttl 1
    Require valid-user
</Directory>
"""
    apache = start_apache(body, mpm="event")
    browser = Browser(apache.port)
    assert browser.sign_in("/private/", "bob", USERS["bob"]).status == 303
    assert browser.send("/private/").body == b"directory content\n"
    conn = ldap.initialize(slapd.ldap_url)
    conn.simple_bind_s(slapd.root_dn, slapd.root_pw)
    try:
        conn.passwd_s(f"uid=bob,{PEOPLE}", None, "a new password")
        time.sleep(2.2)  # the cache TTL (1 s) and a second of slack
        assert browser.send("/private/").status == 303
    finally:
        conn.passwd_s(f"uid=bob,{PEOPLE}", None, USERS["bob"])
        conn.unbind_s()


def test_redis_sessions_logout_and_revoke(
    start_apache: Callable[..., Apache], scratch: Path, redis_server: RedisServer
) -> None:
    users = scratch / "users"
    from devkit.site import write_users

    write_users(users, {"alice": b"wonderland"}, cost=4)
    root = scratch / "www"
    (root / "private").mkdir(parents=True)
    (root / "private" / "index.html").write_text("redis content\n")
    body = f"""
Include "${{AUTHN_CONF}}/authn.conf"
PythonOption authn.lockout.store redis
PythonOption authn.lockout.redis {redis_server.url}
Include "${{AUTHN_CONF}}/authn-login.conf"
DocumentRoot "{root}"
<Directory "{root}/private">
    Include "${{AUTHN_CONF}}/authn-form.conf"
    PythonOption authn.file "{users}"
    Require valid-user
</Directory>
"""
    apache = start_apache(body, mpm="prefork")
    first = Browser(apache.port)
    assert first.sign_in("/private/", "alice", "wonderland").status == 303
    assert first.send("/private/").status == 200
    token = first.jar["authn_session"]
    page = first.send("/authn/logout")
    assert first.send("/authn/logout", method="POST", form=first.form_of(page)).status == 200
    time.sleep(1.1)  # Redis: another child may trust a checked session for up to a second
    assert all(
        Browser(apache.port, {"authn_session": token}).send("/private/").status == 303 for _ in range(6)
    )
    second = Browser(apache.port)
    assert second.sign_in("/private/", "alice", "wonderland").status == 303
    result = authn("session", "--redis", redis_server.url, "revoke", "alice")
    assert result.returncode == 0 and b"revoked 1 session" in result.stderr, result.stderr
    time.sleep(1.1)
    assert all(second.send("/private/").status == 303 for _ in range(6))
