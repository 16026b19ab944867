"""Sign-in from a browser, through a real Apache (both MPMs), driven at the HTTP level: the
redirect, the form, the session cookie, logout, timeouts, non-browser clients, the lockout,
open redirects. The real browser drives the same site in test_browser.py."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest

from devkit.apache import Apache
from devkit.http import Response, basic, request
from devkit.site import write_users

pytestmark = pytest.mark.apache

HTML = "text/html,application/xhtml+xml"
USERS = {"alice": b"wonderland", "bob": b"builder"}


@dataclass
class Browser:
    """A cookie jar and the requests a browser would send (Accept: text/html)."""

    port: int
    jar: dict[str, str] = field(default_factory=dict)
    source: str = "127.0.0.1"
    host: str = "127.0.0.1"

    def send(self, path: str, *, method: str = "GET", form: dict[str, str] | None = None,
             accept: str = HTML) -> Response:  # fmt: skip
        headers: dict[str, bytes | str] = {"Accept": accept}
        if self.jar:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.jar.items())
        body = None
        if form is not None:
            body = urlencode(form).encode()
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        reply = request(
            self.port, path, method=method, headers=headers, body=body, source=self.source, host=self.host
        )
        for name, header in reply.set_cookies().items():
            value = header.split("=", 1)[1].split(";", 1)[0]
            if "Max-Age=0" in header or not value:
                self.jar.pop(name, None)
            else:
                self.jar[name] = value
        return reply

    def form_of(self, reply: Response) -> dict[str, str]:
        page = reply.body.decode()
        return dict(re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)"', page))

    def sign_in(self, path: str, user: str, password: str, code: str = "") -> Response:
        first = self.send(path)
        assert first.status == 303, first
        page = self.send(first.headers["location"])
        assert page.status == 200, page
        fields = self.form_of(page)
        return self.send(
            "/authn/login", method="POST", form={**fields, "user": user, "password": password, "code": code}
        )


def site(start_apache: Callable[..., Apache], scratch: Path, mpm: str, extra: str = "") -> Apache:
    users = scratch / "users"
    write_users(users, USERS, cost=4)
    root = scratch / "www"
    for folder in ("private", "both", "open"):
        (root / folder).mkdir(parents=True)
        (root / folder / "index.html").write_text(f"{folder} content\n")
    (scratch / "lockout").mkdir(mode=0o700)
    import os

    from tests.lockout.test_bursts_and_floods import _ids  # the Apache user's uid and gid

    os.chown(scratch / "lockout", *_ids())
    body = f"""
Include "${{AUTHN_CONF}}/authn.conf"
PythonOption authn.lockout.dir "{scratch / "lockout"}"
Include "${{AUTHN_CONF}}/authn-login.conf"
DocumentRoot "{root}"
<Directory "{root}/private">
    Include "${{AUTHN_CONF}}/authn-form.conf"
    AuthName "Private area"
    PythonOption authn.file "{users}"
    PythonOption authn.lockout.threshold 3
    {extra}
    Require valid-user
</Directory>
<Directory "{root}/both">
    Include "${{AUTHN_CONF}}/authn-form.conf"
    AuthName "Both"
    PythonOption authn.file "{users}"
    PythonOption authn.login "form basic"
    Require valid-user
</Directory>
"""
    return start_apache(body, mpm=mpm)


@pytest.fixture(params=["prefork", "event"])
def mpm(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def test_redirect_sign_in_session_and_logout(
    start_apache: Callable[..., Apache], scratch: Path, mpm: str
) -> None:
    apache = site(start_apache, scratch, mpm)
    browser = Browser(apache.port)
    first = browser.send("/private/index.html?x=1")
    assert first.status == 303
    location = urlsplit(first.headers["location"])
    assert location.path == "/authn/login"
    assert parse_qs(location.query)["return"] == ["/private/index.html?x=1"]
    page = browser.send(first.headers["location"])
    assert page.status == 200 and "Sign in to Private area" in page.body.decode()
    assert "no-store" in page.headers["cache-control"] and page.headers["x-frame-options"] == "DENY"
    csrf = page.set_cookies()["authn_csrf"]
    assert "HttpOnly" in csrf and "SameSite=Strict" in csrf
    fields = browser.form_of(page)
    wrong = browser.send("/authn/login", method="POST", form={**fields, "user": "alice", "password": "nope"})
    assert wrong.status == 200 and "Wrong user name or password." in wrong.body.decode()
    assert "authn_session" not in browser.jar
    unknown = browser.send(
        "/authn/login", method="POST", form={**browser.form_of(wrong), "user": "nobody", "password": "nope"}
    )
    assert unknown.body.decode().count("Wrong user name or password.") == 1  # the same answer
    done = browser.send(
        "/authn/login",
        method="POST",
        form={**browser.form_of(unknown), "user": "alice", "password": "wonderland"},
    )
    assert done.status == 303 and done.headers["location"] == "/private/index.html?x=1"
    cookie = done.set_cookies()["authn_session"]
    assert all(word in cookie for word in ("HttpOnly", "SameSite=Lax", "Path=/"))
    assert "Secure" not in cookie  # plain HTTP here; Secure whenever the request came over HTTPS
    token = browser.jar["authn_session"]
    assert "wonderland" not in cookie and len(token) >= 40
    content = browser.send("/private/index.html")
    assert content.status == 200 and content.body == b"private content\n"
    assert "no-store" in content.headers.get("cache-control", "")
    # The same session is valid on every child (new connections) and survives nothing else
    assert all(browser.send("/private/").status == 200 for _ in range(10))
    # Sign out: the old cookie is refused afterwards, also when replayed by another client
    out_page = browser.send("/authn/logout")
    assert out_page.status == 200
    out = browser.send("/authn/logout", method="POST", form=browser.form_of(out_page))
    assert out.status == 200 and "signed out" in out.body.decode()
    assert "authn_session" not in browser.jar
    replay = Browser(apache.port, {"authn_session": token})
    assert replay.send("/private/").status == 303
    log = apache.error_log()
    assert 'user="alice" client=127.0.0.1 source=file reason="bad password"' in log
    assert 'user="nobody" client=127.0.0.1 source=file reason="unknown user"' in log


def test_a_new_session_id_at_every_sign_in(start_apache: Callable[..., Apache], scratch: Path) -> None:
    apache = site(start_apache, scratch, "prefork")
    browser = Browser(apache.port)
    assert browser.sign_in("/private/", "alice", "wonderland").status == 303
    first = browser.jar["authn_session"]
    browser.jar.pop("authn_session")
    assert browser.sign_in("/private/", "alice", "wonderland").status == 303
    assert browser.jar["authn_session"] != first
    # a planted cookie (session fixation) is never taken over: an unknown id is no session
    planted = Browser(apache.port, {"authn_session": "A" * 43})
    assert planted.send("/private/").status == 303


def test_non_browsers_get_401_and_form_basic_takes_basic(
    start_apache: Callable[..., Apache], scratch: Path
) -> None:
    apache = site(start_apache, scratch, "event")
    curl = request(apache.port, "/private/", headers={"Accept": "*/*"})
    assert curl.status == 401
    post = request(apache.port, "/private/", method="POST", headers={"Accept": HTML}, body=b"x=1")
    assert post.status == 401
    # "form": Basic credentials do not open it
    assert request(apache.port, "/private/", auth=basic("alice", "wonderland")).status == 401
    # "form basic": scripts may send Basic; browsers without credentials get the form
    assert request(apache.port, "/both/", auth=basic("alice", "wonderland")).status == 200
    assert request(apache.port, "/both/", auth=basic("alice", "wrong")).status == 401
    assert request(apache.port, "/both/", headers={"Accept": HTML}).status == 303


@pytest.mark.parametrize(
    "target",
    ["//evil.example/", "https://evil.example/", "/\\evil.example", "/%2F%2Fevil.example",
     "/%5Cevil.example", "%2F%2Fevil.example", "javascript:alert(1)", "/.//evil.example"],
)  # fmt: skip
def test_no_open_redirect(start_apache: Callable[..., Apache], scratch: Path, target: str) -> None:
    apache = site(start_apache, scratch, "prefork")
    browser = Browser(apache.port)
    first = browser.send("/private/")
    query = dict(parse_qs(urlsplit(first.headers["location"]).query))
    page = browser.send("/authn/login?" + urlencode({"context": query["context"][0], "return": target}))
    fields = browser.form_of(page)
    assert fields["return"] == "/"
    done = browser.send(
        "/authn/login", method="POST", form={**fields, "return": target, "user": "bob", "password": "builder"}
    )
    assert done.status == 303 and done.headers["location"] == "/"


def test_csrf_token_is_required(start_apache: Callable[..., Apache], scratch: Path) -> None:
    apache = site(start_apache, scratch, "prefork")
    browser = Browser(apache.port)
    first = browser.send("/private/")
    fields = browser.form_of(browser.send(first.headers["location"]))
    forged = {**fields, "csrf": "not-the-cookie", "user": "alice", "password": "wonderland"}
    reply = browser.send("/authn/login", method="POST", form=forged)
    assert reply.status == 403 and "authn_session" not in browser.jar
    other = Browser(apache.port)  # another site's page posting the form: no cookie at all
    reply = other.send(
        "/authn/login", method="POST", form={**fields, "user": "alice", "password": "wonderland"}
    )
    assert reply.status == 403 and "authn_session" not in other.jar


def test_lockout_counts_form_failures_and_shows_429(
    start_apache: Callable[..., Apache], scratch: Path
) -> None:
    apache = site(start_apache, scratch, "prefork")
    browser = Browser(apache.port, source="127.0.0.7")
    for _ in range(3):
        assert browser.sign_in("/private/", "alice", "guess").status == 200
    locked = browser.sign_in("/private/", "alice", "wonderland")
    assert locked.status == 429 and "Too many attempts. Try again in 10 minutes." in locked.body.decode()
    assert int(locked.headers["retry-after"]) > 0
    assert "authn_session" not in browser.jar
    assert Browser(apache.port, source="127.0.0.8").sign_in("/private/", "alice", "wonderland").status == 303


def test_idle_timeout_and_password_change_end_the_session(
    start_apache: Callable[..., Apache], scratch: Path
) -> None:
    apache = site(start_apache, scratch, "prefork", extra="PythonOption authn.session.idle 2")
    browser = Browser(apache.port)
    assert browser.sign_in("/private/", "alice", "wonderland").status == 303
    assert browser.send("/private/").status == 200
    time.sleep(2.5)
    assert browser.send("/private/").status == 303  # idle too long: sign in again
    assert browser.sign_in("/private/", "bob", "builder").status == 303
    assert browser.send("/private/").status == 200
    write_users(scratch / "users", {**USERS, "bob": b"a new password"}, cost=4)
    time.sleep(1.5)  # every child takes a changed file within a second
    # the password changed: the session ended, in every child
    assert [browser.send("/private/").status for _ in range(8)] == [303] * 8


def test_second_factor_and_revoke(start_apache: Callable[..., Apache], scratch: Path) -> None:
    """An enrolled user needs the current code after the password; a code works once; a
    recovery code works once; a user who is not enrolled is refused (authn.otp.optional off);
    authn session revoke ends a user's sessions at once."""
    import pyotp

    from authn.cli.otp import enroll
    from tests.cli.helpers import authn

    secrets_file = scratch / "otp"
    import io

    codes = enroll(str(secrets_file), "alice", "test", out=io.StringIO())
    secrets_file.chmod(0o644)
    secret = secrets_file.read_text().split(":")[1]
    apache = site(start_apache, scratch, "event", extra=f'PythonOption authn.otp.file "{secrets_file}"')
    browser = Browser(apache.port)
    # the page asks for the code
    first = browser.send("/private/")
    assert 'autocomplete="one-time-code"' in browser.send(first.headers["location"]).body.decode()
    assert browser.sign_in("/private/", "alice", "wonderland", code="000000").status == 200
    code = pyotp.TOTP(secret).now()
    assert browser.sign_in("/private/", "alice", "wonderland", code=code).status == 303
    assert browser.send("/private/").status == 200
    again = Browser(apache.port)
    assert again.sign_in("/private/", "alice", "wonderland", code=code).status == 200  # replayed code
    assert again.sign_in("/private/", "alice", "wonderland", code=codes[0]).status == 303  # recovery
    third = Browser(apache.port)
    assert third.sign_in("/private/", "alice", "wonderland", code=codes[0]).status == 200  # used once
    # bob is not enrolled: refused while authn.otp.optional is off
    assert Browser(apache.port).sign_in("/private/", "bob", "builder").status == 200
    log = apache.error_log()
    assert 'reason="bad code"' in log and 'reason="second factor not enrolled"' in log
    # revoke: every session of alice ends at once
    result = authn("session", "--dir", str(scratch / "lockout"), "revoke", "alice")
    assert result.returncode == 0, result.stderr
    assert browser.send("/private/").status == 303 and again.send("/private/").status == 303


def test_a_session_is_no_session_where_the_sign_in_is_stricter(
    start_apache: Callable[..., Apache], scratch: Path
) -> None:
    """Two locations on one password file: one asks a TOTP code, one does not. A session made
    where no code was asked is no session where one is (the realm covers the second factor,
    the lockout and the timeouts); a sign-in context of the looser location buys nothing."""
    import io

    from authn.cli.otp import enroll

    secrets_file = scratch / "otp"
    enroll(str(secrets_file), "alice", "test", out=io.StringIO())
    secrets_file.chmod(0o644)
    apache = site(start_apache, scratch, "prefork")
    admin = scratch / "www" / "admin"
    admin.mkdir()
    (admin / "index.html").write_text("admin content\n")
    apache.stop()
    body = (
        apache.body
        + f"""
<Directory "{admin}">
    Include "${{AUTHN_CONF}}/authn-form.conf"
    PythonOption authn.file "{scratch / "users"}"
    PythonOption authn.otp.file "{secrets_file}"
    Require valid-user
</Directory>
"""
    )
    apache = start_apache(body, mpm="prefork")
    browser = Browser(apache.port)
    assert browser.sign_in("/private/", "alice", "wonderland").status == 303
    assert browser.send("/private/").status == 200
    assert browser.send("/admin/").status == 303  # asks again, with the code this time


def test_second_factor_refuses_basic_and_counts_wrong_codes(
    start_apache: Callable[..., Apache], scratch: Path
) -> None:
    """A second factor cannot ride on Basic ("form basic" with authn.otp.file is a
    configuration error: 500 with its line); ten wrong codes with the right password lock the
    account's codes from that address (a right password does not clear them)."""
    import io

    from authn.cli.otp import enroll

    secrets_file = scratch / "otp"
    enroll(str(secrets_file), "alice", "test", out=io.StringIO())
    secrets_file.chmod(0o644)
    apache = site(start_apache, scratch, "prefork", extra=f'PythonOption authn.otp.file "{secrets_file}"')
    assert request(apache.port, "/both/", auth=basic("alice", "wonderland")).status == 200  # no otp there
    browser = Browser(apache.port, source="127.0.0.21")
    statuses = [browser.sign_in("/private/", "alice", "wonderland", code="000000").status for _ in range(12)]
    assert statuses[:3] == [200, 200, 200] and 429 in statuses, statuses
    apache.stop()
    misconfigured = apache.body.replace(
        'PythonOption authn.login "form basic"',
        f'PythonOption authn.login "form basic"\n    PythonOption authn.otp.file "{secrets_file}"',
    )
    apache = start_apache(misconfigured, mpm="prefork")
    assert request(apache.port, "/both/", auth=basic("alice", "wonderland")).status == 500
    assert "authn.otp.file: a second factor needs the sign-in form alone" in apache.error_log()


def test_a_malformed_form_is_no_500(start_apache: Callable[..., Apache], scratch: Path) -> None:
    apache = site(start_apache, scratch, "event")
    for path in ("/authn/login", "/authn/logout"):
        body = "&".join(f"f{i}=1" for i in range(30)).encode()
        reply = request(
            apache.port, path, method="POST", body=body,
            headers={"Content-Type": "application/x-www-form-urlencoded", "Accept": HTML},
        )  # fmt: skip
        assert reply.status in (400, 403), reply.status
    assert "Traceback" not in apache.error_log()
