"""Starting, finding and ending sessions (see :mod:`authn.sessions`).

A session is valid for a request when its record exists, it belongs to the location's
*realm* (the same sources: :func:`realm_of`), it is within its idle timeout and absolute
lifetime, and the credential it was granted on is unchanged (its *fingerprint*: a password
change, a deleted or disabled user ends it). A process that checked a session trusts it
without reading the store again while the store's epoch is unchanged (SQLite: every logout
or revocation anywhere on the machine changes it) or, with Redis, for
:data:`~authn.sessions.store.REMOTE_TRUST_SECONDS`; the fingerprint is checked on every
request (a dict lookup). The last-seen time is written at most every :data:`TOUCH_SECONDS`
(or a tenth of the idle timeout), not on every request.

**While the store cannot be reached** (Redis down, restarting, failing over), the sessions
that a process of this machine read from the store in the last
:data:`STORE_DOWN_GRACE_SECONDS` stay valid here, without a store read (so without
refreshing the last-seen time): each process remembers its own, and every read is also
copied into the machine-wide cache file (:mod:`authn.cache.shared`, ``authn.cache.dir``), so
that a prefork child that never saw a session honours it too. Every other session, a sign-in
and a sign-out answer 503 (:class:`~authn.errors.StoreUnavailable`). The fingerprint is
still compared with the source, so a changed password still ends a session. The price, a
bounded one: a session ended on another machine less than the grace before the outage may
be honoured here if no process of this machine read the store for it since it ended, until
the grace runs out or the store answers. Refusing every signed-in user during a Redis
restart would be an outage of the whole site; honouring sessions nobody checked recently
would let any revoked cookie in. After a fault the store is left alone for
:data:`STORE_RETRY_SECONDS` (a hung Redis costs no time per request); one line is logged
when the store goes down and one when it answers.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import secrets
import threading
import time

from authn.cache.shared import SharedStore
from authn.cache.verdicts import shared_store
from authn.errors import StoreUnavailable
from authn.sessions.store import (
    REMOTE_TRUST_SECONDS,
    RedisSessions,
    Session,
    SessionStore,
    SqliteSessions,
    session_id,
)
from authn.settings import LoginSettings, Settings

log = logging.getLogger("authn")

TOUCH_SECONDS = 60.0
STORE_DOWN_GRACE_SECONDS = 120.0  #: store down: a session this process checked is honoured this long
STORE_RETRY_SECONDS = 1.0  #: after a store fault, sessions are not read from the store this long
TRUST_MAX = 8192  #: checked sessions a process remembers (all forgotten when full)
COOKIE = "authn_session"


def realm_of(settings: Settings) -> str:
    """The realm a session belongs to: a digest of everything that decides whether a sign-in
    succeeds and how long a session lives: the sources (the password file, the directory),
    the lockout, the second factor and the session's timeouts. Locations that agree on all
    of it share sessions, whatever their group rules (checked on every request); any other
    location needs its own sign-in, so a session made where no code was asked, or where the
    lockout is looser or sessions live longer, is no session where they are stricter."""
    login = settings.login
    text = repr(
        (
            settings.sources,
            settings.password_file,
            settings.ldap,
            settings.lockout,
            (login.otp_file, login.otp_optional, login.idle, login.lifetime, login.basic),
        )
    )
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def new_token() -> str:
    """A session token: 256 random bits, URL-safe."""
    return secrets.token_urlsafe(32)


class Sessions:
    """The sessions of one store, with one location's timeouts. Thread-safe."""

    def __init__(self, store: SessionStore, login: LoginSettings, shared: SharedStore | None = None) -> None:
        self.store = store
        self.login = login
        self.shared = shared  #: the machine-wide copy of recent reads (the grace), or None
        # session id -> (the session, when this process last read it, the epoch then)
        self._trusted: dict[str, tuple[Session, float, bytes | None]] = {}
        self._lock = threading.Lock()
        self._down: tuple[float, StoreUnavailable] | None = None  # (until when, the fault)

    def start(self, user: str, realm: str, fingerprint: str, verdict: str) -> str:
        """A new session (a new token at every sign-in: no fixation); returns the token."""
        token = new_token()
        now = time.time()
        self.store.create(
            Session(session_id(token), user, realm, fingerprint, verdict, now, now, now + self.login.lifetime)
        )
        return token

    def find(self, token: str, realm: str) -> Session | None:
        """The session of ``token`` when it is valid for ``realm`` now (not its fingerprint:
        the caller compares that with the source). Raises StoreUnavailable."""
        if not token or len(token) > 128:
            return None
        sid = session_id(token)
        now = time.time()
        mono = time.monotonic()
        epoch = self.store.epoch()
        trusted = self._trusted.get(sid)
        session: Session | None
        if (
            trusted is not None
            and trusted[2] == epoch
            and (epoch is not None or mono - trusted[1] < REMOTE_TRUST_SECONDS)
        ):
            session = trusted[0]
        else:
            try:
                found = self._read(sid, mono)
            except StoreUnavailable:
                kept = self._kept(sid, trusted, mono, now)
                if kept is None:
                    raise
                return self._valid(kept, realm, now)  # the grace (module docstring)
            self._share(sid, found, now)
            if found is None:
                self._trusted.pop(sid, None)
                return None
            session = found
            if len(self._trusted) >= TRUST_MAX:
                self._trusted.clear()
            self._trusted[sid] = (session, mono, epoch)
        if self._valid(session, realm, now) is None:
            return None
        if now - session.seen >= min(TOUCH_SECONDS, self.login.idle / 10):
            self.store.touch(sid, now)
            self._trusted[sid] = (
                dataclasses.replace(session, seen=now),
                mono,
                epoch,
            )  # fmt: skip
        return session

    def _valid(self, session: Session, realm: str, now: float) -> Session | None:
        if session.realm != realm or now >= session.expires or now >= session.seen + self.login.idle:
            return None
        return session

    def _kept(
        self, sid: str, trusted: tuple[Session, float, bytes | None] | None, mono: float, now: float
    ) -> Session | None:
        """The store is down: the session as this process, or else any process of this
        machine, last read it within the grace; None when neither did, or when a process of
        this machine found it gone (signed out, revoked) since: that mark in the machine-wide
        file overrides what this process remembers."""
        found = None
        if self.shared is not None:
            try:
                found = self.shared.get(_shared_key(sid))
            except OSError:
                found = None
        if found is not None and not found[2]:
            return None  # marked gone by a later read on this machine
        if trusted is not None and mono - trusted[1] < STORE_DOWN_GRACE_SECONDS:
            return trusted[0]
        if found is None or found[0] <= now:
            return None
        try:
            return Session(sid, *json.loads(found[2]))
        except (ValueError, TypeError):
            return None

    def _share(self, sid: str, session: Session | None, now: float) -> None:
        """Copy a read into the machine-wide file (an ended session: mark it gone there)."""
        if self.shared is None:
            return
        if session is None:
            payload, until = b"", 0.0
        else:
            fields = [session.user, session.realm, session.fingerprint, session.verdict,
                      session.created, session.seen, session.expires]  # fmt: skip
            payload, until = (
                json.dumps(fields, separators=(",", ":")).encode(),
                now + STORE_DOWN_GRACE_SECONDS,
            )
        try:  # a session too large for a slot is kept by each process only
            self.shared.put(_shared_key(sid), until, bytes(16), payload)
        except OSError as exc:
            log.warning("authn: cache write failed, session grace kept in this process only: %s", exc)

    def _read(self, sid: str, mono: float) -> Session | None:
        """The store's record, or StoreUnavailable: at once, without asking, for
        :data:`STORE_RETRY_SECONDS` after a fault. Logs the store going down and coming back."""
        down = self._down
        if down is not None and mono < down[0]:
            raise down[1]
        try:
            session = self.store.get(sid)
        except StoreUnavailable as exc:
            if down is None:
                log.error(
                    "authn: session store down: sessions checked in the last %.0f s stay valid "
                    "in this process; other sessions, sign-ins and sign-outs answer 503 until it "
                    "answers again: %s",
                    STORE_DOWN_GRACE_SECONDS,
                    exc,
                )
            self._down = (mono + STORE_RETRY_SECONDS, exc)
            raise
        if down is not None:
            self._down = None
            log.error("authn: session store %s answers again", self.store.description)
        return session

    def end(self, token: str) -> None:
        """Log out: the record is deleted (every process refuses the cookie from now on)."""
        sid = session_id(token)
        self._trusted.pop(sid, None)
        self.store.delete(sid)


def _shared_key(sid: str) -> bytes:
    return hashlib.blake2b(sid.encode(), digest_size=32, person=b"authn-session").digest()


def grace_store_for(settings: Settings) -> SharedStore | None:
    """The machine-wide file of the sessions' grace: the verified-credential cache's
    (``authn.cache.dir``); None when that cache is off (``authn.cache.ttl 0``)."""
    part = settings.cache
    return shared_store(part.dir, part.entries) if part.ttl > 0 else None


_stores: dict[tuple[str, str | None], SessionStore] = {}
_stores_lock = threading.Lock()


def store_for(settings: Settings) -> SessionStore:
    """The session store where the location's lockout counters live (one per place and
    process): Redis for ``authn.lockout.store redis``, else SQLite in ``authn.lockout.dir``
    or the lockout's default private folder (one database per Apache instance)."""
    part = settings.lockout
    where = part.redis if part.store == "redis" else part.dir
    key = (part.store, where)
    found = _stores.get(key)
    if found is None:
        with _stores_lock:
            found = _stores.get(key)
            if found is None:
                if part.store == "redis":
                    assert where is not None
                    try:
                        found = RedisSessions(where)
                    except StoreUnavailable:
                        raise
                    except Exception as exc:  # a URL redis-py refuses
                        raise StoreUnavailable(f"session store redis: cannot use {where!r}: {exc}") from None
                elif where is None:
                    from authn.lockout.stores import default_folder

                    found = SqliteSessions(
                        default_folder(), f"apache-{os.getppid()}.sqlite3.sessions", private=True
                    )
                else:
                    found = SqliteSessions(where)
                _stores[key] = found
    return found
