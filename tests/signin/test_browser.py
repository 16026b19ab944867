"""Sign-in in a real browser (Debian's Chromium, headless, JavaScript off): sign in, a static
page and a PHP page that prints REMOTE_USER, sign out, the back button, an idle session, a
TOTP code. Under CI=true a missing browser fails the run."""

from __future__ import annotations

import io
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from devkit.apache import Apache, make_readable, run_user
from devkit.browser import chromium_available, remove_profile, start_chromium
from devkit.site import write_users
from tests.conftest import need

pytestmark = pytest.mark.apache

PHP_USER = (
    "<?php echo 'REMOTE_USER=', $_SERVER['REMOTE_USER'] ?? '-', ' AUTH_TYPE=', $_SERVER['AUTH_TYPE'] ?? '-';"
)


@pytest.fixture
def chrome(tmp_path: Path) -> Iterator[Any]:
    need(chromium_available())
    profile = tmp_path / "profile"
    driver = start_chromium(str(profile), javascript=False)
    try:
        yield driver
    finally:
        driver.quit()
        remove_profile(str(profile))


def site(start_apache: Callable[..., Apache], scratch: Path, extra: str = "", mpm: str = "prefork") -> Apache:
    users = scratch / "users"
    write_users(users, {"alice": b"wonderland", "bob": b"builder"}, cost=4)
    root = scratch / "www"
    (root / "private").mkdir(parents=True)
    (root / "private" / "index.html").write_text(
        "<!DOCTYPE html><title>Private</title><p id=content>secret page</p>"
    )
    (root / "private" / "whoami.php").write_text(PHP_USER)
    lockout = scratch / "lockout"
    lockout.mkdir(mode=0o700)
    import grp
    import pwd

    user, group = run_user()
    os.chown(lockout, pwd.getpwnam(user).pw_uid, grp.getgrnam(group).gr_gid)
    make_readable(scratch)
    body = f"""
Include "${{AUTHN_CONF}}/authn.conf"
PythonOption authn.lockout.dir "{lockout}"
Include "${{AUTHN_CONF}}/authn-login.conf"
DocumentRoot "{root}"
<Directory "{root}/private">
    Include "${{AUTHN_CONF}}/authn-form.conf"
    AuthName "Team wiki"
    PythonOption authn.file "{users}"
    {extra}
    Require valid-user
</Directory>
"""
    modules = ("php8.2",) if mpm == "prefork" else ()  # mod_php runs with the prefork MPM only
    return start_apache(body, mpm=mpm, modules=modules)


def _sign_in(chrome: Any, user: str, password: str, code: str | None = None) -> None:
    from selenium.webdriver.common.by import By

    assert chrome.title.startswith("Sign in"), chrome.page_source
    name = chrome.find_element(By.ID, "authn-user")
    # the cursor starts where typing goes: the user name, or the password after a failure
    expected = "authn-password" if name.get_attribute("value") else "authn-user"
    assert chrome.switch_to.active_element.get_attribute("id") == expected
    name.clear()
    # every input has its label (screen readers read it)
    for input_id in ("authn-user", "authn-password"):
        assert chrome.find_element(By.CSS_SELECTOR, f'label[for="{input_id}"]').text
    name.send_keys(user)
    chrome.find_element(By.ID, "authn-password").send_keys(password)
    if code is not None:
        chrome.find_element(By.ID, "authn-code").send_keys(code)
    before = chrome.find_element(By.TAG_NAME, "html")
    chrome.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    _wait_for_new_page(chrome, before)


def _wait_for_new_page(chrome: Any, old_root: Any) -> None:
    """Wait until the click's navigation replaced the page (POST, 303, GET)."""
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.support.ui import WebDriverWait

    def replaced(_: Any) -> bool:
        try:
            old_root.tag_name  # noqa: B018 - raises once the old page is gone
        except WebDriverException:  # stale, or "node does not belong to the document"
            return True
        return False

    WebDriverWait(chrome, 10).until(replaced)


@pytest.mark.parametrize("mpm", ["prefork", "event"])
def test_sign_in_pages_sign_out_and_back(
    chrome: Any, start_apache: Callable[..., Apache], scratch: Path, mpm: str
) -> None:
    from selenium.webdriver.common.by import By

    apache = site(start_apache, scratch, mpm=mpm)
    chrome.get(f"{apache.url}/private/index.html")
    assert "/authn/login" in chrome.current_url and "Team wiki" in chrome.title
    _sign_in(chrome, "alice", "not her password")
    assert "Wrong user name or password." in chrome.find_element(By.CSS_SELECTOR, "[role=alert]").text
    _sign_in(chrome, "alice", "wonderland")
    assert chrome.current_url == f"{apache.url}/private/index.html", chrome.page_source[-600:]
    assert chrome.find_element(By.ID, "content").text == "secret page"
    if mpm == "prefork":
        chrome.get(f"{apache.url}/private/whoami.php")
        assert "REMOTE_USER=alice AUTH_TYPE=form" in chrome.page_source
    cookie = chrome.get_cookie("authn_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Lax" and "wonderland" not in cookie["value"]
    chrome.get(f"{apache.url}/authn/logout")
    before = chrome.find_element(By.TAG_NAME, "html")
    chrome.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    _wait_for_new_page(chrome, before)
    assert "You are signed out" in chrome.page_source
    assert chrome.get_cookie("authn_session") is None
    chrome.back()  # the sign-out question
    chrome.back()  # the last protected page: not from the cache, the server asks for a sign-in
    assert chrome.title.startswith("Sign in"), chrome.page_source


def test_idle_session_asks_again(chrome: Any, start_apache: Callable[..., Apache], scratch: Path) -> None:
    apache = site(start_apache, scratch, "PythonOption authn.session.idle 2", mpm="event")
    chrome.get(f"{apache.url}/private/index.html")
    _sign_in(chrome, "bob", "builder")
    assert "secret page" in chrome.page_source
    time.sleep(2.5)
    chrome.get(f"{apache.url}/private/index.html")
    assert chrome.title.startswith("Sign in")


def test_totp_sign_in(chrome: Any, start_apache: Callable[..., Apache], scratch: Path) -> None:
    import pyotp

    from authn.cli.otp import enroll

    secrets_file = scratch / "otp"
    enroll(str(secrets_file), "alice", "test", out=io.StringIO())
    secrets_file.chmod(0o644)
    secret = secrets_file.read_text().split(":")[1]
    apache = site(start_apache, scratch, f'PythonOption authn.otp.file "{secrets_file}"')
    chrome.get(f"{apache.url}/private/whoami.php")
    _sign_in(chrome, "alice", "wonderland", code=pyotp.TOTP(secret).now())
    assert "REMOTE_USER=alice" in chrome.page_source
