"""The mod_python adapter: Apache's request in, an Apache status out.

This is the only module that imports ``mod_python``. It turns ``req`` into plain values,
asks the location's :class:`authn.gate.Gate` (the whole request policy: lockout, cache,
sources, group rule), and maps its one answer to Apache in one ``match`` (:func:`_answer`):

* granted -> ``OK`` (``req.user`` was set by ``get_basic_auth_pw``, or is the attribute named
  by ``authn.ldap.remote_user_attribute``); the verdict's attributes go to the environment
  as ``AUTHENTICATE_<ATTR>``;
* unknown user, wrong password, empty password, no or malformed credentials, a refused
  group rule -> 401 (mod_python then lets mod_auth_basic add the ``WWW-Authenticate``
  challenge);
* too many failures (the lockout) -> 429 with ``Retry-After``;
* a source that cannot answer (file unreadable, directory down) -> 5xx with one error-log line
  (the status the source chose: 500, or 503 for a directory that does not answer);
* a bad option -> 500 with one error-log line naming the option and the fix.

The handlers stand at server level (``conf/authn.conf``) and act only where the location's
options switch them on: ``authn.source`` for authentication, ``authn.require.group`` for the
group rule. Everywhere else they return DECLINED at once.

Handlers: ``accesshandler`` (access_checker, optional: the lockout's first look, 429 before
any credential is read), ``authenhandler`` (check_user_id: everything, through the gate),
``authzhandler`` (auth_checker: the group rule, DECLINED when it passes so Apache's own
Require lines still apply), and ``statushandler`` (a content handler for the status page).
"""

from __future__ import annotations

import hashlib
import json
import logging
from typing import Any, ClassVar
from urllib.parse import urlencode

from mod_python import apache

from authn import metrics
from authn.authenticator import authenticator_for
from authn.errors import ConfigError, StoreUnavailable
from authn.gate import Answer, Gate, Granted, Refused, SignedIn, Throttled, Unavailable, gate_for
from authn.httpd.basicauth import basic_user, parse_basic
from authn.httpd.logtext import quote
from authn.sessions import web
from authn.sessions.sessions import COOKIE
from authn.settings import ACTIVATE_AUTHN, ACTIVATE_AUTHZ
from authn.verdict import Reason, Verdict

_contexts_written: set[str] = set()  # sign-in contexts this process stored already
HTTP_SEE_OTHER = 303
_VERDICT_ATTR = "authn_verdict"
_GROUPS_ATTR = "authn_groups_checked"  # the group rule ran for this request
HTTP_TOO_MANY_REQUESTS = 429
_OK = int(apache.OK)
DENIALS = {reason: f"denials_{reason.name.lower()}" for reason in Reason}


class _ApacheLogHandler(logging.Handler):
    """Sends the core's log records (file warnings...) to Apache's main error log."""

    _LEVELS: ClassVar[dict[int, int]] = {
        logging.DEBUG: apache.APLOG_DEBUG,
        logging.INFO: apache.APLOG_INFO,
        logging.WARNING: apache.APLOG_WARNING,
        logging.ERROR: apache.APLOG_ERR,
        logging.CRITICAL: apache.APLOG_CRIT,
    }

    def emit(self, record: logging.LogRecord) -> None:
        try:
            apache.log_error(self.format(record), self._LEVELS.get(record.levelno, apache.APLOG_ERR))
        except Exception:
            self.handleError(record)


def _install_log_bridge() -> None:
    logger = logging.getLogger("authn")
    if not any(isinstance(h, _ApacheLogHandler) for h in logger.handlers):
        logger.addHandler(_ApacheLogHandler())
        logger.setLevel(logging.INFO)
        logger.propagate = False


_install_log_bridge()
metrics.enable()  # counters shared by every child of this Apache (the status page sums them)


def _client(req: Any) -> str:
    return str(getattr(req, "useragent_ip", None) or req.connection.client_ip)


def _uri(req: Any) -> str:
    """The request's path, one code point per byte when it is not UTF-8 (mod_python decodes
    ``req.uri`` as strict UTF-8 and raises: ``/private/%ff`` must not turn into a 500)."""
    try:
        return str(req.uri)
    except UnicodeDecodeError as exc:
        return bytes(exc.object).decode("latin-1")


def _log_denial(req: Any, user: str, source: str, reason: Reason, detail: str = "") -> None:
    metrics.add(DENIALS[reason])
    extra = f" detail={quote(detail)}" if detail else ""
    req.log_error(
        f"authn: denied user={quote(user)} client={_client(req)} source={source} "
        f"reason={quote(str(reason))} uri={quote(_uri(req))}{extra}",
        apache.APLOG_ERR,
    )


# The location of a request, by its option pairs exactly as Apache hands them over (same
# block, same order) and the switch asked: its Gate, or DECLINED (not our location). One tuple
# and one dict lookup per request; bad options are not remembered (each request logs them).
_located: dict[tuple[str, tuple[tuple[str, str], ...]], Gate | int] = {}
_LOCATED_MAX = 1024


def _gate_or_status(req: Any, switch: str) -> Gate | int:
    """The location's Gate, or the status to answer: DECLINED where the ``switch`` option is
    not set (not our location), 500 with a log line for a bad option."""
    options = req.get_options()
    key = (switch, tuple(options.items()))
    found = _located.get(key)
    if found is not None:
        return found
    if switch not in options:
        found = int(apache.DECLINED)
    else:
        try:
            found = gate_for(authenticator_for(options))
        except ConfigError as exc:
            req.log_error(f"authn: configuration error: {exc}", apache.APLOG_ERR)
            return int(apache.HTTP_INTERNAL_SERVER_ERROR)
    if len(_located) < _LOCATED_MAX:
        _located[key] = found
    return found


def _export(req: Any, verdict: Verdict, remote_user_attr: str | None) -> None:
    """A granted verdict's attributes as AUTHENTICATE_<ATTR> (as mod_authnz_ldap sets them),
    and REMOTE_USER from ``remote_user_attr`` when that is set and the entry has it."""
    # mod_python stores str as Latin-1: pass the UTF-8 bytes through it unchanged
    for name, values in verdict.attrs.items():
        if values:
            req.subprocess_env["AUTHENTICATE_" + name.upper()] = _latin1(values[0])
    if remote_user_attr:
        values = verdict.attrs.get(remote_user_attr, ())
        if values:
            req.user = _latin1(values[0])


def _latin1(text: str) -> str:
    return text.encode("utf-8").decode("latin-1")


def _answer(req: Any, gate: Gate, answer: Answer) -> int:
    """The one place an Answer becomes an Apache status (and its log line and headers)."""
    match answer:
        case Granted(verdict):
            metrics.add("answers_granted")
            setattr(req, _VERDICT_ATTR, verdict)
            remote_user_attribute = gate.authenticator.settings.ldap.remote_user_attribute
            if verdict.attrs or remote_user_attribute:
                _export(req, verdict, remote_user_attribute)
            return _OK
        case Refused(user, source, reason, detail):
            metrics.add("answers_refused")
            _log_denial(req, user, source, reason, detail)
            if reason is Reason.NOT_IN_GROUP:
                # a fresh challenge, as mod_authz_core answers a refused Require
                realm = (req.auth_name() or "").replace("\\", "\\\\").replace('"', '\\"')
                req.err_headers_out["WWW-Authenticate"] = f'Basic realm="{realm}"'
            return int(apache.HTTP_UNAUTHORIZED)
        case Throttled(user, retry_after, report):
            metrics.add("answers_throttled")
            if not report:  # reported ones count through their denial line
                metrics.add(DENIALS[Reason.LOCKED_OUT])
            req.err_headers_out["Retry-After"] = str(retry_after)
            if report:  # one line per lock and process, not one per refused request
                _log_denial(req, user, "lockout", Reason.LOCKED_OUT)
            return HTTP_TOO_MANY_REQUESTS
        case Unavailable(user, source, status, message, reason):
            metrics.add("answers_unavailable")
            req.log_error(
                f"authn: source={source} unavailable, answering {status}: {message} "
                f"(user={quote(user)} client={_client(req)})",
                apache.APLOG_ERR,
            )
            # one denial line per refused request too, for people reading the log
            _log_denial(req, user, source, reason)
            return status
        case SignedIn():
            raise AssertionError("a sign-in answers on the sign-in page, not here")
    raise AssertionError(f"not an Answer: {answer!r}")


def authenhandler(req: Any) -> int:
    """PythonAuthenHandler: everything a protected request needs, in one Python call.

    Reads the client address and the Basic credentials and asks the location's
    :class:`~authn.gate.Gate` (lockout, cache, sources, group rule, in that order); maps its
    answer to Apache. Each mod_python handler call costs about 20 us of CPU, so the shipped
    conf/authn.conf configures this handler only; the access and authz handlers do their
    part when an admin adds them, and this handler then skips what they did.
    """
    gate = _gate_or_status(req, ACTIVATE_AUTHN)
    if isinstance(gate, int):
        return gate
    if gate.login.form:
        return _form_location(req, gate)
    password = req.get_basic_auth_pw()
    user = req.user
    if password is None or user is None:
        return int(apache.HTTP_UNAUTHORIZED)
    answer = gate.admit(_client(req), user, password.encode("latin-1"))
    setattr(req, _GROUPS_ATTR, True)
    return _answer(req, gate, answer)


def _form_location(req: Any, gate: Gate) -> int:
    """A location with ``authn.login form`` (``conf/authn-form.conf``): a valid session cookie
    lets the request in; a browser without one is sent to the sign-in page (303); another
    client gets 401. With ``"form basic"`` a request with Basic credentials is checked as on
    a Basic location (the AuthType is not Basic, so authn reads the header itself)."""
    authorization = _header(req, "Authorization")
    if gate.login.basic and authorization is not None and parse_basic(authorization) is not None:
        return _basic_on_form_location(req, gate, authorization)
    token = web.cookies(_text_header(req, "Cookie")).get(COOKIE)
    if token:
        answer = gate.resume(token)
        if answer is not None:
            setattr(req, _GROUPS_ATTR, True)
            if isinstance(answer, Granted):
                req.user = answer.verdict.user
                req.ap_auth_type = "form"
                # a signed-out browser's back button must not show the page from its cache
                req.err_headers_out["Cache-Control"] = "no-store"
            return _answer(req, gate, answer)
    if not web.is_browser(req.method, _text_header(req, "Accept")):
        return _unauthorized(req, gate)
    try:
        context = _sign_in_context(req, gate)
    except StoreUnavailable as exc:
        return _answer(req, gate, Unavailable("", "sessions", 503, str(exc), Reason.DIRECTORY_DOWN))
    target = web.local_path(_unparsed_uri(req))
    query = urlencode({"context": context, "return": target})
    req.err_headers_out["Location"] = f"{gate.login.url}/login?{query}"
    req.err_headers_out["Cache-Control"] = "no-store"
    return HTTP_SEE_OTHER


def _unauthorized(req: Any, gate: Gate) -> int:
    """401; with a Basic challenge where Basic is accepted (``"form basic"``)."""
    if gate.login.basic:
        realm = (req.auth_name() or "").replace("\\", "\\\\").replace('"', '\\"')
        req.err_headers_out["WWW-Authenticate"] = f'Basic realm="{realm}"'
    return int(apache.HTTP_UNAUTHORIZED)


def _basic_on_form_location(req: Any, gate: Gate, authorization: str | bytes) -> int:
    credentials = parse_basic(authorization)
    if credentials is None or not credentials[0]:
        return _unauthorized(req, gate)
    user, password = credentials
    req.user = user
    req.ap_auth_type = "Basic"
    setattr(req, _GROUPS_ATTR, True)
    status = _answer(req, gate, gate.admit(_client(req), user, password.encode("latin-1")))
    return _unauthorized(req, gate) if status == apache.HTTP_UNAUTHORIZED else status


def _sign_in_context(req: Any, gate: Gate) -> str:
    """The key under which the sign-in page finds this location's options (written to the
    session store once per process and key: the page's URL carries only the key)."""
    options = sorted((k, v) for k, v in req.get_options().items() if k.startswith("authn."))
    payload = json.dumps({"options": options, "realm": req.auth_name() or ""}, separators=(",", ":"))
    key = hashlib.sha256(payload.encode()).hexdigest()[:32]
    if key not in _contexts_written:
        gate.sessions.store.put_context(key, payload)
        _contexts_written.add(key)
    return key


def authzhandler(req: Any) -> int:
    """PythonAuthzHandler (optional): the ``authn.require.group`` rule where the user was
    authenticated by another module (no ``authn.source``); DECLINED when it passes, so
    Apache's own Require lines still apply. Where authn authenticated the request, the
    authen handler already applied the rule."""
    if hasattr(req, _GROUPS_ATTR):
        return int(apache.DECLINED)
    gate = _gate_or_status(req, ACTIVATE_AUTHZ)
    if isinstance(gate, int):
        return gate
    if not req.user:
        return int(apache.HTTP_UNAUTHORIZED)
    answer = gate.authorize(req.user, getattr(req, _VERDICT_ATTR, None))
    if isinstance(answer, Granted):
        return int(apache.DECLINED)
    return _answer(req, gate, answer)


def _header(req: Any, name: str) -> str | bytes | None:
    """A request header; its raw bytes when they are not UTF-8 (mod_python's table decodes
    values as strict UTF-8 and raises: a client must not turn that into a 500)."""
    try:
        value = req.headers_in.get(name)
    except UnicodeDecodeError as exc:
        return bytes(exc.object)
    return None if value is None else str(value)


def _text_header(req: Any, name: str) -> str | None:
    """A request header as text; None when absent or not UTF-8."""
    value = _header(req, name)
    return value if isinstance(value, str) else None


def _unparsed_uri(req: Any) -> str:
    try:
        return str(req.unparsed_uri)
    except UnicodeDecodeError as exc:
        return bytes(exc.object).decode("latin-1")


def accesshandler(req: Any) -> int:
    """PythonAccessHandler (optional): the lockout's first look, before any credential.

    Where ``authn.source`` is set and ``authn.lockout`` is on, a locked client address (or
    a locked (login, address) pair where the login is the account) gets 429 with
    ``Retry-After`` and one denial line; everything else declines. The authen handler's
    reservation still decides for each check.
    """
    gate = _gate_or_status(req, ACTIVATE_AUTHN)
    if isinstance(gate, int):
        return gate
    answer = gate.screen(_client(req), basic_user(_header(req, "Authorization")))
    return int(apache.DECLINED) if answer is None else _answer(req, gate, answer)


def statushandler(req: Any) -> int:
    """PythonHandler ``authn.handlers::statushandler``: the status page (:mod:`authn.status`).

    ``?format=prometheus`` (or an ``Accept`` that names ``text/plain; version=0.0.4``) gives
    Prometheus text; anything else a plain-text page for people.
    """
    try:
        query = req.args or ""
    except UnicodeDecodeError:
        query = ""
    from authn import status  # only where the status page is mounted

    prometheus = "format=prometheus" in query or "version=0.0.4" in str(_header(req, "Accept"))
    text = status.render(req.get_options(), prometheus=prometheus)
    req.content_type = status.PROMETHEUS_TYPE if prometheus else "text/plain; charset=utf-8"
    req.headers_out["Cache-Control"] = "no-store"
    req.write(text.encode("utf-8"))
    return int(apache.OK)


# --- the sign-in pages (conf/authn-login.conf) ----------------------------------------------

_PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'",
    "Referrer-Policy": "same-origin",
}


def loginhandler(req: Any) -> int:
    """PythonHandler ``authn.handlers::loginhandler`` at ``<authn.login.url>/``: the sign-in
    page (``/authn/login``: GET shows the form, POST signs in) and the sign-out page
    (``/authn/logout``: GET asks, POST signs out). See :mod:`authn.sessions`."""
    from authn.sessions import signin  # only where the sign-in pages are mounted

    try:
        return signin.serve(req, _SignInRequest(req))
    except ConfigError as exc:
        req.log_error(f"authn: configuration error: {exc}", apache.APLOG_ERR)
        return int(apache.HTTP_INTERNAL_SERVER_ERROR)


class _SignInRequest:
    """The plain values the sign-in pages need from ``req``, and the writes back."""

    def __init__(self, req: Any) -> None:
        self._req = req
        self.method = str(req.method)
        self.path = _uri(req)
        self.client = _client(req)
        self.options = dict(req.get_options())
        self.secure = bool(req.is_https())
        try:
            self.query = str(req.args or "")
        except UnicodeDecodeError:
            self.query = ""
        self.cookie_header = _text_header(req, "Cookie")
        self.content_type = _text_header(req, "Content-Type") or ""
        try:
            self.length = int(_text_header(req, "Content-Length") or "0")
        except ValueError:
            self.length = -1

    def body(self) -> bytes:
        return bytes(self._req.read(self.length)) if self.length > 0 else b""

    def respond(self, status: int, html: str, cookies: list[str], headers: dict[str, str]) -> int:
        req = self._req
        for cookie in cookies:
            req.err_headers_out.add("Set-Cookie", cookie)
        for name, value in {**_PAGE_HEADERS, **headers}.items():
            req.err_headers_out[name] = value
        if 300 <= status < 400:
            return status
        req.status = status
        req.content_type = "text/html; charset=utf-8"
        if self.method != "HEAD":
            req.write(html.encode("utf-8"))
        return int(apache.OK)

    def log_denial(self, user: str, source: str, reason: Reason) -> None:
        _log_denial(self._req, user, source, reason)

    def log_error(self, text: str) -> None:
        self._req.log_error(text, apache.APLOG_ERR)
