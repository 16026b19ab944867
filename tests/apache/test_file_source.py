"""The file source through a real Apache, on prefork (with mod_php) and event."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from authn import hashes
from devkit.http import basic, request
from tests.apache.conftest import USERS, Site

CRASH_MARKERS = ("Segmentation fault", "exit signal", "Traceback", "PythonDebug")


def get(site: Site, path: str, auth: bytes | None = None, **kw: object) -> object:
    return request(site.port, path, auth=auth, **kw)  # type: ignore[arg-type]


def assert_no_crash(site: Site, offset: int) -> None:
    log = site.apache.error_log_since(offset)
    for marker in CRASH_MARKERS:
        assert marker not in log, log


@pytest.mark.parametrize("area", ["/dir/", "/loc/", "/ht/", "/proxy/"])
def test_status_matrix(site: Site, area: str, log_offset: int) -> None:
    r = request(site.port, area)
    assert r.status == 401
    assert r.header("WWW-Authenticate") == 'Basic realm="authn test"' or area == "/ht/"
    assert request(site.port, area, auth=basic("alice", "wonderland")).status == 200
    assert request(site.port, area, auth=basic("alice", "wrong")).status == 401
    assert request(site.port, area, auth=basic("nobody", "wonderland")).status == 401
    log = site.apache.error_log_since(log_offset)
    assert 'authn: denied user="alice"' in log and 'reason="bad password"' in log
    assert 'authn: denied user="nobody"' in log and 'reason="unknown user"' in log
    assert "wonderland" not in log and "wrong" not in log  # never a password in the log
    assert_no_crash(site, log_offset)


def test_location_serves_files_and_proxy_reaches_backend(site: Site) -> None:
    # mod_python's 404 for handlers inside <Location> (APACHE-NOTES #9) must not happen:
    # our handlers stand at server level and the <Location> only holds options.
    r = request(site.port, "/loc/file.txt", auth=basic("alice", "wonderland"))
    assert r.status == 200 and r.body.startswith(b"0123")
    r = request(site.port, "/proxy/some/path", auth=basic("bob", "builder"))
    assert r.status == 200 and b"backend saw /some/path" in r.body


@pytest.mark.parametrize(("user", "password", "scheme"), USERS)
def test_every_scheme_grants(site: Site, user: bytes, password: bytes, scheme: str) -> None:
    assert request(site.port, "/dir/", auth=basic(user, password)).status == 200, scheme
    assert request(site.port, "/dir/", auth=basic(user, password + b"x")).status == 401 or (
        scheme == "bcrypt" and len(password) >= 72
    )


def test_empty_password_never_grants(site: Site) -> None:
    for user in (b"alice", b"nohash", b"plain", b"nobody"):
        assert request(site.port, "/dir/", auth=basic(user, b"")).status == 401


def test_plaintext_and_duplicate_lines_like_apache(site: Site) -> None:
    assert request(site.port, "/dir/", auth=basic("plain", "secret")).status == 401
    assert request(site.port, "/dir/", auth=basic("alice", "second-line")).status == 401


def test_native_and_ours_agree_on_the_same_file(site: Site) -> None:
    cases = [(u, p) for u, p, _ in USERS]
    cases += [(u, p + b"!") for u, p, _ in USERS]
    cases += [(b"alice", b"second-line"), (b"plain", b"secret"), (b"nohash", b"x"), (b"longpw", b"L" * 72),
              (b"longpw", b"L" * 71), ("jörg".encode("latin-1"), "pässwörd".encode()),
              (b"hidden", b"h-pass"), (b"hidden2", b"h2-pass"), (b"joined", b"j-pass")]  # fmt: skip
    assert request(site.port, "/dir/", auth=basic("joined", "j-pass")).status == 200
    for user, password in cases:
        ours = request(site.port, "/dir/", auth=basic(user, password)).status
        native = request(site.port, "/native/", auth=basic(user, password)).status
        assert ours == native, (user, password, ours, native)


def test_remote_user_and_auth_type_reach_php_and_cgi(site: Site) -> None:
    auth = basic("bob", "builder")
    r = request(site.port, "/dir/env.cgi", auth=auth)
    assert r.status == 200 and b"REMOTE_USER=bob AUTH_TYPE=Basic" in r.body
    if site.mpm == "prefork":
        for path in ("/dir/env.php", "/loc/env.php", "/ht/env.php"):
            r = request(site.port, path, auth=auth)
            assert r.status == 200 and r.body == b"REMOTE_USER=bob AUTH_TYPE=Basic\n", path
    r = request(site.port, "/dir/env.cgi", auth=basic("jörg", "pässwörd"))
    assert "REMOTE_USER=jörg ".encode() in r.body


def test_head_conditional_range_and_index(site: Site) -> None:
    auth = basic("alice", "wonderland")
    head = request(site.port, "/dir/file.txt", method="HEAD", auth=auth)
    assert head.status == 200 and head.body == b"" and head.header("Content-Length") == "1000"
    etag = head.header("ETag")
    assert etag
    assert request(site.port, "/dir/file.txt", auth=auth, headers={"If-None-Match": etag}).status == 304
    assert request(site.port, "/dir/file.txt", headers={"If-None-Match": etag}).status == 401
    r = request(site.port, "/dir/file.txt", auth=auth, headers={"Range": "bytes=10-19"})
    assert r.status == 206 and r.body == b"0123456789"
    r = request(site.port, "/dir/", auth=auth)
    assert r.status == 200 and r.body == b"<p>dir index</p>\n"


def test_group_rule(site: Site, log_offset: int) -> None:
    assert request(site.port, "/admin/", auth=basic("alice", "wonderland")).status == 200
    assert request(site.port, "/admin/", auth=basic("bob", "builder")).status == 200  # 'web team'
    r = request(site.port, "/admin/", auth=basic("carol", "c-pass"))
    assert r.status == 401 and r.header("WWW-Authenticate")
    assert 'user="carol"' in site.apache.error_log_since(log_offset)
    assert 'reason="not in a required group"' in site.apache.error_log_since(log_offset)


BAD_HEADERS: list[tuple[str, bytes]] = [
    ("other scheme", b"Bearer x"),
    ("invalid base64", b"Basic !!!not-base64!!!"),
    ("no colon", b"Basic " + __import__("base64").b64encode(b"alicewonderland")),
    ("NUL in user", basic(b"ali\0ce", b"wonderland")),
    ("NUL in password", basic(b"alice", b"wonder\0land")),
    ("CR LF in user", basic(b"alice\r\nX-Evil: 1", b"wonderland")),
    ("8 KB user", basic(b"u" * 8192, b"x")),
    ("not UTF-8", basic(b"\xff\xfe\xc3(", b"\xff")),
    ("colon in user", basic(b"ali:ce", b"wonderland")),
    ("empty", b""),
    ("only scheme", b"Basic"),
    ("raw LF", b"Basic YWxpY2U6\nd29uZGVybGFuZA=="),
]  # fmt: skip


@pytest.mark.parametrize(("name", "header"), BAD_HEADERS, ids=[n for n, _ in BAD_HEADERS])
def test_bad_authorization_headers(site: Site, name: str, header: bytes, log_offset: int) -> None:
    r = request(site.port, "/dir/", auth=header)
    assert r.status in (400, 401), (name, r.status)
    if r.status == 401:
        assert r.header("WWW-Authenticate") == 'Basic realm="authn test"'
    assert_no_crash(site, log_offset)
    assert request(site.port, "/dir/", auth=basic("alice", "wonderland")).status == 200


def test_edits_apply_without_restart_within_a_second(site: Site) -> None:
    original = site.users_file.read_bytes()
    try:
        new = original + b"newbie:" + hashes.make_hash(b"fresh", "apr1").encode() + b"\n"
        tmp = site.users_file.with_suffix(".new")
        tmp.write_bytes(new)
        os.replace(tmp, site.users_file)
        replaced = time.monotonic()
        while request(site.port, "/dir/", auth=basic("newbie", "fresh")).status != 200:
            assert time.monotonic() < replaced + 1.0, "edit not applied within a second"
            time.sleep(0.05)
        # One second after the edit, every child has it (requests land on several children).
        time.sleep(max(0.0, replaced + 1.0 - time.monotonic()))
        for _ in range(12):
            assert request(site.port, "/dir/", auth=basic("newbie", "fresh")).status == 200
    finally:
        tmp = site.users_file.with_suffix(".new")
        tmp.write_bytes(original)
        os.replace(tmp, site.users_file)


@pytest.mark.parametrize(
    ("area", "fragment"),
    [
        (
            "/badopt/",
            "authn: configuration error: authn.soruce: unknown option; did you mean authn.source?",
        ),
        ("/missing/", "no-such-file: No such file or directory (errno 2)"),
    ],
)
def test_broken_config_fails_closed_with_a_log_line(site: Site, area: str, fragment: str,
                                                     log_offset: int) -> None:  # fmt: skip
    r = request(site.port, area, auth=basic("alice", "wonderland"))
    assert r.status == 500
    assert b"Traceback" not in r.body
    assert fragment in site.apache.error_log_since(log_offset)
    assert request(site.port, area).status == 401  # no credentials: the challenge as usual


def test_unreadable_file_is_500_naming_path_and_error(site: Site, log_offset: int) -> None:
    if os.geteuid() != 0:
        pytest.skip("Apache runs as ourselves, so our own 0600 file is readable")
    r = request(site.port, "/unreadable/", auth=basic("alice", "wonderland"))
    assert r.status == 500
    log = site.apache.error_log_since(log_offset)
    assert f"{Path(site.root) / 'unreadable-users'}: Permission denied (errno 13)" in log


def test_a_file_made_unreadable_after_loading_fails_closed(site: Site) -> None:
    """chmod changes no mtime or inode, but the change time: the next look at the file
    re-reads it and fails closed, as native Apache does (it reads on every request)."""
    if os.geteuid() != 0:
        pytest.skip("Apache runs as ourselves, so our own 0600 file is readable")
    path = Path(site.root) / "unreadable-users"

    def settles_on(status: int) -> bool:
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            if request(site.port, "/unreadable/", auth=basic("alice", "wonderland")).status == status:
                return True
            time.sleep(0.1)
        return False

    try:
        path.chmod(0o644)
        assert settles_on(200)
        path.chmod(0o600)
        assert settles_on(500)
    finally:
        path.chmod(0o600)


def test_open_area_needs_nothing(site: Site) -> None:
    assert request(site.port, "/open/").status == 200
