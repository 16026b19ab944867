"""Where the lockout counters live: shared by every Apache child and thread, or by many machines.

A counter is a number of failures under a key, with the wall-clock time at which it resets
(the end of its window). The window starts with the first failure and is not extended by later
ones, so a locked-out key is free again at a time known in advance (``Retry-After``).

Two stores, one interface (:class:`LockoutStore`):

* :class:`SqliteStore`, the default: one SQLite database in WAL mode in a folder of the
  machine. Every child and thread of Apache opens it, so a counter is shared by the whole
  server; no server process is needed. Reads do not block writers (WAL); a write is one short
  transaction.
* :class:`RedisStore`: a Redis server, for several Apache machines behind one load balancer.
  Expiry is Redis's own (``EXPIRE``, set with a counter's first failure), so the machines'
  clocks need not agree; Redis 6 or later.

Beside the SQLite database, :class:`FailureMarks` (``<database>.marks``, 32 KB, mapped into
every process) lets a request of a good user skip the store read: see its docstring; and
:class:`InFlight` (``<database>.inflight``, 192 KB, mapped too) holds the checks in flight,
so that a check whose password is right writes nothing to the database.

Counting is *reserve, then settle*: :meth:`LockoutStore.reserve` takes a place for a check
under a client key and a pair key in one atomic step *before* the password is checked, and
only while the failures plus the checks in flight (*pending*) stay below the limits;
:meth:`LockoutStore.settle` then turns the place into a failure or frees it. So however many
requests race, at most the threshold of failed checks happen per key and window, and checks
with the right password never count against it (a pending place expires after
:data:`PENDING_SECONDS` if its process died mid-check).

A busy store is not a down store. SQLite writers queue on a lock file (``<database>.lock``,
``flock``) before they touch the database, so they never compete inside SQLite and a flood
of failures makes writes wait their turn (one short transaction each) instead of timing
out; the database holds at most :data:`MAX_COUNTERS` counters (the lowest are dropped first)
and its write-ahead log is truncated to :data:`WAL_LIMIT_BYTES` after each checkpoint.

Errors: every fault of the store (file not writable, database locked for longer than
:data:`SQLITE_BUSY_SECONDS`, Redis not answering) raises :class:`StoreUnavailable` with a
message that names the store and the fix.
The caller (:mod:`authn.lockout.policy`) logs it and fails open; the store itself reconnects on the
next call, so it recovers without a restart. Nothing here imports ``mod_python``.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import sqlite3
import struct
import threading
import time
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from authn.errors import StoreUnavailable
from authn.mapped import map_private_file

#: how long SQLite waits on a lock before the store counts as down. Our own writers queue on
#: the lock file instead, so only something outside (a stuck disk, a process holding the
#: database open in a transaction) can make it run out.
SQLITE_BUSY_SECONDS = 5.0
PURGE_EVERY_SECONDS = 10.0  #: how often a writer deletes expired counters and bounds the table
#: counters kept at most (about 100 bytes each); past it the lowest counts go first, so a
#: flood of one-failure addresses cannot push out the counters that are near or at a lock
MAX_COUNTERS = 200_000
WAL_LIMIT_BYTES = 4 * 1024 * 1024  #: the write-ahead log is cut back to this after a checkpoint
REDIS_TIMEOUT_SECONDS = 0.25  #: connect and read timeout for Redis
REDIS_PREFIX = "authn:lockout:"
REDIS_UNLOCKS = "authn:unlocks"  #: the unlock generation (outside REDIS_PREFIX: not a counter)


@dataclass(frozen=True, slots=True)
class Count:
    """A live counter: ``failures`` so far, reset at wall-clock time ``expires``."""

    failures: int
    expires: float


class LockoutStore(Protocol):
    """What every counter store offers. Every method raises StoreUnavailable on faults."""

    description: str  #: for logs and the status page, never a password

    def get(self, keys: Sequence[str]) -> dict[str, Count]:
        """The live counters among ``keys`` (absent or expired keys are left out)."""
        ...

    def client_is_clean(self, client: str) -> bool:
        """True when no live failure is counted under ``client`` (a counted address) nor
        under any (``client``, login) pair: one read that clears every login of a clean
        address at once. A store that cannot tell cheaply answers False (then each pair is
        read)."""
        ...

    def reserve(
        self, limits: Sequence[tuple[str, int]], window: int, clean: Callable[[], bool] | None = None
    ) -> tuple[str, dict[str, Count]]:
        """Atomically, for a check about to run: ``"locked"`` when a key's live failures
        reached its limit; ``"crowded"`` when its failures plus the checks now in flight
        (pending) reached it; else one more pending check under every key and ``"counted"``.
        Returns the status and the live failure counters. ``clean`` (asked by a store with
        failure marks, once it noted where the keys' places stand): True when the caller
        knows that no failure is counted under the keys' client, whose failure mark is
        unchanged since a read found none; the failures are not read then."""
        ...

    def settle(
        self,
        keys: Sequence[str],
        *,
        failed: bool,
        clear: Sequence[str],
        window: int,
        client: str | None = None,
    ) -> None:
        """The end of a check reserved under ``keys``: one pending check less under each;
        ``failed``: one failure more under each (a key with no live failures starts a window
        of ``window`` seconds); the failures of the keys in ``clear`` are forgotten.
        ``client``: the counted address whose failure mark a failure changes (a store with
        failure marks does it after storing the failure, before freeing its places)."""
        ...

    def give_back(self, decrement: Sequence[str], delete: Sequence[str]) -> None:
        """Take one failure back from each key of ``decrement`` (never below zero; the
        window is kept) and forget the keys of ``delete``."""
        ...

    def top(self, limit: int) -> list[tuple[str, Count]]:
        """Up to ``limit`` live counters, highest first (for the status page)."""
        ...

    def unlock(self, keys: Sequence[str]) -> None:
        """Delete ``keys`` (an admin's ``authn lockout unlock``), then change the
        :meth:`unlock_generation`, so every process forgets the locks it remembers."""
        ...

    def unlock_generation(self) -> object:
        """A value that changes with every :meth:`unlock` (cheap: a shared memory read for
        SQLite, one Redis GET)."""
        ...


# --- SQLite -------------------------------------------------------------------------------

#: how long a check in flight holds its place (a process that died mid-check frees it then)
PENDING_SECONDS = 30.0
#: reads of the failures a reservation makes while failures of its keys keep settling
RESERVE_ATTEMPTS = 20
_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS counters ("
    " key TEXT PRIMARY KEY, failures INTEGER NOT NULL, expires REAL NOT NULL,"
    " pending INTEGER NOT NULL DEFAULT 0, pending_until REAL NOT NULL DEFAULT 0"
    ") WITHOUT ROWID"
)
_PENDING_UP = (
    "INSERT INTO counters (key, failures, expires, pending, pending_until) VALUES (?1, 0, 0, 1, ?2 + ?3) "
    "ON CONFLICT (key) DO UPDATE SET"
    " failures = CASE WHEN expires <= ?2 THEN 0 ELSE failures END,"
    " expires = CASE WHEN expires <= ?2 THEN 0 ELSE expires END,"
    " pending = CASE WHEN pending_until <= ?2 THEN 1 ELSE pending + 1 END,"
    " pending_until = ?2 + ?3"
)
_FAILED = (
    "INSERT INTO counters (key, failures, expires, pending, pending_until) VALUES (?1, 1, ?2 + ?3, 0, 0) "
    "ON CONFLICT (key) DO UPDATE SET"
    " failures = CASE WHEN expires <= ?2 THEN 1 ELSE failures + 1 END,"
    " expires = CASE WHEN expires <= ?2 THEN ?2 + ?3 ELSE expires END,"
    " pending = max(0, pending - 1)"
)


def take_queue(fd: int, deadline: float, store: str) -> None:
    """Take the writers' lock file (``flock``) by ``deadline`` (a monotonic time), or raise
    StoreUnavailable: our own writers hold it for a short transaction each, so waiting
    longer means something outside authn holds it, and the store counts as down (the
    lockout fails open, logged) instead of every request hanging behind it."""
    pause = 0.0005
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() >= deadline:
                raise StoreUnavailable(
                    f"{store}: its lock file was held by another process for {SQLITE_BUSY_SECONDS:.0f} s"
                ) from None
            time.sleep(pause)
            pause = min(pause * 2, 0.01)


def open_database(path: str, queue_fd: int, store: str, schema: Sequence[str]) -> sqlite3.Connection:
    """A connection to the SQLite database ``path`` in WAL mode with ``schema`` applied,
    opened in the writers' queue: children opening a new database at once would otherwise
    race on switching it to WAL ("database is locked" at once, with no busy wait). Raises
    OSError or sqlite3.Error."""
    take_queue(queue_fd, time.monotonic() + SQLITE_BUSY_SECONDS, store)
    try:
        conn = sqlite3.connect(
            path, timeout=SQLITE_BUSY_SECONDS, isolation_level=None, check_same_thread=False
        )
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")  # may lose the last writes on power loss
        conn.execute(f"PRAGMA journal_size_limit={WAL_LIMIT_BYTES}")
        for statement in schema:
            conn.execute(statement)
        return conn
    finally:
        fcntl.flock(queue_fd, fcntl.LOCK_UN)


@contextlib.contextmanager
def queued_transaction(conn: sqlite3.Connection, queue_fd: int, store: str) -> Iterator[sqlite3.Connection]:
    """One write transaction on ``conn`` after waiting our turn on the writers' lock file
    (:func:`take_queue`), committed when the block ends (rolled back if it raises). The
    queue and SQLite's own busy wait share one :data:`SQLITE_BUSY_SECONDS` deadline: a
    transaction held outside authn (an admin's sqlite3 shell) makes the request fail open
    after it, instead of every writer waiting its full time in a chain."""
    deadline = time.monotonic() + SQLITE_BUSY_SECONDS
    take_queue(queue_fd, deadline, store)
    try:
        left = max(1, int((deadline - time.monotonic()) * 1000))
        conn.execute(f"PRAGMA busy_timeout={left}")
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
            conn.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            raise
    finally:
        fcntl.flock(queue_fd, fcntl.LOCK_UN)


class FailureMarks:
    """Per client address, a mark that changes whenever a failure is counted for it.

    A table of :data:`SLOTS` 8-byte slots in a file mapped by every process of the machine;
    a client address picks its slot by CRC-32. Counting a failure writes fresh random bytes
    into the client's slot *after* the counter is stored. A process that read the slot, then
    found no counter for (client, user) in the store, may trust that clean record for as long
    as the slot still holds the same bytes: any later failure of that client changed it. This
    is what lets a good user's request skip the store read in every one of 20 or more prefork
    children, while a guesser elsewhere (another slot) changes nothing for that user. Two
    addresses that share a slot only cost each other store reads. Writes are whole fresh
    values, never read-modify-write, so racing writers can never restore a value a reader
    remembers. Only for stores on this machine: failures counted on another machine (Redis)
    do not change these marks.
    """

    SLOTS = 4096
    SIZE = 8
    #: one more slot after the table: the unlock generation (see :meth:`unlocks`)
    UNLOCKS_AT = SLOTS * SIZE

    def __init__(self, path: str) -> None:
        self._map, fd = map_private_file(path, self.UNLOCKS_AT + self.SIZE)
        os.close(fd)

    def _offset(self, client: str) -> int:
        return (zlib.crc32(client.encode("utf-8", "surrogateescape")) % self.SLOTS) * self.SIZE

    def read(self, client: str) -> bytes:
        at = (zlib.crc32(client.encode("utf-8", "surrogateescape")) % self.SLOTS) * self.SIZE
        return self._map[at : at + self.SIZE]

    def bump(self, client: str) -> None:
        at = self._offset(client)
        self._map[at : at + self.SIZE] = os.urandom(self.SIZE)

    def unlocks(self) -> bytes:
        """The unlock generation: fresh random bytes after each admin unlock."""
        return self._map[self.UNLOCKS_AT : self.UNLOCKS_AT + self.SIZE]

    def bump_unlocks(self) -> None:
        self._map[self.UNLOCKS_AT : self.UNLOCKS_AT + self.SIZE] = os.urandom(self.SIZE)


class InFlight:
    """The checks in flight (*pending* places) of every process of the machine, in shared
    memory beside the SQLite database (``<database>.inflight``).

    A place taken before a check and freed after it costs two short table updates, where
    two SQLite write transactions (queued behind every other writer of the machine) cost
    about half a millisecond of CPU each: the database is written only for what must last,
    a failure, or clearing a pair that had failures.

    :data:`BUCKETS` buckets of :data:`WAYS` slots of (key tag, places, settled failures,
    until); a key lives in the bucket its tag names. A key's places all expire
    :data:`PENDING_SECONDS` after its last reservation (a process that died mid-check), as
    in the database. Every change happens under the table's lock, held for a few
    microseconds (no I/O inside): a ``lockf`` on the file's first byte (between processes)
    and a thread lock (between the threads of a process, which share ``lockf``'s locks). A
    failure freeing its place adds one to its way's *settled* count (never reset): a
    reservation that read the failures before taking the lock sees it changed (its stamp)
    and reads again
    (:meth:`SqliteStore.reserve`). A bucket whose slots all hold places answers "no place"
    (the check waits, as when crowded): a flood cannot make a place disappear.
    """

    BUCKETS = 2048
    WAYS = 8
    SALT = 16  #: random bytes at the file's start that key the tags (see :meth:`tags`)
    HEADER = 64
    _BUCKET = struct.Struct(f"<{WAYS}Q{WAYS}I{WAYS}I{WAYS}d")  # tags, places, settled, until

    def __init__(self, path: str) -> None:
        length = self.HEADER + self.BUCKETS * self._BUCKET.size
        self._map, self._fd = map_private_file(path, length)  # the descriptor: for lockf
        self._path = path
        self._threads = threading.Lock()
        self._tags: dict[str, int] = {}
        self._siblings: dict[int, float] = {}  # pid -> until when it is known as a sibling
        self.lock()  # a new table: the first process to look draws its salt, whole
        try:
            if not any(self._map[: self.SALT]):
                self._map[: self.SALT] = os.urandom(self.SALT)
            self._salt = self._map[: self.SALT]
        finally:
            self.unlock()

    def lock(self) -> None:
        """Take the table's lock, or raise StoreUnavailable. :meth:`unlock` gives it back.

        Held by another child of this Apache (a sibling: our holders keep it for
        microseconds), the wait is the kernel's (a blocking ``lockf``: the waiter burns no
        CPU and wakes when it is free). Held by any other process (something outside authn,
        or another Apache sharing the folder), the wait is bounded by
        :data:`SQLITE_BUSY_SECONDS`, after which the store counts as down (fail open).
        """
        deadline = time.monotonic() + SQLITE_BUSY_SECONDS
        if not self._threads.acquire(timeout=SQLITE_BUSY_SECONDS):
            raise StoreUnavailable(f"lockout store {self._path}: busy for {SQLITE_BUSY_SECONDS:.0f} s")
        tries = 0
        while True:
            try:
                fcntl.lockf(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, 0)
                return
            except OSError:
                pass
            if tries == 0 and self._held_by_sibling():
                try:
                    fcntl.lockf(self._fd, fcntl.LOCK_EX, 1, 0)
                    return
                except OSError:
                    pass
            if time.monotonic() >= deadline:
                self._threads.release()
                raise StoreUnavailable(
                    f"lockout store {self._path}: held by another process for {SQLITE_BUSY_SECONDS:.0f} s"
                )
            tries += 1
            time.sleep(min(0.00005 * 2**tries, 0.002))

    _FLOCK = struct.Struct("@hhqqi4x")  # struct flock (x86-64, aarch64): type, whence, start, len, pid

    def _held_by_sibling(self) -> bool:
        """True when the process holding the lock is a child of our own parent (another
        child of this Apache), or the lock is free again."""
        try:
            answer = fcntl.fcntl(
                self._fd, fcntl.F_GETLK, self._FLOCK.pack(fcntl.F_WRLCK, os.SEEK_SET, 0, 1, 0)
            )
            kind, _, _, _, pid = self._FLOCK.unpack(answer)
            if kind == fcntl.F_UNLCK:
                return True
            now = time.monotonic()
            if self._siblings.get(pid, 0.0) > now:  # a sibling seen in the last minute
                return True
            with open(f"/proc/{pid}/stat", "rb") as stat_file:
                parent = int(stat_file.read().rsplit(b")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError, struct.error):
            return False
        if parent != os.getppid() or parent == 1:
            return False
        if len(self._siblings) >= 1024:
            self._siblings.clear()
        self._siblings[pid] = now + 60.0
        return True

    def unlock(self) -> None:
        try:
            fcntl.lockf(self._fd, fcntl.LOCK_UN, 1, 0)
        finally:
            self._threads.release()

    def tags(self, keys: Sequence[str]) -> list[int]:
        """The 64-bit tags the keys are found by in the table (never 0: a slot never used),
        keyed by the table's salt: nobody can pick logins that fill the bucket of another
        user's key, and make that user's checks wait."""
        known = self._tags
        found = []
        for key in keys:
            tag = known.get(key)
            if tag is None:
                digest = hashlib.blake2b(
                    key.encode("utf-8", "surrogateescape"), digest_size=8, key=self._salt
                ).digest()
                tag = int.from_bytes(digest, "big") or 1
                if len(known) >= 4096:
                    known.clear()
                known[key] = tag
            found.append(tag)
        return found

    def look(self, tags: Sequence[int], now: float) -> list[tuple[int, int, list[Any]]]:
        """For each key: (its way in its bucket, its live places, the bucket's fields); for
        a key not in the table, the first way without live places (places 0), or way -1
        when every way of the bucket holds places. Without the lock: a stamp to compare
        (:meth:`stamp`); under it, what :meth:`take` and :meth:`give` change."""
        ways, unpack, size, view = self.WAYS, self._BUCKET.unpack_from, self._BUCKET.size, self._map
        out: list[tuple[int, int, list[Any]]] = []
        for i, tag in enumerate(tags):
            bucket = tag % self.BUCKETS
            # two keys of one bucket share its fields, and a new one never takes the other's way
            shared = [
                (way, f)
                for other, (way, _, f) in zip(tags[:i], out, strict=False)
                if other % self.BUCKETS == bucket
            ]
            fields = shared[0][1] if shared else list(unpack(view, self.HEADER + bucket * size))
            if tag in fields[:ways]:
                way = fields.index(tag)
                out.append((way, fields[ways + way] if fields[3 * ways + way] > now else 0, fields))
                continue
            taken = {way for way, _ in shared}
            for way in range(ways):
                if way not in taken and (not fields[ways + way] or fields[3 * ways + way] <= now):
                    out.append((way, 0, fields))
                    break
            else:
                out.append((-1, 0, fields))
        return out

    def stamp(self, looked: Sequence[tuple[int, int, list[Any]]]) -> list[tuple[int, int]]:
        """Where each key is and how many failures it settled (see the class docstring)."""
        ways = self.WAYS
        return [(way, fields[2 * ways + way] if way >= 0 else 0) for way, _, fields in looked]

    def take(self, tags: Sequence[int], looked: Sequence[tuple[int, int, list[Any]]], now: float) -> bool:
        """One more place under every key (``looked`` under this lock), or none and False
        when a bucket is full (the caller holds the lock)."""
        if any(way < 0 for way, _, _ in looked):
            return False
        ways = self.WAYS
        for tag, (way, live, fields) in zip(tags, looked, strict=True):
            # a way's settled count only ever grows, whichever key holds it: a stamp taken
            # before the way changed hands and came back cannot match again (ABA)
            fields[way] = tag
            fields[ways + way], fields[3 * ways + way] = live + 1, now + PENDING_SECONDS
            self._BUCKET.pack_into(self._map, self.HEADER + (tag % self.BUCKETS) * self._BUCKET.size, *fields)
        return True

    def give(self, tags: Sequence[int], *, failed: bool) -> None:
        """One place less under every key that holds one; ``failed``: the check's failure is
        stored already, and the keys' settled counts go up (takes the lock)."""
        ways = self.WAYS
        self.lock()
        try:
            now = time.time()
            for tag, (way, live, fields) in zip(tags, self.look(tags, now), strict=True):
                if way >= 0 and live > 0 and fields[way] == tag:
                    fields[ways + way] = live - 1
                    fields[2 * ways + way] = (fields[2 * ways + way] + failed) & 0xFFFFFFFF
                    self._BUCKET.pack_into(
                        self._map, self.HEADER + (tag % self.BUCKETS) * self._BUCKET.size, *fields
                    )
        finally:
            self.unlock()


def default_folder() -> str:
    """The folder used when ``authn.lockout.dir`` is not set: private to the Apache user."""
    # tempfile.gettempdir()'s variables, without importing tempfile (and shutil, bz2, lzma)
    # into every Apache child
    tmp = next((os.environ[v] for v in ("TMPDIR", "TEMP", "TMP") if os.environ.get(v)), "/tmp")  # noqa: S108 - vetted 0700 folder
    return os.path.join(tmp, f"authn-lockout-{os.geteuid()}")


STALE_SECONDS = 8 * 86400  #: longer than the longest window (a week): no live counter left
_INSTANCE_FILE = re.compile(r"apache-(\d+)\.sqlite3.*")  # the database and its -wal, -shm, .marks


def prune_stale(folder: str, keep: str) -> int:
    """Delete the databases of Apache instances that are gone from the default folder.

    Each instance (parent pid) gets ``apache-<pid>.sqlite3`` and its ``-wal``, ``-shm`` and
    ``.marks`` files. A set is deleted only when its Apache parent is no longer running and
    none of its files changed for :data:`STALE_SECONDS`, so no counter that could still
    lock anybody is lost. ``keep`` (this instance's database name) is never touched. Returns
    how many files were deleted; errors are ignored (another child may prune at once).
    """
    sets: dict[int, list[str]] = {}  # parent pid -> its files
    try:
        names = os.listdir(folder)
    except OSError:
        return 0
    for name in names:
        found = _INSTANCE_FILE.fullmatch(name)
        if found and not keep.startswith(f"apache-{found.group(1)}."):
            sets.setdefault(int(found.group(1)), []).append(name)
    now = time.time()
    deleted = 0
    for pid, files in sets.items():
        try:
            os.kill(pid, 0)
            continue  # that Apache still runs
        except ProcessLookupError:
            pass
        except OSError:
            continue  # runs as someone else, or cannot tell: keep
        try:
            newest = max(os.lstat(os.path.join(folder, f)).st_mtime for f in files)
        except OSError:
            continue
        if now - newest < STALE_SECONDS:
            continue
        for f in files:
            with contextlib.suppress(OSError):
                os.unlink(os.path.join(folder, f))
                deleted += 1
    return deleted


class SqliteStore:
    """Counters in ``<folder>/<name>``, an SQLite database in WAL mode.

    ``private=True`` (the default folder, under /tmp): the folder is created mode 0700 and
    refused unless it belongs to us and nobody else can write to it, so another local user
    cannot plant or read counters. Each process keeps one connection, shared by its threads
    under a lock (a connection per thread costs about 0.2 MB each, 3 MB in a child of 16
    threads, for reads that the failure marks make rare), opened on first use and reopened
    after a fault or a fork.
    """

    def __init__(self, folder: str, name: str = "lockout.sqlite3", *, private: bool = False):
        self.folder = folder
        self.path = os.path.join(folder, name)
        self.private = private
        self.description = f"sqlite:{self.path}"
        self._conn: sqlite3.Connection | None = None
        self._conn_pid = 0
        self._use = threading.RLock()  # held around every use of the connection
        self._next_purge = 0.0
        self._marks: FailureMarks | None = None
        self._marks_tried = False
        self._in_flight: InFlight | None = None
        self._in_flight_tried = False
        self._queue_fd = -1  # the lock file our writers queue on (see _writing)
        self._queue_pid = 0

    def failure_marks(self) -> FailureMarks | None:
        """The :class:`FailureMarks` beside the database, made on first use; None when the
        file cannot be used (then every check reads the store, as before)."""
        if not self._marks_tried:
            self._marks_tried = True
            with contextlib.suppress(OSError, ValueError, StoreUnavailable), self._use:
                self._connection()  # makes and vets the folder
                self._marks = FailureMarks(self.path + ".marks")
        return self._marks

    def in_flight(self) -> InFlight | None:
        """The :class:`InFlight` table beside the database, made on first use; None when
        the file cannot be used (then the places are counted in the database, as before)."""
        if not self._in_flight_tried:
            with self._use:  # threads racing here must all see the table, or all not
                if not self._in_flight_tried:
                    with contextlib.suppress(OSError, ValueError, StoreUnavailable):
                        self._connection()  # makes and vets the folder
                        self._in_flight = InFlight(self.path + ".inflight")
                    self._in_flight_tried = True
        return self._in_flight

    def _connection(self) -> sqlite3.Connection:
        """The process's connection; the caller holds ``self._use``."""
        if self._conn is not None and self._conn_pid == os.getpid():
            return self._conn
        self._conn, self._conn_pid = self._open(), os.getpid()
        return self._conn

    def _open(self) -> sqlite3.Connection:
        try:
            os.makedirs(self.folder, mode=0o700, exist_ok=True)
            if self.private:
                st = os.stat(self.folder)
                if st.st_uid != os.geteuid() or st.st_mode & 0o022:
                    raise StoreUnavailable(
                        f"lockout store {self.path}: folder {self.folder} belongs to uid "
                        f"{st.st_uid} or is writable by others; remove it or set "
                        "authn.lockout.dir to a folder only the Apache user can write"
                    )
            conn = open_database(self.path, self._queue_file(), f"lockout store {self.path}", [_SCHEMA])
            columns = {row[1] for row in conn.execute("PRAGMA table_info(counters)")}
            if "pending" not in columns:  # a database of an earlier version
                conn.execute("ALTER TABLE counters ADD COLUMN pending INTEGER NOT NULL DEFAULT 0")
                conn.execute("ALTER TABLE counters ADD COLUMN pending_until REAL NOT NULL DEFAULT 0")
        except (OSError, sqlite3.Error) as exc:
            raise StoreUnavailable(
                f"lockout store {self.path}: cannot open: {exc}; check that the folder exists "
                "and that the Apache user can write to it (authn.lockout.dir)"
            ) from None
        return conn

    def _fault(self, what: str, exc: Exception) -> StoreUnavailable:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(sqlite3.Error):
                conn.close()
        return StoreUnavailable(f"lockout store {self.path}: {what}: {exc}")

    @contextlib.contextmanager
    def _connected(self, doing: str) -> Iterator[sqlite3.Connection]:
        """The process's connection, under the lock; an SQLite error in the block becomes a
        StoreUnavailable saying what was being done (and the connection is reopened next).
        A thread waits at most :data:`SQLITE_BUSY_SECONDS` for the other threads."""
        if not self._use.acquire(timeout=SQLITE_BUSY_SECONDS):
            raise StoreUnavailable(
                f"lockout store {self.path}: {doing}: busy for {SQLITE_BUSY_SECONDS:.0f} s"
            )
        try:
            conn = self._connection()
            try:
                yield conn
            except sqlite3.Error as exc:
                raise self._fault(doing, exc) from None
        finally:
            self._use.release()

    def get(self, keys: Sequence[str]) -> dict[str, Count]:
        marks = ",".join("?" * len(keys))
        with self._connected("while reading counters") as conn:
            rows = conn.execute(
                f"SELECT key, failures, expires FROM counters WHERE key IN ({marks}) "  # noqa: S608 - only '?' marks
                "AND expires > ? AND failures > 0",
                (*keys, time.time()),
            ).fetchall()
        return {key: Count(failures, expires) for key, failures, expires in rows}

    def client_is_clean(self, client: str) -> bool:
        # the primary key's order: "u <client> <login>" keys sit between "u <client> " and
        # "u <client>!" (space is 0x20, "!" 0x21), so both reads are index ranges
        with self._connected("while reading counters") as conn:
            row = conn.execute(
                "SELECT 1 FROM counters WHERE (key = ?1 OR (key >= ?2 AND key < ?3)) "
                "AND expires > ?4 AND failures > 0 LIMIT 1",
                (f"c {client}", f"u {client} ", f"u {client}!", time.time()),
            ).fetchone()
        return row is None

    def _queue_file(self) -> int:
        """This process's descriptor of the lock file (reopened after a fork: a ``flock``
        belongs to an open file, which a forked child would share with its parent)."""
        if self._queue_fd < 0 or self._queue_pid != os.getpid():
            try:
                fd = os.open(
                    self.path + ".lock", os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600
                )
            except OSError as exc:
                raise StoreUnavailable(
                    f"lockout store {self.path}: cannot open its lock file: {exc.strerror}; check "
                    "that the Apache user can write to the folder (authn.lockout.dir)"
                ) from None
            self._queue_fd, self._queue_pid = fd, os.getpid()
        return self._queue_fd

    @contextlib.contextmanager
    def _writing(self, doing: str) -> Iterator[sqlite3.Connection]:
        """A write transaction, after waiting our turn on the lock file.

        Writers of every process queue in the kernel (``flock``; threads of one process
        queue on ``self._use`` first), so SQLite never sees two of our writers at once and
        its busy timeout cannot be run out by a flood of failures: each waits for the
        short transactions before it. Expired counters are purged and the table bounded
        every :data:`PURGE_EVERY_SECONDS` by whoever writes then.
        """
        with (
            self._connected(doing) as conn,
            queued_transaction(conn, self._queue_file(), f"lockout store {self.path}"),
        ):
            yield conn
            now = time.time()
            if now >= self._next_purge:
                self._next_purge = now + PURGE_EVERY_SECONDS
                self._purge(conn, now)

    @staticmethod
    def _purge(conn: sqlite3.Connection, now: float) -> None:
        conn.execute("DELETE FROM counters WHERE expires <= ?1 AND pending_until <= ?1", (now,))
        (count,) = conn.execute("SELECT count(*) FROM counters").fetchone()
        if count > MAX_COUNTERS:
            # the lowest counts first, the oldest of those first: one-failure addresses of a
            # flood go long before a counter that is near or at its lock
            conn.execute(
                "DELETE FROM counters WHERE key IN (SELECT key FROM counters "
                "ORDER BY failures, expires LIMIT ?)",
                (count - MAX_COUNTERS * 9 // 10,),
            )

    def reserve(
        self, limits: Sequence[tuple[str, int]], window: int, clean: Callable[[], bool] | None = None
    ) -> tuple[str, dict[str, Count]]:
        table = self.in_flight()
        if table is None:
            return self._reserve_in_database(limits)
        keys = [key for key, _ in limits]
        tags = table.tags(keys)
        for _ in range(RESERVE_ATTEMPTS):
            # The failures are read outside the table's lock (kept for microseconds); a
            # failure settled meanwhile changed its keys' stamps (slot, settled count), and
            # the read is redone: failures + places never count a check short.
            stamp = table.stamp(table.look(tags, time.time()))
            # after the stamps: a failure freed its place after changing its client's mark
            live: dict[str, Count] = {} if clean is not None and clean() else self.get(keys)
            table.lock()
            try:
                now = time.time()
                looked = table.look(tags, now)
                if table.stamp(looked) != stamp:
                    continue
                if any(live[key].failures >= limit for key, limit in limits if key in live):
                    return "locked", live
                for (key, limit), (_, held, _) in zip(limits, looked, strict=True):
                    if (live[key].failures if key in live else 0) + held >= limit:
                        return "crowded", live
                if not table.take(tags, looked, now):
                    return "crowded", live
            finally:
                table.unlock()
            return "counted", live
        return "crowded", live  # failures settling without pause: wait for them like a crowd

    def _reserve_in_database(self, limits: Sequence[tuple[str, int]]) -> tuple[str, dict[str, Count]]:
        now = time.time()
        keys = [key for key, _ in limits]
        marks = ",".join("?" * len(keys))
        with self._writing("while counting a failure") as conn:
            rows = conn.execute(
                f"SELECT key, failures, expires, pending, pending_until FROM counters WHERE key IN ({marks})",  # noqa: S608 - only '?' marks
                keys,
            ).fetchall()
            failures = {key: (f if exp > now else 0, exp) for key, f, exp, _, _ in rows}
            pending = {key: (p if until > now else 0) for key, _, _, p, until in rows}
            live = {key: Count(f, exp) for key, (f, exp) in failures.items() if f > 0}
            if any(failures.get(key, (0, 0.0))[0] >= limit for key, limit in limits):
                return "locked", live
            if any(failures.get(key, (0, 0.0))[0] + pending.get(key, 0) >= limit for key, limit in limits):
                return "crowded", live
            for key in keys:
                conn.execute(_PENDING_UP, (key, now, PENDING_SECONDS))
        return "counted", live

    def settle(
        self,
        keys: Sequence[str],
        *,
        failed: bool,
        clear: Sequence[str],
        window: int,
        client: str | None = None,
    ) -> None:
        table = self.in_flight()
        if table is None:
            self._settle_in_database(keys, failed=failed, clear=clear, window=window)
            return
        try:
            # a failure is stored, then its client's mark changed, then its places freed
            # (see reserve); a right password writes only to clear a pair that has failures
            if failed or (clear and self.get(clear)):
                self._settle_in_database(keys if failed else [], failed=failed, clear=clear, window=window)
                marks = self.failure_marks()
                if failed and client is not None and marks is not None:
                    marks.bump(client)
        except StoreUnavailable:
            table.give(table.tags(keys), failed=False)
            raise
        table.give(table.tags(keys), failed=failed)

    def _settle_in_database(
        self, keys: Sequence[str], *, failed: bool, clear: Sequence[str], window: int
    ) -> None:
        now = time.time()
        with self._writing("while settling a check") as conn:
            for key in keys:
                if failed:
                    conn.execute(_FAILED, (key, now, window))
                else:
                    conn.execute("UPDATE counters SET pending = max(0, pending - 1) WHERE key = ?", (key,))
            for key in clear:
                conn.execute("UPDATE counters SET failures = 0, expires = 0 WHERE key = ?", (key,))
            done = [*keys, *clear]
            marks = ",".join("?" * len(done))
            conn.execute(
                f"DELETE FROM counters WHERE key IN ({marks}) AND (expires <= ? OR failures <= 0) "  # noqa: S608
                "AND (pending <= 0 OR pending_until <= ?)",
                (*done, now, now),
            )

    def give_back(self, decrement: Sequence[str], delete: Sequence[str]) -> None:
        with self._writing("while giving a failure back") as conn:
            for key in decrement:
                conn.execute("UPDATE counters SET failures = failures - 1 WHERE key = ?", (key,))
                conn.execute("DELETE FROM counters WHERE key = ? AND failures <= 0", (key,))
            for key in delete:
                conn.execute("DELETE FROM counters WHERE key = ?", (key,))

    def top(self, limit: int) -> list[tuple[str, Count]]:
        with self._connected("while listing counters") as conn:
            rows = conn.execute(
                "SELECT key, failures, expires FROM counters WHERE expires > ? AND failures > 0 "
                "ORDER BY failures DESC LIMIT ?",
                (time.time(), limit),
            ).fetchall()
        return [(key, Count(failures, expires)) for key, failures, expires in rows]

    def unlock(self, keys: Sequence[str]) -> None:
        with self._writing("while unlocking") as conn:
            conn.executemany("DELETE FROM counters WHERE key = ?", [(key,) for key in keys])
        marks = self.failure_marks()
        if marks is None:
            raise StoreUnavailable(
                f"lockout store {self.path}: the counters are deleted, but {self.path}.marks "
                "cannot be opened, so Apache children may refuse a known lock until it ends"
            )
        marks.bump_unlocks()

    def unlock_generation(self) -> object:
        marks = self.failure_marks()
        return marks.unlocks() if marks is not None else None


# --- Redis --------------------------------------------------------------------------------


# KEYS: n failure counters, then their n pending counters; ARGV[1]: seconds a pending check
# holds its place, ARGV[2..]: each key's limit. Replies [status, failures, pttl, ...] with
# status 0 locked, 1 crowded, 2 counted (one more pending check under every key).
_RESERVE_LUA = """
local n = #KEYS / 2
local status = 2
local reply = {}
for i = 1, n do
  local f = tonumber(redis.call('GET', KEYS[i]) or '0')
  local p = tonumber(redis.call('GET', KEYS[n + i]) or '0')
  local limit = tonumber(ARGV[i + 1])
  if f >= limit then status = 0 elseif f + p >= limit and status == 2 then status = 1 end
  table.insert(reply, f)
  table.insert(reply, redis.call('PTTL', KEYS[i]))
end
if status == 2 then
  for i = 1, n do
    redis.call('INCR', KEYS[n + i])
    redis.call('EXPIRE', KEYS[n + i], ARGV[1])
  end
end
table.insert(reply, 1, status)
return reply
"""
# KEYS: n failure counters, then their n pending counters; ARGV[1]: 1 when the check failed,
# ARGV[2]: the window, ARGV[3..]: 1 where the key's failures are cleared
_SETTLE_LUA = """
local n = #KEYS / 2
for i = 1, n do
  if tonumber(redis.call('GET', KEYS[n + i]) or '0') > 0 then
    if redis.call('DECR', KEYS[n + i]) <= 0 then redis.call('DEL', KEYS[n + i]) end
  end
  if ARGV[1] == '1' then
    redis.call('INCR', KEYS[i])
    if redis.call('TTL', KEYS[i]) < 0 then redis.call('EXPIRE', KEYS[i], ARGV[2]) end
  elseif ARGV[i + 2] == '1' then
    redis.call('DEL', KEYS[i])
  end
end
return 0
"""
# KEYS: ARGV[1] counters to take one failure from (never below zero), then counters to delete
_GIVE_BACK_LUA = """
local n = tonumber(ARGV[1])
for i, key in ipairs(KEYS) do
  if i <= n then
    if tonumber(redis.call('GET', key) or '0') > 0 then
      if redis.call('DECR', key) <= 0 then redis.call('DEL', key) end
    end
  else
    redis.call('DEL', key)
  end
end
return 0
"""


def _redis_module() -> Any:
    try:
        import redis  # optional: only for authn.lockout.store redis
    except ImportError:
        raise StoreUnavailable(
            "lockout store redis: the Python package 'redis' is not installed in Apache's "
            "venv; install it (pip install 'authn[redis]') or use authn.lockout.store sqlite"
        ) from None
    return redis


class RedisStore:
    """Counters in Redis under ``authn:lockout:<key>``, expiring by Redis's own clock.

    ``url`` is a redis-py URL (``redis://host:6379/0``, ``rediss://`` for TLS,
    ``unix:///run/redis.sock``). Connections come from redis-py's pool, which is thread-safe
    and reconnects (also after a fork) by itself.
    """

    def __init__(self, url: str) -> None:
        redis = _redis_module()
        self._errors: tuple[type[BaseException], ...] = (redis.RedisError, OSError)
        self._client = redis.Redis.from_url(
            url,
            socket_timeout=REDIS_TIMEOUT_SECONDS,
            socket_connect_timeout=REDIS_TIMEOUT_SECONDS,
            retry_on_timeout=False,
        )
        self._reserve = self._client.register_script(_RESERVE_LUA)
        self._settle = self._client.register_script(_SETTLE_LUA)
        self._give_back = self._client.register_script(_GIVE_BACK_LUA)
        kwargs = self._client.connection_pool.connection_kwargs
        where = kwargs.get("path") or f"{kwargs.get('host')}:{kwargs.get('port')}"
        self.description = f"redis:{where}/{kwargs.get('db', 0)}"  # never the password

    def _fault(self, what: str, exc: BaseException) -> StoreUnavailable:
        return StoreUnavailable(
            f"lockout store {self.description}: {what}: {exc}; check that Redis runs and "
            "answers at authn.lockout.redis"
        )

    def client_is_clean(self, client: str) -> bool:
        return False  # a key scan: read the pair instead (Redis has no failure marks)

    def get(self, keys: Sequence[str]) -> dict[str, Count]:
        pipe = self._client.pipeline(transaction=False)
        for key in keys:
            pipe.get(REDIS_PREFIX + key)
            pipe.pttl(REDIS_PREFIX + key)
        try:
            replies = pipe.execute()
        except self._errors as exc:
            raise self._fault("while reading counters", exc) from None
        return self._counts(keys, replies[0::2], replies[1::2])

    @staticmethod
    def _counts(keys: Sequence[str], values: list[Any], ttls: list[Any]) -> dict[str, Count]:
        now = time.time()
        counts: dict[str, Count] = {}
        for key, value, ttl in zip(keys, values, ttls, strict=True):
            if value is not None and int(ttl) > 0:
                counts[key] = Count(int(value), now + int(ttl) / 1000)
        return counts

    def reserve(
        self, limits: Sequence[tuple[str, int]], window: int, clean: Callable[[], bool] | None = None
    ) -> tuple[str, dict[str, Count]]:
        names = [key for key, _ in limits]
        keys = [REDIS_PREFIX + key for key in names] + [f"{REDIS_PREFIX}pending:{key}" for key in names]
        try:
            reply = self._reserve(keys=keys, args=[int(PENDING_SECONDS), *(limit for _, limit in limits)])
        except self._errors as exc:
            raise self._fault("while counting a failure", exc) from None
        status, values, ttls = int(reply[0]), reply[1::2], reply[2::2]
        counts = self._counts(names, [v if int(v) > 0 else None for v in values], ttls)
        return ("locked", "crowded", "counted")[status], counts

    def settle(
        self,
        keys: Sequence[str],
        *,
        failed: bool,
        clear: Sequence[str],
        window: int,
        client: str | None = None,
    ) -> None:
        names = list(keys)
        redis_keys = [REDIS_PREFIX + key for key in names] + [f"{REDIS_PREFIX}pending:{key}" for key in names]
        flags = ["1" if key in clear else "0" for key in names]
        try:
            self._settle(keys=redis_keys, args=["1" if failed else "0", window, *flags])
        except self._errors as exc:
            raise self._fault("while settling a check", exc) from None

    def give_back(self, decrement: Sequence[str], delete: Sequence[str]) -> None:
        try:
            self._give_back(keys=[REDIS_PREFIX + k for k in (*decrement, *delete)], args=[len(decrement)])
        except self._errors as exc:
            raise self._fault("while giving a failure back", exc) from None

    def top(self, limit: int) -> list[tuple[str, Count]]:
        try:
            names = []
            for name in self._client.scan_iter(match=REDIS_PREFIX + "*", count=500):
                key = name.decode("utf-8", "replace")[len(REDIS_PREFIX) :]
                if key.startswith(("c ", "u ")):  # not the checks in flight, nor the unlocks
                    names.append(key)
                if len(names) >= 10 * limit:
                    break
            counts = self.get(names) if names else {}
        except self._errors as exc:
            raise self._fault("while listing counters", exc) from None
        ranked = sorted(counts.items(), key=lambda item: -item[1].failures)
        return ranked[:limit]

    def unlock(self, keys: Sequence[str]) -> None:
        pipe = self._client.pipeline(transaction=True)
        if keys:
            pipe.delete(*(REDIS_PREFIX + key for key in keys))
        pipe.incr(REDIS_UNLOCKS)
        try:
            pipe.execute()
        except self._errors as exc:
            raise self._fault("while unlocking", exc) from None

    def unlock_generation(self) -> object:
        try:
            return self._client.get(REDIS_UNLOCKS)
        except self._errors as exc:
            raise self._fault("while reading the unlock generation", exc) from None
