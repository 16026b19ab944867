"""The user name in an ``Authorization: Basic`` header, read exactly as Apache reads it.

The access handler runs before authentication and must know which user a request claims, to
refuse a locked-out (user, client) pair before any hash is computed. It must find the very
name that Apache's ``ap_get_basic_auth_pw`` (which mod_python's ``req.get_basic_auth_pw``
calls) will later hand to the authentication handler; otherwise a crafted header could be
counted under one name and checked under another. So this module copies Apache's rules:

* the scheme is the text before the first space, compared case-insensitively with
  ``Basic``; then spaces (and spaces or tabs) are skipped;
* base64 is decoded like APR's ``apr_base64_decode``: only the leading run of base64
  characters counts (``=`` and anything else ends it), a last lone character is dropped;
* the decoded bytes end at the first NUL (Apache handles them as a C string);
* the user is everything before the first ``:``, the password everything after it; with no
  ``:`` the whole text is the user and the password is empty.

Names are returned decoded as Latin-1, one code point per byte, like ``req.user``.
"""

from __future__ import annotations

import base64
import binascii

_BASE64_CHARS = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")


def apr_base64_decode(coded: bytes) -> bytes:
    """Decode like APR: the leading run of base64 characters, padding not required."""
    n = 0
    for byte in coded:
        if byte not in _BASE64_CHARS:
            break
        n += 1
    body = coded[: n - 1] if n % 4 == 1 else coded[:n]
    body += b"=" * (-len(body) % 4)
    try:
        return base64.b64decode(body)
    except (binascii.Error, ValueError):  # cannot happen for the alphabet above; be total
        return b""


def parse_basic(header: str | bytes | None) -> tuple[str, str] | None:
    """``(user, password)`` from an Authorization header value, or None when it is not Basic.

    ``header`` is the raw bytes, or text as mod_python gives it (UTF-8-decoded; Latin-1 is
    accepted too). Never raises: any input gives either None or a pair of Latin-1 strings.
    """
    if not header:
        return None
    if isinstance(header, bytes):
        raw = header
    else:
        try:
            raw = header.encode("latin-1")
        except UnicodeEncodeError:
            raw = header.encode("utf-8", "surrogateescape")
    scheme, _, rest = raw.partition(b" ")
    if scheme.lower() != b"basic":
        return None
    rest = rest.lstrip(b" \t")
    decoded = apr_base64_decode(rest).split(b"\x00", 1)[0]
    user, _, password = decoded.partition(b":")
    return user.decode("latin-1"), password.decode("latin-1")


def basic_user(header: str | bytes | None) -> str | None:
    """The user name a Basic header claims, or None (no header, another scheme)."""
    parsed = parse_basic(header)
    return None if parsed is None else parsed[0]
