"""The mod_python adapter: Apache's request in, an Apache status out.

This is the only module that imports ``mod_python``. It turns ``req`` into plain values,
asks :mod:`authn.authenticator`, and maps the answer to Apache in one place:

* granted -> ``OK`` (``req.user`` was set by ``get_basic_auth_pw``, or is the attribute named
  by ``authn.ldap.remote_user_attribute``); the verdict's attributes go to the environment
  as ``AUTHENTICATE_<ATTR>``;
* unknown user, wrong password, empty password, no or malformed credentials -> 401 (mod_python
  then lets mod_auth_basic add the ``WWW-Authenticate`` challenge);
* a source that cannot answer (file unreadable, directory down) -> 5xx with one error-log line
  (the status the source chose: 500, or 503 for a directory that does not answer);
* a bad option -> 500 with one error-log line naming the option and the fix.

The handlers stand at server level (``conf/authn.conf``) and act only where the location's
options switch them on: ``authn.source`` for authentication, ``authn.require.group`` for the
group rule. Everywhere else they return DECLINED at once.

Handlers: ``accesshandler`` (access_checker: the lockout gate, 429 before any password is
checked), ``authenhandler`` (check_user_id: the credentials, then the lockout counters),
``authzhandler`` (auth_checker: the group rule, DECLINED when it passes so Apache's own
Require lines still apply), and ``statushandler`` (a content handler for the status page).
"""

from __future__ import annotations

import logging
from typing import Any, ClassVar

from mod_python import apache

from authn.authenticator import Authenticator, authenticator_for
from authn.basicauth import basic_user
from authn.lockout import Decision, lockout_for
from authn.logtext import quote
from authn.settings import ACTIVATE_AUTHN, ACTIVATE_AUTHZ
from authn.verdict import ConfigError, SourceUnavailable, Verdict

_VERDICT_ATTR = "authn_verdict"
_LOCKOUT_ATTR = "authn_lockout"  # the lockout Decision of this request (gate ran)
_GROUPS_ATTR = "authn_groups_checked"  # the group rule ran for this request
HTTP_TOO_MANY_REQUESTS = 429


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


def _client(req: Any) -> str:
    return str(getattr(req, "useragent_ip", None) or req.connection.client_ip)


def _uri(req: Any) -> str:
    """The request's path, one code point per byte when it is not UTF-8 (mod_python decodes
    ``req.uri`` as strict UTF-8 and raises: ``/private/%ff`` must not turn into a 500)."""
    try:
        return str(req.uri)
    except UnicodeDecodeError as exc:
        return bytes(exc.object).decode("latin-1")


def _log_denial(req: Any, user: str, source: str, reason: str) -> None:
    req.log_error(
        f"authn: denied user={quote(user)} client={_client(req)} source={source} "
        f"reason={quote(reason)} uri={quote(_uri(req))}",
        apache.APLOG_ERR,
    )


def _authenticator_or_status(req: Any, switch: str) -> Authenticator | int:
    """The location's Authenticator, or the status to answer: DECLINED where the ``switch``
    option is not set (not our location), 500 with a log line for a bad option."""
    options = req.get_options()
    if switch not in options:
        return int(apache.DECLINED)
    try:
        return authenticator_for(options)
    except ConfigError as exc:
        req.log_error(f"authn: configuration error: {exc}", apache.APLOG_ERR)
        return int(apache.HTTP_INTERNAL_SERVER_ERROR)


def _unavailable(req: Any, user: str, exc: SourceUnavailable) -> int:
    req.log_error(
        f"authn: source={exc.source} unavailable, answering {exc.status}: {exc} "
        f"(user={quote(user)} client={_client(req)})",
        apache.APLOG_ERR,
    )
    # one denial line per refused request too, for fail2ban and people reading the log
    _log_denial(req, user, exc.source, "file unreadable" if exc.source == "file" else "directory down")
    return exc.status


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


def _lockout_gate(
    req: Any, authenticator: Authenticator, user: str | None, counted: str | None
) -> int | None:
    """429 (with Retry-After and a denial line) when the client or the (user, client) pair is
    locked out; None to go on. Looks at the counters once per request: the access handler,
    when it is configured, does it first and the authen handler then skips it."""
    lockout = lockout_for(authenticator.settings)
    if lockout is None or hasattr(req, _LOCKOUT_ATTR):
        return None
    decision = lockout.check(_client(req), counted)
    setattr(req, _LOCKOUT_ATTR, decision)
    if not decision.locked:
        return None
    req.err_headers_out["Retry-After"] = str(decision.retry_after)
    if not decision.repeat:  # one line per lock and process, not one per refused request
        _log_denial(req, user or "", "lockout", "locked out")
    return HTTP_TOO_MANY_REQUESTS


def _group_rule(req: Any, authenticator: Authenticator, verdict: Verdict | None) -> int:
    """DECLINED when ``authn.require.group`` passes (Apache's own Require lines still
    apply), else 401 with a fresh challenge, as mod_authz_core answers."""
    user = verdict.user if verdict is not None else req.user  # the login, not REMOTE_USER
    setattr(req, _GROUPS_ATTR, True)
    try:
        allowed = authenticator.authorize(user, verdict)
    except SourceUnavailable as exc:
        return _unavailable(req, user, exc)
    if allowed:
        return int(apache.DECLINED)
    _log_denial(req, user, "groups", "not in a required group")
    realm = (req.auth_name() or "").replace("\\", "\\\\").replace('"', '\\"')
    req.err_headers_out["WWW-Authenticate"] = f'Basic realm="{realm}"'
    return int(apache.HTTP_UNAUTHORIZED)


def authenhandler(req: Any) -> int:
    """PythonAuthenHandler: everything a protected request needs, in one Python call.

    The lockout gate (before any password is checked), the credentials against the
    configured sources (cache first), the lockout counters, and the group rule. Each
    mod_python handler call costs about 20 us of CPU, so the shipped conf/authn.conf
    configures this handler only; the access and authz handlers do the same steps when an
    admin adds them, and this handler then skips what they did.
    """
    authenticator = _authenticator_or_status(req, ACTIVATE_AUTHN)
    if isinstance(authenticator, int):
        return authenticator
    password = req.get_basic_auth_pw()
    user = req.user
    if password is None or user is None:
        return int(apache.HTTP_UNAUTHORIZED)
    counted = authenticator.lockout_name(user)  # the name the lockout counts it under
    locked = _lockout_gate(req, authenticator, user, counted)
    if locked is not None:
        return locked
    try:
        verdict = authenticator.authenticate(user, password.encode("latin-1"))
    except SourceUnavailable as exc:
        return _unavailable(req, user, exc)
    # Count the verdict (never a fault) for the lockout's next decision.
    lockout = lockout_for(authenticator.settings)
    if lockout is not None:
        seen: Decision | None = getattr(req, _LOCKOUT_ATTR, None)
        if verdict.granted:
            lockout.succeeded(_client(req), counted, seen)
        else:
            lockout.failed(_client(req), counted)
    if not verdict.granted:
        _log_denial(req, user, verdict.source, verdict.reason)
        return int(apache.HTTP_UNAUTHORIZED)
    setattr(req, _VERDICT_ATTR, verdict)
    _export(req, verdict, authenticator.settings.ldap_remote_user_attribute)
    if authenticator.has_group_rule:
        refused = _group_rule(req, authenticator, verdict)
        if refused != apache.DECLINED:
            return refused
    return int(apache.OK)


def authzhandler(req: Any) -> int:
    """PythonAuthzHandler (optional): the ``authn.require.group`` rule where the user was
    authenticated by another module (no ``authn.source``); DECLINED when it passes.
    Where authn authenticated the request, the authen handler already applied the rule."""
    if hasattr(req, _GROUPS_ATTR):
        return int(apache.DECLINED)
    authenticator = _authenticator_or_status(req, ACTIVATE_AUTHZ)
    if isinstance(authenticator, int):
        return authenticator
    if not req.user:
        return int(apache.HTTP_UNAUTHORIZED)
    return _group_rule(req, authenticator, getattr(req, _VERDICT_ATTR, None))


def _header(req: Any, name: str) -> str | bytes | None:
    """A request header; its raw bytes when they are not UTF-8 (mod_python's table decodes
    values as strict UTF-8 and raises: a client must not turn that into a 500)."""
    try:
        value = req.headers_in.get(name)
    except UnicodeDecodeError as exc:
        return bytes(exc.object)
    return None if value is None else str(value)


def accesshandler(req: Any) -> int:
    """PythonAccessHandler: the lockout gate, before any password is checked.

    Where ``authn.source`` is set and ``authn.lockout`` is on, a client address or a
    (user, address) pair with too many recent failures gets 429 with ``Retry-After`` and one
    denial line (reason "locked out"); the password is not looked at. Everything else
    declines: elsewhere at once, here after one read of the counters. A counter store that
    is down lets the request through (logged by :mod:`authn.lockout`).
    """
    authenticator = _authenticator_or_status(req, ACTIVATE_AUTHN)
    if isinstance(authenticator, int):
        return authenticator
    user = basic_user(_header(req, "Authorization"))
    counted = None if user is None else authenticator.lockout_name(user)
    locked = _lockout_gate(req, authenticator, user, counted)
    return int(apache.DECLINED) if locked is None else locked


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
