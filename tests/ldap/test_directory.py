"""The ldap source against a real slapd: search-then-bind, direct bind, escaping (checked by
spying on the real python-ldap calls), TLS, failover, reconnect, groups."""

from __future__ import annotations

import logging
import shutil
import threading
from collections.abc import Callable
from typing import Any

import ldap
import ldap.dn
import ldap.ldapobject
import pytest

from authn.errors import SourceUnavailable
from authn.sources.ldap.directory import Directory
from authn.verdict import Outcome, Reason
from devkit.apache import free_port
from devkit.slapd import GROUPS, PEOPLE, SERVICE_DN, SERVICE_PASSWORD, STAFF, USERS, Slapd

pytestmark = pytest.mark.slapd

MakeDirectory = Callable[..., Directory]


def pw(login: str) -> bytes:
    return USERS[login].encode("utf-8")


def wire(login: str) -> str:
    """A login as it arrives from the network: its UTF-8 bytes read as Latin-1."""
    return login.encode("utf-8").decode("latin-1")


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, tuple[Any, ...]]]:
    """Every search and bind python-ldap sends, recorded by wrapping the real methods."""
    seen: list[tuple[str, tuple[Any, ...]]] = []
    cls = ldap.ldapobject.SimpleLDAPObject
    for name in ("search_ext_s", "simple_bind_s"):
        real = getattr(cls, name)

        def spy(self: Any, *args: Any, _real: Any = real, _name: str = name, **kw: Any) -> Any:
            seen.append((_name, args))
            return _real(self, *args, **kw)

        monkeypatch.setattr(cls, name, spy)
    return seen


# --- the status matrix of the source ---


@pytest.mark.parametrize("login", ["alice", "carol", "jsmith", "jürgen"])
def test_right_password_is_granted(make_directory: MakeDirectory, login: str) -> None:
    verdict = make_directory().check(wire(login), pw(login))
    assert verdict.outcome is Outcome.GRANTED, verdict
    assert verdict.user == wire(login)


def test_attributes_and_dn_come_with_the_verdict(make_directory: MakeDirectory) -> None:
    verdict = make_directory(attributes="sn").check(wire("jürgen"), pw("jürgen"))
    assert verdict.attrs["cn"] == ("Jürgen Müller",)
    assert verdict.attrs["mail"] == ("juergen@example.org",)
    assert verdict.attrs["sn"] == ("Müller",)
    assert verdict.attrs["dn"] == (f"uid=jürgen,{PEOPLE}",)


def test_wrong_password_is_denied(make_directory: MakeDirectory) -> None:
    verdict = make_directory().check("alice", b"nope")
    assert verdict.outcome is Outcome.DENIED
    assert verdict.reason == "bad password"


def test_unknown_user(make_directory: MakeDirectory) -> None:
    assert make_directory().check("nobody", b"x").outcome is Outcome.UNKNOWN


def test_unknown_user_costs_the_calls_of_a_wrong_password(
    make_directory: MakeDirectory, calls: list[tuple[str, tuple[Any, ...]]]
) -> None:
    """No user enumeration by timing: an unknown user gets the same search and the same
    failed bind as a wrong password; the guessed password is not sent for that bind."""
    directory = make_directory()
    assert directory.check("alice", pw("alice")).granted  # warm connections
    calls.clear()
    assert directory.check("alice", b"nope").outcome is Outcome.DENIED
    wrong = [name for name, _ in calls]
    calls.clear()
    assert directory.check("nobody", b"guess").outcome is Outcome.UNKNOWN
    unknown = [name for name, _ in calls]
    assert unknown == wrong == ["search_ext_s", "simple_bind_s"], calls
    dummy_dn, sent = calls[1][1][:2]
    assert dummy_dn.startswith("cn=authn-no-such-user,") and sent != b"guess"


def test_a_uid_present_twice_is_ambiguous_and_unknown(
    make_directory: MakeDirectory, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="authn"):
        verdict = make_directory().check("twin", pw("twin"))
    assert verdict.outcome is Outcome.UNKNOWN
    assert "ambiguous" in caplog.text and '"twin"' in caplog.text


def test_continuation_references_are_skipped(
    make_directory: MakeDirectory, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[list[tuple[Any, Any]]] = []
    real = ldap.ldapobject.SimpleLDAPObject.search_ext_s

    def spy(self: Any, *args: Any, **kw: Any) -> Any:
        result = real(self, *args, **kw)
        seen.append(result)
        return result

    monkeypatch.setattr(ldap.ldapobject.SimpleLDAPObject, "search_ext_s", spy)
    assert make_directory().check("alice", pw("alice")).granted
    assert None in [dn for dn, _ in seen[-1]]  # the server did send a reference


def test_one_ou_makes_the_twin_unique(make_directory: MakeDirectory, slapd: Slapd) -> None:
    directory = make_directory(f"{slapd.ldap_url}/{STAFF}?uid")
    assert directory.check("twin", pw("twin")).outcome is Outcome.GRANTED


def test_empty_password_is_refused_before_any_bind(
    make_directory: MakeDirectory, calls: list[tuple[str, tuple[Any, ...]]]
) -> None:
    verdict = make_directory().check("alice", b"")
    assert verdict.outcome is Outcome.DENIED and verdict.reason == "empty password"
    assert calls == []


def test_filter_is_escaped_rfc4515(
    make_directory: MakeDirectory, calls: list[tuple[str, tuple[Any, ...]]]
) -> None:
    directory = make_directory()
    assert directory.check("*", b"x").outcome is Outcome.UNKNOWN
    assert directory.check("alice)(uid=*", b"x").outcome is Outcome.UNKNOWN
    assert directory.check("a\\b", b"x").outcome is Outcome.UNKNOWN
    filters = [args[2] for name, args in calls if name == "search_ext_s"]
    assert filters == [
        "(&(objectClass=*)(uid=\\2a))",
        "(&(objectClass=*)(uid=alice\\29\\28uid=\\2a))",
        "(&(objectClass=*)(uid=a\\5cb))",
    ]
    # unknown users: only the equal-timing bind, to a DN that holds nothing of the input
    user_binds = [c[1][0] for c in calls if c[0] == "simple_bind_s" and c[1][0] != SERVICE_DN]
    assert user_binds and all(dn.startswith("cn=authn-no-such-user,") for dn in user_binds)


def test_bind_uses_the_dn_found_with_its_escapes(
    make_directory: MakeDirectory, calls: list[tuple[str, tuple[Any, ...]]]
) -> None:
    verdict = make_directory().check("jsmith", pw("jsmith"))
    assert verdict.granted
    # the DN exactly as the server returned it (slapd writes the comma as \2C)
    (dn,) = verdict.attrs["dn"]
    assert ldap.dn.str2dn(dn)[0] == [("cn", "Smith, John", 1)]
    user_binds = [args for name, args in calls if name == "simple_bind_s" and args[0] != SERVICE_DN]
    assert user_binds == [(dn, b"smith-pw")]


def test_non_ascii_password_is_sent_as_the_clients_bytes(
    make_directory: MakeDirectory, calls: list[tuple[str, tuple[Any, ...]]]
) -> None:
    assert make_directory().check(wire("jürgen"), pw("jürgen")).granted
    assert calls[-1] == ("simple_bind_s", (f"uid=jürgen,{PEOPLE}", "pässwörd€".encode()))
    latin1 = "pässwörd€".encode("latin-1", "replace")
    assert not make_directory().check(wire("jürgen"), latin1).granted


# --- direct bind from a template ---


def test_direct_bind_template_escapes_the_dn(
    make_directory: MakeDirectory, calls: list[tuple[str, tuple[Any, ...]]], slapd: Slapd
) -> None:
    directory = make_directory(service=False, bind_template=f"cn=%s,{PEOPLE}")
    verdict = directory.check("Smith, John", pw("jsmith"))
    assert verdict.granted, verdict
    assert verdict.attrs["mail"] == ("jsmith@example.org",)
    binds = [args for name, args in calls if name == "simple_bind_s" and args[0]]
    assert binds == [(f"cn=Smith\\, John,{PEOPLE}", b"smith-pw")]
    assert not directory.check("Smith, John", b"wrong").granted
    assert directory.check("Smith, John", b"").reason == "empty password"


def test_direct_bind_without_a_dn_template_refuses_other_domains(
    make_directory: MakeDirectory,
) -> None:
    directory = make_directory(service=False, bind_template="%s@example.org")
    assert directory.check("alice@evil.example", b"x").outcome is Outcome.UNKNOWN


# --- connections ---


def test_service_connection_is_never_left_bound_as_the_user(
    make_directory: MakeDirectory,
) -> None:
    directory = make_directory()
    assert directory.check("alice", pw("alice")).granted
    slot = directory.pool.borrow()
    try:
        assert slot.service.whoami_s() == f"dn:{SERVICE_DN}"
        assert slot.binder.whoami_s() == f"dn:uid=alice,{PEOPLE}"
    finally:
        directory.pool.give_back(slot)


def test_connections_are_reused(
    make_directory: MakeDirectory, calls: list[tuple[str, tuple[Any, ...]]]
) -> None:
    directory = make_directory()
    for _ in range(5):
        assert directory.check("alice", pw("alice")).granted
    service_binds = [c for c in calls if c[0] == "simple_bind_s" and c[1][0] == SERVICE_DN]
    assert len(service_binds) == 2  # the service connection and the bind connection, once


def test_threads_share_the_pool_safely(make_directory: MakeDirectory) -> None:
    directory = make_directory()
    results: list[bool] = []

    def work(login: str) -> None:
        for _ in range(20):
            results.append(directory.check(wire(login), pw(login)).granted)
            results.append(not directory.check(wire(login), b"bad").granted)

    threads = [threading.Thread(target=work, args=(u,)) for u in ("alice", "bob", "jürgen") * 2]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 240 and all(results)
    assert len(directory.pool._idle) <= directory.pool.keep


def test_failover_to_the_next_host(make_directory: MakeDirectory, slapd: Slapd) -> None:
    dead = free_port()
    directory = make_directory(f"ldap://127.0.0.1:{dead} 127.0.0.1:{slapd.port}/dc=example,dc=org")
    assert directory.check("alice", pw("alice")).granted


def test_no_host_answers_is_unavailable_never_a_denial(make_directory: MakeDirectory) -> None:
    a, b = free_port(), free_port()
    directory = make_directory(f"ldap://127.0.0.1:{a} 127.0.0.1:{b}/dc=example,dc=org", timeout="1")
    with pytest.raises(SourceUnavailable) as info:
        directory.check("alice", pw("alice"))
    assert info.value.status == 503
    message = str(info.value)
    assert f"ldap://127.0.0.1:{a}" in message and f"ldap://127.0.0.1:{b}" in message
    assert "Can't contact LDAP server" in message


def test_restart_is_reconnected_transparently(make_directory: MakeDirectory, slapd: Slapd) -> None:
    directory = make_directory()
    assert directory.check("alice", pw("alice")).granted
    slapd.stop_server()
    try:
        with pytest.raises(SourceUnavailable):
            directory.check("alice", pw("alice"))
    finally:
        slapd.start_server()
    assert directory.check("alice", pw("alice")).granted
    assert directory.check("alice", b"bad").outcome is Outcome.DENIED


def test_wrong_service_password_is_unavailable(make_directory: MakeDirectory, tmp_path: Any) -> None:
    bad = tmp_path / "pw"
    bad.write_text("wrong\n")
    directory = make_directory(bind_password_file=str(bad))
    with pytest.raises(SourceUnavailable, match=r"service bind as authn\.ldap\.bind_dn refused"):
        directory.check("alice", pw("alice"))


def test_missing_base_dn_is_unavailable(make_directory: MakeDirectory, slapd: Slapd) -> None:
    directory = make_directory(f"{slapd.ldap_url}/ou=nowhere,dc=example,dc=org")
    with pytest.raises(SourceUnavailable, match=r"does not exist; check authn\.ldap\.url"):
        directory.check("alice", pw("alice"))


# --- TLS ---


def test_ldaps_with_the_ca_file(make_directory: MakeDirectory, slapd: Slapd) -> None:
    directory = make_directory(f"{slapd.ldaps_url}/dc=example,dc=org", ca_file=slapd.cafile)
    assert directory.check("alice", pw("alice")).granted


def test_starttls_with_the_ca_file(make_directory: MakeDirectory, slapd: Slapd) -> None:
    directory = make_directory(starttls="on", ca_file=slapd.cafile)
    assert directory.check("alice", pw("alice")).granted
    slot = directory.pool.borrow()
    try:
        assert slot.service.get_option(ldap.OPT_X_TLS_REQUIRE_CERT) == ldap.OPT_X_TLS_DEMAND
    finally:
        directory.pool.give_back(slot)


@pytest.mark.parametrize("mode", ["ldaps", "starttls"])
def test_wrong_ca_fails_closed(make_directory: MakeDirectory, slapd: Slapd, mode: str) -> None:
    wrong = str(slapd.certs["wrong_ca"])
    if mode == "ldaps":
        directory = make_directory(f"{slapd.ldaps_url}/dc=example,dc=org", ca_file=wrong)
    else:
        directory = make_directory(starttls="on", ca_file=wrong)
    with pytest.raises(SourceUnavailable) as info:
        directory.check("alice", pw("alice"))
    assert info.value.status == 503
    assert "TLS handshake failed" in str(info.value), str(info.value)
    assert f"authn.ldap.ca_file ({wrong})" in str(info.value)


@pytest.mark.parametrize("option", ["ca_file", "bind_password_file"])
def test_a_file_that_cannot_be_read_fails_closed_then_recovers(
    make_directory: MakeDirectory, slapd: Slapd, tmp_path: Any, option: str
) -> None:
    """A missing CA or bind password file: 500 naming the option, the path, the OS error
    and the fix (never a bare "ValueError: option error"); once the file is there, the next
    check works without a new Directory."""
    missing = tmp_path / "missing"
    url = f"{slapd.ldaps_url}/dc=example,dc=org"
    if option == "ca_file":
        directory = make_directory(url, ca_file=str(missing))
    else:
        directory = make_directory(url, ca_file=slapd.cafile, bind_password_file=str(missing))
    for _ in range(2):
        with pytest.raises(SourceUnavailable) as info:
            directory.check("alice", pw("alice"))
        assert info.value.status == 500 and info.value.reason is Reason.FILE_UNREADABLE
        text = str(info.value)
        assert f"authn.ldap.{option}: cannot read {missing}: No such file or directory; fix: " in text
    if option == "ca_file":
        shutil.copy(slapd.cafile, missing)
    else:
        missing.write_text(SERVICE_PASSWORD + "\n")
    assert directory.check("alice", pw("alice")).granted


def test_a_ca_file_removed_after_start_is_a_clear_500(
    make_directory: MakeDirectory, slapd: Slapd, tmp_path: Any
) -> None:
    ca = tmp_path / "ca.pem"
    shutil.copy(slapd.cafile, ca)
    directory = make_directory(f"{slapd.ldaps_url}/dc=example,dc=org", ca_file=str(ca))
    ca.unlink()  # read once at start; the next new connection needs it again
    with pytest.raises(SourceUnavailable) as info:
        directory.check("alice", pw("alice"))
    assert info.value.status == 500, info.value
    assert f"authn.ldap.ca_file: cannot read {ca}" in str(info.value)


# --- groups ---


def granted(directory: Directory, login: str) -> Any:
    verdict = directory.check(wire(login), pw(login))
    assert verdict.granted, verdict
    return verdict


@pytest.mark.parametrize(
    ("login", "group", "expected"),
    [
        ("alice", "admins", True),  # groupOfNames (also memberOf)
        ("alice", f"cn=admins,{GROUPS}", True),  # by DN
        ("alice", "CN=Admins, OU=Groups, DC=example, DC=org", True),  # DN compared normalized
        ("carol", "staff", True),  # groupOfUniqueNames
        ("jsmith", "staff", True),  # a member DN with an escaped comma
        ("bob", "web", True),  # posixGroup memberUid
        ("alice", "top", True),  # nested two levels
        ("carol", "loop-a", True),  # through a cycle
        ("bob", "admins", False),
        ("dave", "loop-a", False),  # the cycle ends without an answer
        ("jürgen", "admins", False),
    ],
)
def test_group_rule(make_directory: MakeDirectory, login: str, group: str, expected: bool) -> None:
    directory = make_directory(group_base=GROUPS)
    assert directory.in_any_group(granted(directory, login), [group]) is expected


def test_group_depth_limits_nesting(make_directory: MakeDirectory) -> None:
    shallow = make_directory(group_base=GROUPS, group_depth="1")
    assert shallow.in_any_group(granted(shallow, "alice"), ["mid"])
    assert not shallow.in_any_group(granted(shallow, "alice"), ["top"])


def test_cycle_is_searched_a_bounded_number_of_times(
    make_directory: MakeDirectory, calls: list[tuple[str, tuple[Any, ...]]]
) -> None:
    directory = make_directory(group_base=GROUPS, group_depth="20")
    verdict = granted(directory, "carol")
    calls.clear()
    assert not directory.in_any_group(verdict, ["never-there"])
    assert len(calls) <= 6


def test_memberof_answers_without_a_search(
    make_directory: MakeDirectory, calls: list[tuple[str, tuple[Any, ...]]]
) -> None:
    directory = make_directory(group_base=GROUPS)
    verdict = granted(directory, "alice")
    assert f"cn=admins,{GROUPS}" in verdict.groups
    calls.clear()
    assert directory.in_any_group(verdict, ["admins"])
    assert calls == []


def test_group_search_filters_are_escaped(
    make_directory: MakeDirectory, calls: list[tuple[str, tuple[Any, ...]]]
) -> None:
    directory = make_directory(group_base=GROUPS, group_depth="0")
    verdict = granted(directory, "jsmith")
    calls.clear()
    assert directory.in_any_group(verdict, ["staff"])
    filt = calls[0][1][2]
    (dn,) = verdict.attrs["dn"]
    assert dn.startswith("cn=Smith\\")  # a backslash, which the filter must escape as \5c
    assert f"(uniqueMember={dn.replace(chr(92), chr(92) + '5c')})" in filt
    assert "(memberUid=jsmith)" in filt


def test_in_chain_sends_the_matching_rule(
    make_directory: MakeDirectory, calls: list[tuple[str, tuple[Any, ...]]]
) -> None:
    # OpenLDAP does not know the rule (it matches nothing); Active Directory resolves it.
    directory = make_directory(group_base=GROUPS, group_in_chain="on")
    verdict = granted(directory, "bob")
    calls.clear()
    assert not directory.in_any_group(verdict, ["admins"])
    assert calls[0][1][2] == f"(member:1.2.840.113556.1.4.1941:=uid=bob,{PEOPLE})"
