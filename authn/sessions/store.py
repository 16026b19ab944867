"""Where sessions live: shared by every Apache child and thread, or by many machines.

A session is created by a successful sign-in and found again by the token in its cookie.
The store never holds the token itself, only its SHA-256 (:func:`session_id`): a copy of the
store gives no cookie that works. Each record holds the user, the account source's realm
(:func:`authn.sessions.realm_of`), the verdict it was granted with (groups, attributes),
a fingerprint of the credential it was granted on (a password change ends the session),
and its times: created, last seen, and the end of its absolute lifetime.

Two stores, one interface (:class:`SessionStore`), in the place the lockout's counters live
(``authn.lockout.store``, ``authn.lockout.dir``, ``authn.lockout.redis``):

* :class:`SqliteSessions`: ``sessions.sqlite3`` (WAL) beside the lockout database, writers
  queued on the same kind of lock file; an *epoch* file (8 bytes, mapped by every process)
  changes at every logout and revocation, so a process may trust a session it checked
  while the epoch is unchanged, and a logged-out cookie is refused by every child at once;
* :class:`RedisSessions`: ``authn:session:<id>`` hashes that expire by Redis's clock, a set
  of a user's sessions for revocation; processes trust a checked session for at most
  :data:`REMOTE_TRUST_SECONDS` (a logout on another machine holds within that).

Sign-in contexts (:meth:`SessionStore.put_context`) let the sign-in page, which stands at its
own URL, use the sources of the location that sent the browser there: the location writes
its options once under a digest of them, and the page's URL carries only that digest.

Every method raises :class:`authn.errors.StoreUnavailable` on faults.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from authn.errors import StoreUnavailable
from authn.lockout.stores import open_database, queued_transaction
from authn.mapped import map_private_file

PURGE_EVERY_SECONDS = 30.0
MAX_SESSIONS = 500_000  #: sessions kept at most; past it the oldest-seen go first
REMOTE_TRUST_SECONDS = 1.0  #: Redis: a checked session is trusted this long by a process
REDIS_PREFIX = "authn:"
REDIS_TIMEOUT_SECONDS = 0.25


def session_id(token: str) -> str:
    """What the store keeps for a cookie's token: its SHA-256, never the token."""
    return hashlib.sha256(token.encode("ascii", "replace")).hexdigest()


@dataclass(frozen=True, slots=True)
class Session:
    """One signed-in browser (see the module docstring)."""

    id: str
    user: str
    realm: str
    fingerprint: str
    verdict: str  #: the granted verdict, encoded (groups and attributes)
    created: float
    seen: float
    expires: float


class SessionStore(Protocol):
    description: str

    def create(self, session: Session) -> None: ...
    def get(self, sid: str) -> Session | None: ...
    def touch(self, sid: str, seen: float) -> None: ...
    def delete(self, sid: str) -> None: ...
    def revoke_user(self, user: str) -> int: ...
    def list(self, user: str | None = None) -> list[Session]: ...
    def use_code(self, user: str, step: int) -> bool: ...
    def put_context(self, key: str, payload: str) -> None: ...
    def get_context(self, key: str) -> str | None: ...
    def epoch(self) -> bytes | None: ...


_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS sessions (id TEXT PRIMARY KEY, user TEXT NOT NULL,"
    " realm TEXT NOT NULL, fingerprint TEXT NOT NULL, verdict TEXT NOT NULL,"
    " created REAL NOT NULL, seen REAL NOT NULL, expires REAL NOT NULL) WITHOUT ROWID",
    "CREATE INDEX IF NOT EXISTS sessions_by_user ON sessions (user)",
    "CREATE TABLE IF NOT EXISTS codes (user TEXT PRIMARY KEY, step INTEGER NOT NULL,"
    " at REAL NOT NULL) WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS contexts (key TEXT PRIMARY KEY, payload TEXT NOT NULL) WITHOUT ROWID",
)
_COLUMNS = "id, user, realm, fingerprint, verdict, created, seen, expires"


class _Epoch:
    """8 bytes in a file mapped by every process; fresh random bytes at every logout."""

    def __init__(self, path: str) -> None:
        self._map, fd = map_private_file(path, 8)
        os.close(fd)

    def read(self) -> bytes:
        return self._map[0:8]

    def bump(self) -> None:
        self._map[0:8] = os.urandom(8)


class SqliteSessions:
    """Sessions in ``<folder>/<name>`` (see the module docstring). ``private``: the folder
    is the lockout's default one under /tmp, created 0700 and refused if others can write."""

    def __init__(self, folder: str, name: str = "sessions.sqlite3", *, private: bool = False) -> None:
        self.folder = folder
        self.path = os.path.join(folder, name)
        self.private = private
        self.description = f"sqlite:{self.path}"
        self._conn: sqlite3.Connection | None = None
        self._pid = 0
        self._use = threading.RLock()
        self._queue_fd = -1
        self._queue_pid = 0
        self._epoch: _Epoch | None = None
        self._next_purge = 0.0

    def _fail(self, what: str, exc: BaseException) -> StoreUnavailable:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(sqlite3.Error):
                conn.close()
        return StoreUnavailable(
            f"session store {self.path}: {what}: {exc}; check that the folder exists and that the "
            "Apache user can write to it (authn.lockout.dir)"
        )

    def _queue(self) -> int:
        if self._queue_fd < 0 or self._queue_pid != os.getpid():
            flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
            self._queue_fd, self._queue_pid = os.open(self.path + ".lock", flags, 0o600), os.getpid()
        return self._queue_fd

    def _connection(self) -> sqlite3.Connection:
        if self._conn is not None and self._pid == os.getpid():
            return self._conn
        os.makedirs(self.folder, mode=0o700, exist_ok=True)
        if self.private:
            st = os.stat(self.folder)
            if st.st_uid != os.geteuid() or st.st_mode & 0o022:
                raise OSError(f"folder {self.folder} belongs to uid {st.st_uid} or is writable by others")
        conn = open_database(self.path, self._queue(), f"session store {self.path}", _SCHEMA)
        self._epoch = _Epoch(self.path + ".epoch")
        self._conn, self._pid = conn, os.getpid()
        return conn

    @contextlib.contextmanager
    def _reading(self, doing: str) -> Iterator[sqlite3.Connection]:
        with self._use:
            try:
                yield self._connection()
            except (OSError, sqlite3.Error) as exc:
                raise self._fail(doing, exc) from None

    @contextlib.contextmanager
    def _writing(self, doing: str) -> Iterator[sqlite3.Connection]:
        with self._use:
            try:
                conn = self._connection()
                with queued_transaction(conn, self._queue(), f"session store {self.path}"):
                    yield conn
                    now = time.time()
                    if now >= self._next_purge:
                        self._next_purge = now + PURGE_EVERY_SECONDS
                        self._purge(conn, now)
            except (OSError, sqlite3.Error) as exc:
                raise self._fail(doing, exc) from None

    @staticmethod
    def _purge(conn: sqlite3.Connection, now: float) -> None:
        conn.execute("DELETE FROM sessions WHERE expires <= ?", (now,))
        (count,) = conn.execute("SELECT count(*) FROM sessions").fetchone()
        if count > MAX_SESSIONS:
            conn.execute(
                "DELETE FROM sessions WHERE id IN (SELECT id FROM sessions ORDER BY seen LIMIT ?)",
                (count - MAX_SESSIONS * 9 // 10,),
            )

    def create(self, session: Session) -> None:
        with self._writing("while creating a session") as conn:
            conn.execute(
                f"INSERT INTO sessions ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",  # noqa: S608
                (
                    session.id, session.user, session.realm, session.fingerprint, session.verdict,
                    session.created, session.seen, session.expires,
                ),
            )  # fmt: skip

    def get(self, sid: str) -> Session | None:
        with self._reading("while reading a session") as conn:
            row = conn.execute(f"SELECT {_COLUMNS} FROM sessions WHERE id = ?", (sid,)).fetchone()  # noqa: S608
        return Session(*row) if row is not None else None

    def touch(self, sid: str, seen: float) -> None:
        with self._writing("while updating a session") as conn:
            conn.execute("UPDATE sessions SET seen = max(seen, ?) WHERE id = ?", (seen, sid))

    def delete(self, sid: str) -> None:
        with self._writing("while ending a session") as conn:
            conn.execute("DELETE FROM sessions WHERE id = ?", (sid,))
        self._bump()

    def revoke_user(self, user: str) -> int:
        with self._writing("while revoking sessions") as conn:
            count = conn.execute("DELETE FROM sessions WHERE user = ?", (user,)).rowcount
        self._bump()
        return int(count)

    def list(self, user: str | None = None) -> list[Session]:
        with self._reading("while listing sessions") as conn:
            if user is None:
                rows = conn.execute(f"SELECT {_COLUMNS} FROM sessions ORDER BY seen DESC").fetchall()  # noqa: S608
            else:
                rows = conn.execute(
                    f"SELECT {_COLUMNS} FROM sessions WHERE user = ? ORDER BY seen DESC",  # noqa: S608
                    (user,),
                ).fetchall()
        return [Session(*row) for row in rows]

    def use_code(self, user: str, step: int) -> bool:
        """Record that ``user`` used the TOTP code of time step ``step``; False when that
        step (or a later one) was used already: a code is accepted once."""
        with self._writing("while recording a code") as conn:
            row = conn.execute("SELECT step FROM codes WHERE user = ?", (user,)).fetchone()
            if row is not None and row[0] >= step:
                return False
            conn.execute(
                "INSERT INTO codes (user, step, at) VALUES (?, ?, ?) "
                "ON CONFLICT (user) DO UPDATE SET step = excluded.step, at = excluded.at",
                (user, step, time.time()),
            )
        return True

    def put_context(self, key: str, payload: str) -> None:
        with self._writing("while saving a sign-in context") as conn:
            conn.execute("INSERT OR IGNORE INTO contexts (key, payload) VALUES (?, ?)", (key, payload))

    def get_context(self, key: str) -> str | None:
        with self._reading("while reading a sign-in context") as conn:
            row = conn.execute("SELECT payload FROM contexts WHERE key = ?", (key,)).fetchone()
        return str(row[0]) if row is not None else None

    def epoch(self) -> bytes | None:
        if self._epoch is None:
            with contextlib.suppress(StoreUnavailable), self._reading("while opening"):
                pass
        return self._epoch.read() if self._epoch is not None else None

    def _bump(self) -> None:
        if self._epoch is not None:
            self._epoch.bump()


class RedisSessions:
    """Sessions in Redis (see the module docstring); ``url`` as for the lockout's Redis."""

    def __init__(self, url: str) -> None:
        try:
            import redis  # optional: only for authn.lockout.store redis
        except ImportError:
            raise StoreUnavailable(
                "session store redis: the Python package 'redis' is not installed; install it "
                "(pip install 'authn[redis]') or use authn.lockout.store sqlite"
            ) from None
        self._errors: tuple[type[BaseException], ...] = (redis.RedisError, OSError)
        self._client = redis.Redis.from_url(
            url, socket_timeout=REDIS_TIMEOUT_SECONDS, socket_connect_timeout=REDIS_TIMEOUT_SECONDS
        )
        kwargs = self._client.connection_pool.connection_kwargs
        where = kwargs.get("path") or f"{kwargs.get('host')}:{kwargs.get('port')}"
        self.description = f"redis:{where}/{kwargs.get('db', 0)}"
        self._use_code = self._client.register_script(_USE_CODE_LUA)

    def _fail(self, what: str, exc: BaseException) -> StoreUnavailable:
        return StoreUnavailable(
            f"session store {self.description}: {what}: {exc}; check that Redis runs and answers "
            "at authn.lockout.redis"
        )

    def _call(self, what: str, fn: Any) -> Any:
        try:
            return fn()
        except self._errors as exc:
            raise self._fail(what, exc) from None

    def create(self, session: Session) -> None:
        key = f"{REDIS_PREFIX}session:{session.id}"
        ttl = max(1, int(session.expires - time.time()) + 1)
        fields: dict[bytes | bytearray | memoryview[int] | str | int | float, bytes | str | float] = {
            "user": session.user, "realm": session.realm, "fingerprint": session.fingerprint,
            "verdict": session.verdict, "created": session.created, "seen": session.seen,
            "expires": session.expires,
        }  # fmt: skip

        def run() -> None:
            pipe = self._client.pipeline(transaction=True)
            pipe.hset(key, mapping=fields)
            pipe.expire(key, ttl)
            pipe.sadd(f"{REDIS_PREFIX}user:{session.user}", session.id)
            # longer than any session (a week at most): a revoke cleans the set anyway
            pipe.expire(f"{REDIS_PREFIX}user:{session.user}", 8 * 86400)
            pipe.execute()

        self._call("while creating a session", run)

    def get(self, sid: str) -> Session | None:
        raw = self._call(
            "while reading a session", lambda: self._client.hgetall(f"{REDIS_PREFIX}session:{sid}")
        )
        if not raw:
            return None
        f = {k.decode(): v.decode() for k, v in raw.items()}
        return Session(
            sid, f["user"], f["realm"], f["fingerprint"], f["verdict"],
            float(f["created"]), float(f["seen"]), float(f["expires"]),
        )  # fmt: skip

    def touch(self, sid: str, seen: float) -> None:
        self._call(
            "while updating a session",
            lambda: self._client.hset(f"{REDIS_PREFIX}session:{sid}", "seen", seen),
        )

    def delete(self, sid: str) -> None:
        self._call("while ending a session", lambda: self._client.delete(f"{REDIS_PREFIX}session:{sid}"))

    def revoke_user(self, user: str) -> int:
        def run() -> int:
            members = self._client.smembers(f"{REDIS_PREFIX}user:{user}")
            keys = [f"{REDIS_PREFIX}session:{m.decode() if isinstance(m, bytes) else m}" for m in members]
            count = int(self._client.delete(*keys)) if keys else 0
            self._client.delete(f"{REDIS_PREFIX}user:{user}")
            return count

        return int(self._call("while revoking sessions", run))

    def list(self, user: str | None = None) -> list[Session]:
        def run() -> list[Session]:
            found = []
            for key in self._client.scan_iter(match=f"{REDIS_PREFIX}session:*", count=500):
                session = self.get(key.decode()[len(f"{REDIS_PREFIX}session:") :])
                if session is not None and (user is None or session.user == user):
                    found.append(session)
            return sorted(found, key=lambda s: -s.seen)

        result: list[Session] = self._call("while listing sessions", run)
        return result

    def use_code(self, user: str, step: int) -> bool:
        return bool(
            self._call(
                "while recording a code",
                lambda: self._use_code(keys=[f"{REDIS_PREFIX}code:{user}"], args=[step, 7 * 86400]),
            )
        )

    def put_context(self, key: str, payload: str) -> None:
        self._call(
            "while saving a sign-in context",
            lambda: self._client.set(f"{REDIS_PREFIX}context:{key}", payload),
        )

    def get_context(self, key: str) -> str | None:
        value = self._call(
            "while reading a sign-in context", lambda: self._client.get(f"{REDIS_PREFIX}context:{key}")
        )
        return value.decode() if value is not None else None

    def epoch(self) -> bytes | None:
        return None  # other machines log out too: trust a checked session briefly instead


_USE_CODE_LUA = """
local last = tonumber(redis.call('GET', KEYS[1]) or '-1')
if last >= tonumber(ARGV[1]) then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
return 1
"""


def encode_payload(data: dict[str, Any]) -> str:
    return json.dumps(data, separators=(",", ":"), sort_keys=True)
