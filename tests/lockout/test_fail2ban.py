"""The shipped fail2ban filter, run by the real fail2ban-regex on lines our module wrote."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from authn.verdict import BANNED, COUNTED, Reason
from devkit.apache import REPO, Apache
from devkit.site import USERS, basic, denial_lines, get, site_body, write_users
from tests.conftest import need_program

pytestmark = pytest.mark.apache

FILTER = REPO / "conf" / "fail2ban" / "filter.d" / "authn.conf"


def test_fail2ban_regex_counts_guesses_by_the_client_field(
    start_apache: Callable[..., Apache], scratch: Path
) -> None:
    fail2ban_regex = need_program("fail2ban-regex", "fail2ban")
    users = scratch / "users"
    write_users(users, {**USERS, "carol": b"!disabled"})
    users.write_text(users.read_text().replace("carol:", "carol:!", 1))
    groups = scratch / "groups"
    groups.write_text("admins: admin\n")
    body = site_body(scratch / "www", users, "PythonOption authn.lockout.threshold 3")
    body += f"""
<Directory "{scratch}/www/admins">
    Include "${{AUTHN_CONF}}/authn-basic.conf"
    PythonOption authn.file "{users}"
    PythonOption authn.groupfile "{groups}"
    PythonOption authn.require.group admins
    Require valid-user
</Directory>
"""
    (scratch / "www" / "admins").mkdir(parents=True)
    (scratch / "www" / "admins" / "index.html").write_text("admins\n")
    apache = start_apache(body)
    port = apache.port
    sent = [  # (source address, header, expected status), each a line in the error log
        ("127.0.0.2", basic("alice", "guess1"), 401),  # bad password
        ("127.0.0.2", basic("alice", "guess2"), 401),
        ("127.0.0.2", basic("alice", "guess3"), 401),
        ("127.0.0.2", basic("alice", "guess4"), 429),  # locked out
        ("127.0.0.3", basic("nobody", "x"), 401),  # unknown user
        ("127.0.0.3", basic("carol", "x"), 401),  # account disabled
        # A user name that imitates the fields after it: counted for its sender only.
        (
            "127.0.0.4",
            basic('x" client=10.9.9.9 source=file reason="bad password" uri="', "x"),
            401,
        ),
    ]
    for source, header, status in sent:
        assert get(port, authorization=header, source=source).status == status
    # Not counted: the password was right but the group rule refused; an empty password
    # (no check ran: nothing was guessed).
    assert get(port, "/admins/", basic("alice", USERS["alice"]), source="127.0.0.5").status == 401
    assert get(port, authorization=basic("alice", ""), source="127.0.0.6").status == 401
    log = apache.error_log()
    assert len(denial_lines(log)) == len(sent) + 2
    result = subprocess.run(
        [fail2ban_regex, "--print-all-matched", "--raw", str(apache.error_log_path), str(FILTER)],
        capture_output=True,
        text=True,
        check=True,
    )
    assert f"{len(sent)} matched" in result.stdout, result.stdout
    missed = result.stdout.split("Missed line(s):", 1)[1]
    assert "not in a required group" in missed and 'reason="empty password"' in missed
    assert missed.count("authn: denied") == 2
    ips = subprocess.run(
        [fail2ban_regex, "--out", "ip", str(apache.error_log_path), str(FILTER)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert sorted(ips) == sorted(source for source, _, _ in sent)


def test_filter_matches_exactly_the_reasons_counted_or_locked() -> None:
    """The denial reasons are a closed list; the filter bans for exactly those the lockout
    counts, plus the refusals of an address that is locked out already."""
    text = FILTER.read_text()
    found = re.search(r'reason="\(\?:([^)]*)\)"', text)
    assert found, "no reason alternatives in the filter"
    assert set(found.group(1).split("|")) == {reason.value for reason in BANNED}
    assert BANNED == COUNTED | {Reason.LOCKED_OUT}
    assert set(Reason) - BANNED == {
        Reason.EMPTY_PASSWORD,
        Reason.NOT_IN_GROUP,
        Reason.NOT_ENROLLED,
        Reason.FILE_UNREADABLE,
        Reason.DIRECTORY_DOWN,
    }


def test_ipv6_clients_are_banned_by_their_own_address(tmp_path: Path) -> None:
    """An IPv6 client whose source port has four digits or fewer must not have the port read
    as one more group of its address (it would escape the ban and frame a neighbour)."""
    fail2ban_regex = need_program("fail2ban-regex", "fail2ban")
    prefix = "[Thu Dec 03 08:00:00.000000 2026] [:error] [pid 1:tid 2]"
    denial = 'authn: denied user="alice" client={ip} source=file reason="bad password" uri="/private/"'
    cases = [("::1", 8080), ("::1", 1234), ("2001:db8::5", 1234), ("2001:db8::7", 45678), ("192.0.2.9", 80)]
    log = tmp_path / "error.log"
    log.write_text("".join(f"{prefix} [client {ip}:{port}] {denial.format(ip=ip)}\n" for ip, port in cases))
    ips = subprocess.run(
        [fail2ban_regex, "--out", "ip", str(log), str(FILTER)], capture_output=True, text=True, check=True
    ).stdout.split()
    assert sorted(ips) == sorted(ip for ip, _ in cases)
