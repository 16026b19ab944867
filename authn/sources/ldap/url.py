"""Parsing ``authn.ldap.url``, written in Apache's ``AuthLDAPURL`` syntax.

``ldap[s]://host1[:port] host2[:port]/basedn?attr[,attr...]?scope?filter``

* Several hosts, separated by spaces, mean failover in that order. A host without a port
  gets 389 (``ldap``) or 636 (``ldaps``).
* ``attr``: the first attribute is the one the login name is matched against (``uid`` when
  omitted, ``sAMAccountName`` or ``userPrincipalName`` for Active Directory); all of them
  are read from the user's entry and exported as ``AUTHENTICATE_<ATTR>``, as
  mod_authnz_ldap does.
* ``scope``: ``sub`` (the default), ``one`` or ``base``.
* ``filter``: an RFC 4515 filter, with or without its outer parentheses; ``(objectClass=*)``
  when omitted. The login is combined with it as ``(&(filter)(attr=login))``.

The base DN and the filter may be percent-encoded (``%20`` for a space), as in RFC 4516.
This module does not import python-ldap: it is pure parsing, used by :mod:`authn.settings`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

DEFAULT_PORTS = {"ldap": 389, "ldaps": 636}
SCOPES = ("base", "one", "sub")
_ATTR = re.compile(r"^[A-Za-z][A-Za-z0-9-]*$|^[0-9]+(\.[0-9]+)+$")
_HOST = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+)(?::([0-9]{1,5}))?$")

EXAMPLE = "ldaps://ldap1.example.org ldap2.example.org/ou=people,dc=example,dc=org?uid?sub"


@dataclass(frozen=True, slots=True)
class LdapURL:
    """A parsed ``AuthLDAPURL``; ``hosts`` are ``(host, port)`` in failover order."""

    scheme: str
    hosts: tuple[tuple[str, int], ...]
    base_dn: str
    attrs: tuple[str, ...]
    scope: str
    filter: str

    @property
    def login_attr(self) -> str:
        """The attribute the login name is matched against."""
        return self.attrs[0]

    @property
    def uris(self) -> tuple[str, ...]:
        """One ``scheme://host:port`` URI per host, in failover order."""
        return tuple(f"{self.scheme}://{host}:{port}" for host, port in self.hosts)


def parse_ldap_url(value: str) -> LdapURL:
    """Parse ``value``; raises ValueError saying what is accepted."""
    text = value.strip()
    scheme, sep, rest = text.partition("://")
    scheme = scheme.lower()
    if not sep or scheme not in DEFAULT_PORTS:
        raise ValueError(f"the URL must start with ldap:// or ldaps://, as in {EXAMPLE}")
    hostpart, slash, query = rest.partition("/")
    if not slash:
        query = ""
    hosts: list[tuple[str, int]] = []
    for word in hostpart.split():
        match = _HOST.match(word)
        if not match:
            raise ValueError(f"{word!r} is not a host or host:port")
        port = int(match.group(2)) if match.group(2) else DEFAULT_PORTS[scheme]
        if not 0 < port < 65536:
            raise ValueError(f"port {port} is out of range")
        hosts.append((match.group(1), port))
    if not hosts:
        raise ValueError(f"name at least one host, as in {EXAMPLE}")
    parts = query.split("?")
    if len(parts) > 4:
        raise ValueError("too many '?' parts; the syntax is /basedn?attrs?scope?filter")
    parts += [""] * (4 - len(parts))
    from urllib.parse import unquote  # (with ipaddress): only where an LDAP URL is parsed

    base_dn = unquote(parts[0]).strip()
    if not base_dn:
        raise ValueError(f"give a base DN after the hosts, as in {EXAMPLE}")
    attrs = tuple(a.strip() for a in parts[1].split(",") if a.strip()) or ("uid",)
    for attr in attrs:
        if not _ATTR.match(attr):
            raise ValueError(f"{attr!r} is not an attribute name")
    scope = parts[2].strip().lower() or "sub"
    if scope not in SCOPES:
        raise ValueError(f"scope {scope!r} is not one of {', '.join(SCOPES)}")
    filt = unquote(parts[3]).strip() or "(objectClass=*)"
    if not filt.startswith("("):
        filt = f"({filt})"
    if filt.count("(") != filt.count(")"):
        raise ValueError(f"the filter {filt!r} has unbalanced parentheses")
    return LdapURL(scheme, tuple(hosts), base_dn, attrs, scope, filt)
