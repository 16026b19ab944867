"""The sign-in and sign-out pages: what ``<authn.login.url>/login`` and ``/logout`` answer.

The adapter (:func:`authn.handlers.loginhandler`) hands over a :class:`PageRequest` of plain
values; the policy is the location's gate (:meth:`authn.gate.Gate.sign_in`), found through
the *sign-in context* the protected location stored (its options, under a key the sign-in
URL carries: the page checks the password against that location's sources).

* GET ``/login``: the form, with a fresh CSRF token (in the form and in a cookie).
* POST ``/login``: CSRF checked, then the gate: SignedIn -> the session cookie and 303 to
  the page first asked for (a local path only); a refusal -> the form again with one
  generic message (200), the same for every reason; too many failures -> 429 with
  ``Retry-After`` and "try again in N minutes"; a source or store down -> 5xx.
* GET ``/logout``: a page with a "Sign out" button (a form with the CSRF token).
* POST ``/logout``: the session ends for every process at once; the cookie is cleared.
"""

from __future__ import annotations

import json
import math
from typing import Protocol
from urllib.parse import parse_qs

from authn.authenticator import authenticator_for
from authn.errors import StoreUnavailable
from authn.gate import Gate, Granted, Refused, SignedIn, Throttled, Unavailable, gate_for
from authn.sessions import page, web
from authn.sessions.sessions import COOKIE, store_for
from authn.sessions.store import SessionStore, session_id
from authn.settings import store_settings
from authn.verdict import Reason

MAX_FORM_BYTES = 16384
WRONG = "Wrong user name or password."
EXPIRED = "This form has expired. Please try again."
NO_CONTEXT = "This sign-in link is incomplete. Go back to the page you wanted and follow its link again."
DOWN = "Sign-in is not available right now. Please try again in a minute."
SEE_OTHER = 303


class PageRequest(Protocol):
    method: str
    path: str
    client: str
    options: dict[str, str]
    secure: bool
    query: str
    cookie_header: str | None
    content_type: str
    length: int

    def body(self) -> bytes: ...
    def respond(self, status: int, html: str, cookies: list[str], headers: dict[str, str]) -> int: ...
    def log_denial(self, user: str, source: str, reason: Reason) -> None: ...
    def log_error(self, text: str) -> None: ...


def serve(_: object, request: PageRequest) -> int:
    """The answer of the sign-in location for one request (raises ConfigError)."""
    base = request.options.get("authn.login.url", "/authn").rstrip("/") or "/authn"
    name = request.path.rstrip("/").rpartition("/")[2]
    store = store_for(store_settings(request.options))
    if name == "login":
        return _login(request, base, store)
    if name == "logout":
        return _logout(request, base, store)
    return request.respond(404, "<!DOCTYPE html><title>Not found</title><p>Not found.</p>", [], {})


def _fields(request: PageRequest) -> dict[str, str]:
    try:
        return _parsed_fields(request)
    except (ValueError, OSError):  # too many fields, a body cut short: no form at all
        return {}


def _parsed_fields(request: PageRequest) -> dict[str, str]:
    if request.method != "POST":
        return {
            k: v[0] for k, v in parse_qs(request.query, keep_blank_values=True, max_num_fields=10).items()
        }
    if request.length < 0 or request.length > MAX_FORM_BYTES:
        return {}
    if not request.content_type.lower().startswith("application/x-www-form-urlencoded"):
        return {}
    try:
        text = request.body().decode("utf-8")
    except UnicodeDecodeError:
        return {}
    return {k: v[0] for k, v in parse_qs(text, keep_blank_values=True, max_num_fields=10).items()}


def _context(store: SessionStore, key: str) -> tuple[Gate, str] | None:
    """The gate of the location that sent the browser here, and its realm's name."""
    if not key or len(key) > 64:
        return None
    payload = store.get_context(key)
    if payload is None:
        return None
    data = json.loads(payload)
    gate = gate_for(authenticator_for({k: v for k, v in data["options"]}))
    return gate, str(data.get("realm") or "this site")


def _csrf_cookie(request: PageRequest, base: str, token: str) -> str:
    return web.csrf_cookie(token, base + "/", secure=request.secure)


def _form(
    request: PageRequest, base: str, status: int, realm: str, context: str, return_to: str,
    *, gate: Gate | None, user: str = "", message: str = "", headers: dict[str, str] | None = None,
) -> int:  # fmt: skip
    csrf = web.new_csrf()
    values = page.PageValues(
        realm=realm,
        action=f"{base}/login",
        csrf=csrf,
        return_to=return_to,
        context=context,
        user=user,
        message=message,
        ask_code=gate is not None and gate.asks_code,
    )
    template = gate.login.template if gate is not None else None
    html = page.render(values, template)
    return request.respond(status, html, [_csrf_cookie(request, base, csrf)], headers or {})


def _login(request: PageRequest, base: str, store: SessionStore) -> int:
    fields = _fields(request)
    key = fields.get("context", "")
    return_to = web.local_path(fields.get("return"))
    try:
        found = _context(store, key)
    except StoreUnavailable as exc:
        request.log_error(f"authn: sign-in page: {exc}")
        return _form(request, base, 503, "this site", key, return_to, gate=None, message=DOWN)
    if found is None:
        return _form(request, base, 400, "this site", key, return_to, gate=None, message=NO_CONTEXT)
    gate, realm = found
    if request.method != "POST":
        return _form(request, base, 200, realm, key, return_to, gate=gate)
    csrf_cookie = web.cookies(request.cookie_header).get(web.CSRF_COOKIE)
    if not web.csrf_ok(csrf_cookie, fields.get("csrf")):
        return _form(request, base, 403, realm, key, return_to, gate=gate, message=EXPIRED)
    user = fields.get("user", "")
    network_user = user.encode("utf-8").decode("latin-1")  # the form Basic credentials arrive in
    password = fields.get("password", "").encode("utf-8")
    answer = gate.sign_in(request.client, network_user, password, fields.get("code", ""))
    match answer:
        case SignedIn(_, token):
            cookie = web.session_cookie(COOKIE, token, secure=request.secure)
            clear_csrf = web.csrf_cookie("", base + "/", secure=request.secure) + "; Max-Age=0"
            return request.respond(SEE_OTHER, "", [cookie, clear_csrf], {"Location": return_to})
        case Throttled(who, retry_after, report):
            if report:
                request.log_denial(who, "lockout", Reason.LOCKED_OUT)
            minutes = max(1, math.ceil(retry_after / 60))
            message = f"Too many attempts. Try again in {minutes} minute{'s' if minutes > 1 else ''}."
            return _form(
                request, base, 429, realm, key, return_to, gate=gate, user=user, message=message,
                headers={"Retry-After": str(retry_after)},
            )  # fmt: skip
        case Unavailable(who, source, status, text, reason):
            request.log_error(f"authn: source={source} unavailable, answering {status}: {text} (sign-in)")
            request.log_denial(who, source, reason)
            return _form(request, base, status, realm, key, return_to, gate=gate, user=user, message=DOWN)
        case Refused(who, source, reason, _):
            request.log_denial(who, source, reason)
            return _form(request, base, 200, realm, key, return_to, gate=gate, user=user, message=WRONG)
        case Granted():
            raise AssertionError("sign_in answers SignedIn, not Granted")
    raise AssertionError(f"not an answer: {answer!r}")


def _logout(request: PageRequest, base: str, store: SessionStore) -> int:
    if request.method != "POST":
        csrf = web.new_csrf()
        html = (
            '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>Sign out</title>'
            '<meta name="robots" content="noindex"></head><body><main><h1>Sign out?</h1>'
            f'<form method="post" action="{base}/logout"><input type="hidden" name="csrf" value="{csrf}">'
            '<button type="submit">Sign out</button></form></main></body></html>\n'
        )
        return request.respond(200, html, [_csrf_cookie(request, base, csrf)], {})
    fields = _fields(request)
    jar = web.cookies(request.cookie_header)
    if not web.csrf_ok(jar.get(web.CSRF_COOKIE), fields.get("csrf")):
        html = page.notice("Please try again", EXPIRED, f"{base}/logout", "Sign out")
        return request.respond(403, html, [], {})
    token = jar.get(COOKIE)
    if token:
        try:
            store.delete(session_id(token))
        except StoreUnavailable as exc:
            request.log_error(f"authn: sign-out: {exc}")
            return request.respond(
                503, page.notice("Not signed out", DOWN, f"{base}/logout", "Try again"), [], {}
            )
    cleared = web.session_cookie(COOKIE, "", secure=request.secure, max_age=0)
    html = page.notice("You are signed out", "Your session has ended.", "/", "Home page")
    # the browser drops the pages it kept of this site (its back-forward cache too), so the
    # back button asks the server again, which answers with the sign-in page
    return request.respond(200, html, [cleared], {"Clear-Site-Data": '"cache"'})
