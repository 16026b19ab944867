"""The ldap source through a real Apache (both MPMs) and a real slapd, with the shipped conf/.

The status-code matrix, groups, AUTHENTICATE_* and REMOTE_USER as PHP sees them (prefork:
mod_php is not thread-safe), TLS with the right and a wrong CA, and an outage: slapd stopped
answers 503 with a log line naming the host, and slapd restarted on the same port answers 200
again without restarting Apache.
"""

from __future__ import annotations

import itertools
import json
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from devkit.apache import Apache, apache_available, make_readable, run_user
from devkit.http import basic, request
from devkit.slapd import GROUPS, PEOPLE, SERVICE_DN, USERS, Slapd
from tests.conftest import need

pytestmark = [pytest.mark.apache, pytest.mark.slapd]

PHP_ENV = """<?php
header('Content-Type: application/json');
$out = ['REMOTE_USER' => $_SERVER['REMOTE_USER'] ?? null];
foreach ($_SERVER as $k => $v) { if (strpos($k, 'AUTHENTICATE_') === 0) { $out[$k] = $v; } }
echo json_encode($out);
"""


CGI_ENV = """#!/bin/sh
echo "Content-Type: text/plain"
echo
env | grep -E '^(AUTHENTICATE_|REMOTE_USER=)' | sort
"""


def _block(path: Path, options: dict[str, str], require: str = "Require valid-user") -> str:
    lines = [f'<Directory "{path}">', '    Include "${AUTHN_CONF}/authn-basic.conf"']
    lines += ["    Options +ExecCGI", "    AddHandler cgi-script .cgi"]
    lines += [f'    PythonOption {key} "{value}"' for key, value in options.items()]
    lines += [f"    {require}", "</Directory>"]
    return "\n".join(lines)


@pytest.fixture(scope="module", params=["prefork", "event"])
def site(
    request: pytest.FixtureRequest,
    slapd: Slapd,
    service_password_file: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Apache]:
    need(apache_available())
    mpm = request.param
    work = tmp_path_factory.mktemp(f"apache-ldap-{mpm}")
    docroot = work / "htdocs"
    base = {
        "authn.source": "ldap",
        "authn.ldap.url": f"{slapd.ldap_url}/dc=example,dc=org?uid,cn,mail?sub",
        "authn.ldap.bind_dn": SERVICE_DN,
        "authn.ldap.bind_password_file": str(service_password_file),
        "authn.ldap.group_base": GROUPS,
        "authn.ldap.timeout": "2",
    }
    ldaps = {**base, "authn.ldap.url": f"{slapd.ldaps_url}/dc=example,dc=org?uid"}
    blocks = {
        "plain": base,
        "outage": {**base, "authn.lockout": "off"},  # a test that floods wrong passwords
        "admins": {**base, "authn.require.group": "admins"},
        "top": {**base, "authn.require.group": f"'cn=top,{GROUPS}' nobody"},
        "mail": {**base, "authn.ldap.remote_user_attribute": "mail"},
        "tls": {**ldaps, "authn.ldap.ca_file": slapd.cafile},
        "badca": {**ldaps, "authn.ldap.ca_file": str(slapd.certs["wrong_ca"])},
        "noca": {**ldaps, "authn.ldap.ca_file": str(work / "no-such-ca.pem")},
        "nobindpw": {**base, "authn.ldap.bind_password_file": str(work / "no-such-password")},
        "both": {**base, "authn.source": "file ldap", "authn.file": str(work / "users")},
        # its own counters (a lock here must not leak into the other tests' locations)
        "lock3": {**base, "authn.lockout.threshold": "3", "authn.lockout.dir": str(work / "lockout")},
        "lock10": {**base, "authn.lockout.threshold": "10", "authn.lockout.dir": str(work / "lockout10")},
    }
    user, group = run_user()
    for folder in ("lockout", "lockout10"):
        (work / folder).mkdir()
        shutil.chown(work / folder, user, group)
    # the file knows alice with another password; bob is only in the directory
    subprocess.run(["htpasswd", "-cbB", str(work / "users"), "alice", "file-pw"], check=True)
    body = [f'DocumentRoot "{docroot}"', 'Include "${AUTHN_CONF}/authn.conf"']
    for name, options in blocks.items():
        folder = docroot / name
        folder.mkdir(parents=True)
        (folder / "index.html").write_text(f"{name} ok\n")
        (folder / "env.php").write_text(PHP_ENV)
        (folder / "env.cgi").write_text(CGI_ENV)
        (folder / "env.cgi").chmod(0o755)
        body.append(_block(folder, options))
    body.append(f'<Directory "{docroot}">\n    Require all granted\n</Directory>')
    body.append(f'Define AUTHN_STATUS_USERS "{work / "users"}"\nInclude "${{AUTHN_CONF}}/authn-status.conf"')
    make_readable(Path(slapd.cafile).parent)
    make_readable(service_password_file.parent)
    modules = ("cgid", "php8.2") if mpm == "prefork" else ("cgid",)
    server = f'ScriptSock "{work}/run/cgisock"'
    apache = Apache(work, "\n".join(body), mpm=mpm, modules=modules, server_conf=server)
    apache.start()
    try:
        yield apache
    finally:
        apache.stop()
        if request.session.testsfailed:
            print(apache.error_log())


def get(site: Apache, path: str, login: str | None = None, password: str | None = None) -> tuple[int, str]:
    auth = None if login is None else basic(login, password if password is not None else USERS[login])
    response = request(site.port, path, auth=auth, timeout=20)
    return response.status, response.body.decode(errors="replace")


@pytest.mark.parametrize(
    ("path", "login", "password", "status"),
    [
        ("/plain/", None, None, 401),
        ("/plain/", "alice", None, 200),
        ("/plain/", "jürgen", None, 200),  # non-ASCII login and password
        ("/plain/", "jsmith", None, 200),  # DN with an escaped comma
        ("/plain/", "carol", None, 200),  # the other OU
        ("/plain/", "alice", "wrong", 401),
        ("/plain/", "alice", "", 401),  # empty password: never an anonymous bind
        ("/plain/", "nobody", "x", 401),
        ("/plain/", "twin", None, 401),  # ambiguous
        ("/plain/", "*", "x", 401),  # filter injection
        ("/admins/", "alice", None, 200),
        ("/admins/", "bob", None, 401),
        ("/admins/", "alice", "wrong", 401),
        ("/top/", "alice", None, 200),  # nested, by DN
        ("/top/", "carol", None, 401),
        ("/tls/", "alice", None, 200),
        ("/tls/", "alice", "wrong", 401),
        ("/badca/", "alice", None, 503),  # fails closed
        ("/both/", "alice", "file-pw", 200),  # the file knows alice: it decides
        ("/both/", "alice", None, 401),  # ...and its no is final (AuthBasicProvider rule)
        ("/both/", "bob", None, 200),  # unknown to the file: the directory decides
    ],
)
def test_status_matrix(site: Apache, path: str, login: str | None, password: str | None, status: int) -> None:
    got, _ = get(site, path, login, password)
    assert got == status, site.error_log()[-3000:]


def test_wrong_ca_is_logged_clearly(site: Apache) -> None:
    offset = site.error_log_size()
    assert get(site, "/badca/", "alice")[0] == 503
    log = site.error_log_since(offset)
    assert "answering 503" in log and "TLS handshake failed" in log, log
    assert "authn.ldap.ca_file" in log


@pytest.mark.parametrize(("path", "option"), [("/noca/", "ca_file"), ("/nobindpw/", "bind_password_file")])
def test_a_file_an_option_names_that_cannot_be_read_is_one_clear_500(
    site: Apache, path: str, option: str
) -> None:
    """No traceback, no "ValueError: option error": one line naming the option, the path, the
    OS error and the fix, a denial line, and 500 (fail closed) for the right password too."""
    offset = site.error_log_size()
    assert get(site, path, "alice")[0] == 500
    assert get(site, path, "alice", "wrong")[0] == 500
    log = site.error_log_since(offset)
    assert f"answering 500: ldap: authn.ldap.{option}: cannot read " in log, log
    assert "No such file or directory; fix: " in log, log
    assert 'reason="file unreadable"' in log, log
    assert "Traceback" not in log and "ValueError" not in log, log


def test_attributes_reach_php(site: Apache) -> None:
    if site.mpm != "prefork":
        pytest.skip("mod_php runs with the prefork MPM only")
    status, body = get(site, "/plain/env.php", "jürgen")
    assert status == 200, body
    env = json.loads(body)
    assert env["REMOTE_USER"] == "jürgen"
    assert env["AUTHENTICATE_CN"] == "Jürgen Müller"
    assert env["AUTHENTICATE_MAIL"] == "juergen@example.org"
    assert env["AUTHENTICATE_UID"] == "jürgen"
    assert env["AUTHENTICATE_DN"] == f"uid=jürgen,{PEOPLE}"


def test_attributes_reach_cgi(site: Apache) -> None:
    status, body = get(site, "/mail/env.cgi", "jürgen")
    assert status == 200, body
    assert body.splitlines() == [
        "AUTHENTICATE_CN=Jürgen Müller",
        f"AUTHENTICATE_DN=uid=jürgen,{PEOPLE}",
        "AUTHENTICATE_MAIL=juergen@example.org",
        "AUTHENTICATE_UID=jürgen",
        "REMOTE_USER=juergen@example.org",
    ]


def test_remote_user_from_an_attribute(site: Apache) -> None:
    if site.mpm != "prefork":
        pytest.skip("mod_php runs with the prefork MPM only")
    status, body = get(site, "/mail/env.php", "alice")
    assert status == 200, body
    assert json.loads(body)["REMOTE_USER"] == "alice@example.org"


def test_outage_is_503_then_recovers_without_restarting_apache(site: Apache, slapd: Slapd) -> None:
    for _ in range(4):  # warm connections in several children
        assert get(site, "/admins/", "alice")[0] == 200
    offset = site.error_log_size()
    slapd.stop_server()
    try:
        # Never 401 in an outage. A password the credential cache verified within its TTL
        # keeps working (the documented choice); anything else is 503.
        assert get(site, "/plain/", "alice", "wrong")[0] == 503
        assert get(site, "/plain/", "alice")[0] in (200, 503)
        log = site.error_log_since(offset)
        assert "answering 503" in log and f"ldap://127.0.0.1:{slapd.port}" in log, log
        assert "Can't contact LDAP server" in log
    finally:
        slapd.start_server()
    deadline = time.monotonic() + 10
    statuses = []
    while time.monotonic() < deadline:
        statuses = [get(site, "/admins/", "alice")[0] for _ in range(6)]
        if statuses == [200] * 6:
            break
        time.sleep(0.2)
    assert statuses == [200] * 6, site.error_log_since(offset)
    assert get(site, "/plain/", "alice", "wrong")[0] == 401


def test_outage_under_load_only_5xx_then_200_no_crash(site: Apache, slapd: Slapd) -> None:
    """Adversarial: the directory goes down and comes back while clients keep asking, some
    with the right password, some with a wrong one. A wrong password is 503 while it is down
    and 401 after (never 500, never 200); the right one is 200, or 503 while it is down unless
    the credential cache verified it within its TTL; all 200 again after, without an Apache
    restart and with no crashed child."""
    offset = site.error_log_size()
    seen: list[tuple[str, bool, int]] = []
    phase = ["up"]
    stop = threading.Event()

    def client(right: bool) -> None:
        while not stop.is_set():
            status = get(site, "/outage/", "alice", None if right else "wrong")[0]
            seen.append((phase[0], right, status))

    threads = [threading.Thread(target=client, args=(i % 2 == 0,)) for i in range(4)]
    for t in threads:
        t.start()
    restarted = False
    try:
        time.sleep(0.5)
        phase[0] = "going down"
        slapd.stop_server()
        time.sleep(0.3)
        phase[0] = "down"
        time.sleep(1.0)
        phase[0] = "coming back"
        slapd.start_server()
        restarted = True
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not (seen and seen[-1][2] in (200, 401)):
            time.sleep(0.1)
        phase[0] = "back"
        time.sleep(0.5)
    finally:
        stop.set()
        for t in threads:
            t.join(30)
        if not restarted:
            slapd.start_server()
    assert {s for _, right, s in seen if right} <= {200, 503}
    assert {s for _, right, s in seen if not right} <= {401, 503}
    assert any(s == 503 for p, right, s in seen if p == "down" and not right)
    back = [(right, s) for p, right, s in seen if p == "back"]
    assert back and all(s == (200 if right else 401) for right, s in back)
    log = site.error_log_since(offset)
    for marker in ("Segmentation fault", "exit signal", "Traceback"):
        assert marker not in log


def test_status_page_shows_directory_hosts(site: Apache, slapd: Slapd) -> None:
    """The status page (per child) names each LDAP host the child connected to, up or down,
    and shows the child's credential cache."""
    want = re.compile(r'^authn_ldap_host_up\{[^}]*host="' + re.escape(slapd.ldap_url) + r'"[^}]*\} 1$', re.M)
    for _ in range(20):
        assert get(site, "/plain/", "alice")[0] == 200
        status, page = get(site, "/authn-status?format=prometheus", "alice", "file-pw")
        assert status == 200
        if want.search(page):
            break
    assert want.search(page), page
    # the credential cache of the same child: its size and hits
    assert re.search(r"^authn_cache_local_entries\{[^}]*\} [1-9]", page, re.M), page
    assert re.search(r"^authn_cache_hit_ratio\{[^}]*\} 0?\.?[0-9]", page, re.M), page


def test_lockout_counts_a_directory_login_whatever_its_case_or_spaces(site: Apache) -> None:
    """The directory matches uid without regard to case and spaces, so "CAROL", "Carol" and
    " carol" are the same account: three wrong guesses in any spelling lock it (threshold 3)."""
    statuses = [get(site, "/lock3/", login, "wrong")[0] for login in ("CAROL", "Carol", " carol ")]
    assert statuses == [401, 401, 401]
    assert get(site, "/lock3/", "carol", "wrong")[0] == 429
    assert get(site, "/lock3/", "CaRoL", USERS["carol"])[0] == 429  # locked, whatever the spelling


def _spellings(login: str) -> list[str]:
    """Spellings a directory takes for ``login`` (RFC 4518): case, full-width letters,
    ignored code points (soft hyphen, zero-width space), spaces of other kinds around it."""
    forms = [
        str.lower,
        str.upper,
        lambda c: chr(ord(c.lower()) + 0xFEE0),
        lambda c: chr(ord(c.upper()) + 0xFEE0),
    ]
    found = []
    for combo in itertools.product(range(4), repeat=len(login)):
        found.append("".join(forms[k](c) for k, c in zip(combo, login, strict=True)))
    extra = [
        f"{login[:2]}\u00ad{login[2:]}",
        f"{login[:1]}\u200b{login[1:]}",
        f"\u00a0{login}\u3000",
        f"  {login.upper()}  ",
        f"\u2003{login.title()}",
    ]
    return found[::4] + extra


def test_lockout_counts_a_directory_account_under_its_entry_whatever_the_spelling(site: Apache) -> None:
    """Every spelling the directory takes for one account counts under the entry's DN: 64
    spellings of dave's login, each with a wrong password, get at most 10 real checks."""
    same_account = [s for s in _spellings("dave") if get(site, "/plain/", s, USERS["dave"])[0] == 200]
    assert len(same_account) >= 40, same_account  # the directory really takes them as dave
    offset = site.error_log_size()
    statuses = [get(site, "/lock10/", s, f"guess{i}")[0] for i, s in enumerate(same_account)]
    log = site.error_log_since(offset)
    checks = len(re.findall(r'reason="bad password" uri="/lock10/"', log))
    assert checks <= 10 and statuses.count(401) == checks, (checks, statuses)
    assert statuses.count(429) == len(statuses) - checks
    assert get(site, "/lock10/", "dave", USERS["dave"])[0] == 429  # the account is locked here
