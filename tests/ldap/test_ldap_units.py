"""Pure logic of the ldap source: URL parsing, options, escaping, Active Directory rules."""

from __future__ import annotations

import time

import pytest

from authn.errors import ConfigError
from authn.settings import parse_settings
from authn.sources.ldap.filters import (
    account_problem,
    bind_failure_reason,
    dn_value,
    filter_value,
    group_name,
    in_chain_filter,
    is_under,
    normalize_dn,
    template_bind_name,
    user_filter,
)
from authn.sources.ldap.url import parse_ldap_url

# --- AuthLDAPURL syntax ---


def test_url_with_everything() -> None:
    url = parse_ldap_url(
        "ldaps://ldap1.example.org ldap2.example.org:1636/ou=people,dc=example,dc=org"
        "?sAMAccountName,mail?one?(objectClass=user)"
    )
    assert url.uris == ("ldaps://ldap1.example.org:636", "ldaps://ldap2.example.org:1636")
    assert url.base_dn == "ou=people,dc=example,dc=org"
    assert url.attrs == ("sAMAccountName", "mail") and url.login_attr == "sAMAccountName"
    assert (url.scope, url.filter) == ("one", "(objectClass=user)")


def test_url_defaults_as_in_apache() -> None:
    url = parse_ldap_url("ldap://127.0.0.1/dc=example,dc=org")
    assert url.hosts == (("127.0.0.1", 389),)
    assert (url.attrs, url.scope, url.filter) == (("uid",), "sub", "(objectClass=*)")


def test_url_percent_decoding_and_bare_filter() -> None:
    url = parse_ldap_url("ldap://h/ou=my%20people,dc=x?uid??objectClass=person")
    assert url.base_dn == "ou=my people,dc=x" and url.filter == "(objectClass=person)"


@pytest.mark.parametrize(
    "bad",
    [
        "http://h/dc=x",
        "ldap:///dc=x",
        "ldap://h",
        "ldap://h/dc=x?u id",
        "ldap://h/dc=x?uid?tree",
        "ldap://h/dc=x?uid?sub?(a=b",
        "ldap://h:99999/dc=x",
        "ldap://h/dc=x?a?sub?(a=b)?extra",
    ],
)
def test_bad_urls_are_refused(bad: str) -> None:
    with pytest.raises(ValueError):
        parse_ldap_url(bad)


# --- options ---

URL = "ldap://127.0.0.1/dc=example,dc=org"


U = {"authn.ldap.url": URL}
S = {"authn.ldap.url": URL.replace("ldap:", "ldaps:")}


def parse(pairs: dict[str, str]) -> object:
    return parse_settings({"authn.source": "ldap", **pairs}.items())


def test_ldap_options_parse() -> None:
    s = parse(
        {
            "authn.ldap.url": URL,
            "authn.ldap.starttls": "on",
            "authn.ldap.ca_file": "/etc/ssl/ca.pem",
            "authn.ldap.group_depth": "2",
            "authn.ldap.attributes": "mail, cn",
            "authn.ldap.timeout": "3",
            "authn.require.group": "admins",
            "authn.ldap.group_base": "ou=groups,dc=example,dc=org",
        }
    )
    assert s.ldap.starttls is True and s.ldap.group_depth == 2
    assert s.ldap.attributes == ("mail", "cn")
    assert s.group_file is None  # the group rule needs no group file with ldap


@pytest.mark.parametrize(
    ("pairs", "option", "words"),
    [
        ({}, "authn.ldap.url", "missing"),
        ({**U, "authn.ldap.bind_dn": "cn=a,dc=x"}, "authn.ldap.bind_password_file", "go together"),
        ({**S, "authn.ldap.starttls": "on"}, "authn.ldap.starttls", "already encrypted"),
        ({**U, "authn.ldap.ca_file": "/ca.pem"}, "authn.ldap.ca_file", "not encrypted"),
        ({**U, "authn.require.group": "admins"}, "authn.require.group", "authn.ldap.group_base"),
        ({**U, "authn.ldap.bind_template": "uid=x"}, "authn.ldap.bind_template", "%s"),
        ({**U, "authn.ldap.group_depth": "50"}, "authn.ldap.group_depth", "0"),
        ({**U, "authn.ldap.timeout": "600"}, "authn.ldap.timeout", "seconds"),
        ({"authn.ldap.url": "ldap://h"}, "authn.ldap.url", "base DN"),
        ({**U, "authn.ldap.urls": URL}, "authn.ldap.urls", "did you mean authn.ldap.url"),
    ],
)  # fmt: skip
def test_option_errors_name_the_option_and_the_fix(pairs: dict[str, str], option: str, words: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse(pairs)
    assert info.value.option == option
    assert words in str(info.value)


def test_group_rule_by_dn_needs_no_group_base() -> None:
    s = parse({"authn.ldap.url": URL, "authn.require.group": "cn=admins,dc=example,dc=org"})
    assert s.require_groups == ("cn=admins,dc=example,dc=org",)  # type: ignore[attr-defined]


# --- escaping ---


def test_filter_escaping_rfc4515() -> None:
    assert filter_value("a*b(c)d\\e\x00") == "a\\2ab\\28c\\29d\\5ce\\00"
    assert filter_value("jürgen") == "jürgen"  # UTF-8 is sent as is
    assert user_filter("(objectClass=user)", "sAMAccountName", "*") == (
        "(&(objectClass=user)(sAMAccountName=\\2a))"
    )


def test_dn_escaping_rfc4514() -> None:
    assert dn_value("Smith, John") == "Smith\\, John"
    assert dn_value('a+b"c<d>e;f=g\\h') == 'a\\+b\\"c\\<d\\>e\\;f\\=g\\\\h'
    assert dn_value("#lead") == "\\#lead" and dn_value(" x ") == "\\ x\\ "


def test_template_bind_names() -> None:
    assert template_bind_name("uid=%s,ou=people,dc=x", "a,b=c") == "uid=a\\,b\\=c,ou=people,dc=x"
    assert template_bind_name("%s@example.org", "alice") == "alice@example.org"
    assert template_bind_name("%s@example.org", "alice@other.org") is None
    assert template_bind_name("EXAMPLE\\%s", "a\\b") is None


def test_dn_helpers() -> None:
    assert normalize_dn("CN=Admins, OU=Groups,DC=x") == normalize_dn("cn=admins,ou=groups,dc=x")
    assert normalize_dn("cn=Smith\\2C John,dc=x") == normalize_dn("cn=Smith\\, John,dc=x")
    assert is_under("cn=a,ou=groups,dc=x", "OU=Groups,DC=x")
    assert not is_under("cn=a,ou=groupsx,dc=x", "ou=groups,dc=x")
    assert group_name("cn=web team,ou=g,dc=x") == "web team"
    assert group_name("ou=g,dc=x") is None


def test_in_chain_filter_escapes_the_dn() -> None:
    assert in_chain_filter("CN=Smith\\, John,DC=x") == (
        "(member:1.2.840.113556.1.4.1941:=CN=Smith\\5c, John,DC=x)"
    )


# --- Active Directory account state ---

NOW = 1_800_000_000.0  # a fixed "now" (2027)


def filetime(unix: float) -> bytes:
    return str(int(unix * 10_000_000) + 116444736000000000).encode()


@pytest.mark.parametrize(
    ("attrs", "problem"),
    [
        ({}, None),  # OpenLDAP: no AD attributes
        ({"userAccountControl": [b"512"]}, None),  # NORMAL_ACCOUNT
        ({"userAccountControl": [b"514"]}, "account disabled"),  # NORMAL | ACCOUNTDISABLE
        ({"useraccountcontrol": [b"66050"]}, "account disabled"),  # + DONT_EXPIRE_PASSWORD
        ({"userAccountControl": [b"528"]}, "account locked"),
        ({"userAccountControl": [b"junk"]}, "unreadable userAccountControl"),
        ({"accountExpires": [b"0"]}, None),  # never
        ({"accountExpires": [b"9223372036854775807"]}, None),  # never
        ({"accountExpires": [filetime(NOW + 3600)]}, None),
        ({"accountExpires": [filetime(NOW - 1)]}, "account expired"),
        ({"accountExpires": [b"soon"]}, "unreadable accountExpires"),
        (
            {"userAccountControl": [b"512"], "accountExpires": [filetime(NOW - 86400)]},
            "account expired",
        ),
    ],
)
def test_account_problem(attrs: dict[str, list[bytes]], problem: str | None) -> None:
    assert account_problem(attrs, now=NOW) == problem


def test_account_problem_uses_the_clock() -> None:
    assert account_problem({"accountExpires": [filetime(time.time() - 10)]}) == "account expired"


AD_49 = "80090308: LdapErr: DSID-0C09044E, comment: AcceptSecurityContext error, data {}, v4563"


class _Refused(Exception):
    pass


@pytest.mark.parametrize(
    ("info", "reason"),
    [
        (AD_49.format("52e"), "bad password"),
        (AD_49.format("533"), "account disabled"),
        (AD_49.format("775"), "account locked"),
        (AD_49.format("773"), "password must be changed"),
        ("", "bad password"),
    ],
)  # fmt: skip
def test_ad_bind_diagnostics(info: str, reason: str) -> None:
    exc = _Refused({"result": 49, "desc": "Invalid credentials", "info": info})
    assert bind_failure_reason(exc) == reason
