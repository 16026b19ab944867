"""Pure helpers for the directory source: escaping, DN comparison, Active Directory account
state and bind diagnostics, and the group-search filters. No connection is opened here.

Escaping follows the RFCs through python-ldap's own functions: RFC 4515 for values put in a
filter (``*``, ``(``, ``)``, ``\\`` and NUL become ``\\2a``...), RFC 4514 for values put in a
DN (``,``, ``+``, ``"``, ``\\``, ``<``, ``>``, ``;``, ``=``, a leading ``#`` or space, a
trailing space).
"""

from __future__ import annotations

import functools
import time
import unicodedata
from collections.abc import Iterable

import ldap.dn
import ldap.filter

#: Active Directory's LDAP_MATCHING_RULE_IN_CHAIN: transitive group membership on the server
IN_CHAIN_RULE = "1.2.840.113556.1.4.1941"

GROUP_CLASSES = ("groupOfNames", "groupOfUniqueNames", "posixGroup", "group")

# userAccountControl bits (MS-ADTS 2.2.16)
UAC_ACCOUNTDISABLE = 0x0002
UAC_LOCKOUT = 0x0010
# accountExpires: 100 ns intervals since 1601-01-01 UTC; 0 and 2**63-1 mean "never"
_NEVER = (0, 0x7FFFFFFFFFFFFFFF)
_EPOCH_AS_FILETIME = 116444736000000000

# AD bind failures (result 49) carry the reason in the diagnostic text: "data 52e, v..."
AD_BIND_REASONS = {
    "525": "unknown user",
    "52e": "bad password",
    "530": "logon not permitted at this time",
    "531": "logon not permitted from this workstation",
    "532": "password expired",
    "533": "account disabled",
    "701": "account expired",
    "773": "password must be changed",
    "775": "account locked",
}


def filter_value(value: str) -> str:
    """``value`` escaped for an LDAP filter (RFC 4515)."""
    return str(ldap.filter.escape_filter_chars(value, escape_mode=0))


def dn_value(value: str) -> str:
    """``value`` escaped for an attribute value inside a DN (RFC 4514)."""
    return str(ldap.dn.escape_dn_chars(value))


def user_filter(url_filter: str, attr: str, login: str) -> str:
    """``(&(url_filter)(attr=login))`` with ``login`` escaped."""
    return f"(&{url_filter}({attr}={filter_value(login)}))"


def template_bind_name(template: str, login: str) -> str | None:
    """The bind name for a direct bind, or None when ``login`` cannot be used safely.

    A DN template (``uid=%s,ou=people,...``) gets the login escaped for a DN. Any other
    template (``%s@example.org``, ``EXAMPLE\\%s``) is not a DN, so nothing can be escaped:
    logins holding ``@``, ``\\`` or ``/`` are refused there, so that no one can name an
    account of another domain.
    """
    if "=" in template:
        return template.replace("%s", dn_value(login))
    if any(ch in login for ch in "@\\/\x00"):
        return None
    return template.replace("%s", login)


@functools.lru_cache(maxsize=4096)
def normalize_dn(dn: str) -> str:
    """A DN in a form fit for comparison: parsed, re-serialized, case folded.

    Case folding is right for the attributes DNs are made of (cn, ou, dc, uid: all
    case-insensitive). A string that is not a DN is only case folded. Remembered for the
    last 4,096 DNs (the same entries come back on every check: python-ldap's parsing and
    serializing in Python cost a dozen calls each time).
    """
    try:
        return str(ldap.dn.dn2str(ldap.dn.str2dn(dn))).lower()
    except ldap.DECODING_ERROR:
        return dn.lower()


# RFC 4518 section 2.2: code points a directory maps to nothing before it compares strings
_MAPPED_TO_NOTHING = dict.fromkeys(
    [
        0x00AD, 0x034F, 0x06DD, 0x070F, 0x1806, 0x180B, 0x180C, 0x180D, 0x180E, 0x200B,
        *range(0x200C, 0x2010), *range(0x202A, 0x202F), *range(0x2060, 0x2064),
        *range(0x206A, 0x2070), *range(0xFE00, 0xFE10), 0xFEFF, *range(0xFFF9, 0xFFFD),
        *range(0x1D173, 0x1D17B), 0xE0001, *range(0xE0020, 0xE0080),
    ]
)  # fmt: skip


def fold_login(login: str) -> str:
    """A login folded at least as far as a directory folds it when it compares strings.

    LDAP's case-ignore matching (RFC 4518: ``uid``, ``cn``, ``mail``, ``sAMAccountName``)
    maps control and formatting characters to nothing and every kind of space to a space,
    folds case (``ß`` to ``ss``), normalizes to NFKC (full-width letters and ligatures
    become plain letters) and ignores surrounding and repeated spaces. Every
    spelling the directory would take for one entry folds to one string here, so the lockout
    can count an unknown login under one name whatever its spelling. Folding further than
    the directory (two entries onto one string) only makes their counters shared.
    """
    text = "".join(
        " " if unicodedata.category(ch) in ("Zs", "Zl", "Zp") or ch in "\t\n\v\f\r\x85" else ch
        # U+0130 (I with a dot) is the one letter Python folds to i plus a combining dot where
        # a directory takes it as i: fold it to i, so "alİce" shares alice's counter
        for ch in login.translate(_MAPPED_TO_NOTHING).replace("\u0130", "i")
        if unicodedata.category(ch) != "Cc" or ch in "\t\n\v\f\r\x85"
    )
    text = unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", text).casefold())
    return " ".join(text.split())


def is_under(dn: str, base: str) -> bool:
    """True when ``dn`` is ``base`` or below it (both normalized)."""
    dn_n, base_n = normalize_dn(dn), normalize_dn(base)
    return dn_n == base_n or dn_n.endswith("," + base_n)


def group_name(dn: str) -> str | None:
    """The name of a group: the value of its first RDN when that is a ``cn``."""
    try:
        rdn = ldap.dn.str2dn(dn)[0]
    except (ldap.DECODING_ERROR, IndexError):
        return None
    attr, value, _ = rdn[0]
    return str(value) if attr.lower() == "cn" else None


def member_filter(dns: Iterable[str], login: str | None) -> str:
    """Groups that list any of ``dns`` as ``member``/``uniqueMember`` (or ``login`` as a
    posixGroup ``memberUid``)."""
    parts = []
    for dn in sorted(set(dns)):
        value = filter_value(dn)
        parts.append(f"(member={value})(uniqueMember={value})")
    if login is not None:
        parts.append(f"(memberUid={filter_value(login)})")
    classes = "".join(f"(objectClass={c})" for c in GROUP_CLASSES)
    return f"(&(|{classes})(|{''.join(parts)}))"


def in_chain_filter(user_dn: str) -> str:
    """Active Directory: every group the user is in, directly or through nesting."""
    return f"(member:{IN_CHAIN_RULE}:={filter_value(user_dn)})"


def account_problem(attrs: dict[str, list[bytes]], now: float | None = None) -> str | None:
    """Why an Active Directory account must not log in (disabled, locked, expired), or None.

    Reads ``userAccountControl`` and ``accountExpires`` from the user's entry; entries
    without them (OpenLDAP) have no problem. A value that cannot be read is treated as a
    problem: an account is never granted on data we do not understand.
    """
    lower = {k.lower(): v for k, v in attrs.items()}
    uac = lower.get("useraccountcontrol")
    if uac:
        try:
            flags = int(uac[0])
        except ValueError:
            return "unreadable userAccountControl"
        if flags & UAC_ACCOUNTDISABLE:
            return "account disabled"
        if flags & UAC_LOCKOUT:
            return "account locked"
    expires = lower.get("accountexpires")
    if expires:
        try:
            filetime = int(expires[0])
        except ValueError:
            return "unreadable accountExpires"
        if filetime not in _NEVER:
            now = time.time() if now is None else now
            if (filetime - _EPOCH_AS_FILETIME) / 10_000_000 <= now:
                return "account expired"
    return None


def bind_failure_reason(exc: BaseException) -> str:
    """A short reason for a refused user bind, with Active Directory's sub-code decoded."""
    info = ""
    if exc.args and isinstance(exc.args[0], dict):
        info = str(exc.args[0].get("info", "") or "")
    marker = info.find("data ")
    if marker >= 0:
        code = info[marker + 5 :].split(",")[0].strip().lower()
        if code in AD_BIND_REASONS:
            return AD_BIND_REASONS[code]
    return "bad password"
