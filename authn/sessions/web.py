"""The HTTP rules of sign-in, as pure functions (no mod_python): where a browser may be sent
back to, cookies, which clients are browsers, the form's CSRF token.
"""

from __future__ import annotations

import hmac
import re
import secrets
from urllib.parse import quote, unquote

CSRF_COOKIE = "authn_csrf"
_COOKIE_PAIR = re.compile(r"\s*([^=;\s]+)\s*=\s*([^;]*)")


def local_path(target: str | None) -> str:
    """``target`` when it is a path on this server, else ``/``: no open redirect.

    Accepted: an absolute path (``/private/report?year=2026``), with any character outside
    a URL's safe set %-encoded. Refused, whatever their encoding: a scheme or host
    (``https://evil``, ``//evil``), a backslash (``/\\evil``, which browsers read as ``//``),
    control characters, empty and dot segments (``/.//evil``); the target is checked again
    after decoding once and twice, so ``/%2F%2Fevil`` and ``/%5Cevil`` fail too.
    """
    if not target or len(target) > 2048:
        return "/"
    for text in (target, unquote(target), unquote(unquote(target))):
        path = text.split("?", 1)[0]
        if not text.startswith("/") or "//" in path or "\\" in text or "/./" in path or "/../" in path:
            return "/"
        if any(ord(c) < 0x20 or ord(c) == 0x7F for c in text):
            return "/"
    return quote(target, safe="/?=&%:@!$'()*+,;-._~")


def cookies(header: str | None) -> dict[str, str]:
    """The cookies of a ``Cookie`` header (the first of a name wins, as browsers send the
    most specific first)."""
    found: dict[str, str] = {}
    for name, value in _COOKIE_PAIR.findall(header or ""):
        found.setdefault(name, value.strip().strip('"'))
    return found


def is_browser(method: str, accept: str | None) -> bool:
    """A client that can follow a redirect to a sign-in page: a GET or HEAD that accepts HTML.
    Everything else (curl, git, WebDAV, fetch() of JSON) gets 401, never a redirect loop."""
    return method in ("GET", "HEAD") and "text/html" in (accept or "")


def new_csrf() -> str:
    return secrets.token_urlsafe(24)


def csrf_ok(cookie: str | None, field: str | None) -> bool:
    """The form's token equals the cookie's (double submit): a page of another site can
    neither read the cookie nor set it, so it cannot post a valid form."""
    if not cookie or not field or len(cookie) > 64:
        return False
    return hmac.compare_digest(cookie.encode(), field.encode())


def session_cookie(name: str, token: str, *, secure: bool, max_age: int | None = None) -> str:
    parts = [f"{name}={token}", "Path=/", "HttpOnly", "SameSite=Lax"]
    if max_age is not None:
        parts.append(f"Max-Age={max_age}")
    if secure:
        parts.append("Secure")
    return "; ".join(parts)


def csrf_cookie(token: str, path: str, *, secure: bool) -> str:
    parts = [f"{CSRF_COOKIE}={token}", f"Path={path}", "HttpOnly", "SameSite=Strict"]
    if secure:
        parts.append("Secure")
    return "; ".join(parts)
