"""Lockout and throttling of password guessing: the policy, its counters and its options.

What is counted
---------------
Every failed password check (unknown user, wrong password, disabled or refused account:
:data:`authn.verdict.COUNTED`) counts one failure under two keys, both tied to the client
address Apache gives us
(``req.useragent_ip``; behind a proxy, mod_remoteip sets it from the proxy's header; we never
read a forwarding header ourselves):

* the **pair** key, (account, client address): once ``authn.lockout.threshold`` failures
  (default 10) are counted within the window, that user is locked out *from that address
  only*;
* the **client** key, the address alone: once ``authn.lockout.client_threshold`` failures
  (default 100) are counted for any users, the whole address is locked out, which stops one
  address from trying many user names.

Nothing is counted per user alone, on purpose: a counter that any address could raise would
let an attacker lock a real user out from everywhere, the user's own address included. A
guesser elsewhere therefore never locks the user out; what the guesser can do from one
address is ``threshold`` guesses per user and ``client_threshold`` guesses in all per window.

A window starts with the first failure of a key and lasts ``authn.lockout.window`` seconds
(default 600); the counter then starts again from zero. While a key is locked its requests
are refused before any password is checked (429 with ``Retry-After``) and are not counted, so
the lockout ends at a time known in advance. A successful login clears the pair counter (a
user who mistyped is not punished later), never the client counter: one valid account must
not let an address reset its budget for guessing others. An empty password is refused
before any check and is not counted: it tells a guesser nothing.

The account is the login for a password file, and the entry's DN for a directory (an
unknown login folded as the directory compares strings), see
:meth:`authn.authenticator.Authenticator.identity`.

A failure is counted *before* its check (:meth:`Lockout.reserve`, atomic in the store) and
given back when the check succeeds (:meth:`Lockout.settle`), so a burst of concurrent guesses
gets at most ``threshold`` real checks per pair and ``client_threshold`` per address.

A store that cannot answer makes the lockout fail open: requests are authenticated as if no
lockout were configured, one error line is logged when the store goes down (and once a
minute while it stays down), one when it answers again. The store is not asked again for
:data:`RETRY_SECONDS` after a fault, so a dead Redis costs no time per request.

Nothing here imports ``mod_python``: the request policy (:mod:`authn.gate`) calls
:meth:`Lockout.check` for a request that needs no check (a cached verdict, the access
handler's first look) and :meth:`Lockout.reserve` / :meth:`Lockout.settle` around each check.
"""

from __future__ import annotations

import dataclasses
import functools
import ipaddress
import logging
import math
import os
import threading
import time
from dataclasses import dataclass
from typing import Any, Literal

from authn import metrics
from authn.errors import StoreUnavailable
from authn.lockout.stores import (
    Count,
    FailureMarks,
    LockoutStore,
    RedisStore,
    SqliteStore,
    default_folder,
    prune_stale,
)
from authn.settings import (
    DEFAULT_CLIENT_THRESHOLD,
    DEFAULT_THRESHOLD,
    DEFAULT_WINDOW,
    LockoutSettings,
    Settings,
)

log = logging.getLogger("authn")

RETRY_SECONDS = 5.0  #: after a store fault, the store is left alone this long
REMIND_SECONDS = 60.0  #: while the store stays down, a reminder line this often
CLEAN_SECONDS = 1.0  #: a clean (client, user) record is trusted this long without a store read
#: ... and this long while the client's failure mark (SQLite store) has not changed
CLEAN_MARKED_SECONDS = 60.0
#: a Redis store's unlock generation is read at most this often by a process under a lock
UNLOCK_POLL_SECONDS = 0.5
CLEAN_MAX = 4096  #: clean records kept per process (all dropped when full)
CLIENT_LOCKED = "client address locked out"  #: Decision.reason of a locked address
CROWDED = "too many checks in flight"  #: Decision.reason when checks in flight never settled
CROWDED_WAIT_SECONDS = 5.0  #: how long a check waits for the checks in flight before it
PAIR_LOCKED = "user locked out from this address"  #: Decision.reason of a locked pair
MAX_USER_IN_KEY = 256  #: longer names are cut in keys: only an attacker's junk shares a prefix


# --- keys ---------------------------------------------------------------------------------


@functools.lru_cache(maxsize=8192)
def _ipv6_network(client: str) -> str:
    try:
        address = ipaddress.IPv6Address(client.split("%", 1)[0])
    except ValueError:
        return client
    if address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return str(ipaddress.IPv6Network((address, 64), strict=False))


def counted_address(client: str) -> str:
    """What the lockout counts a client under: an IPv4 address as it is; an IPv6 address
    by its /64 network (one host usually holds a whole /64, so counting each /128 apart
    would give it a fresh budget per address); an IPv4-mapped IPv6 address as IPv4."""
    return _ipv6_network(client) if ":" in client else client


def client_key(client: str) -> str:
    return f"c {counted_address(client)}"


def pair_key(client: str, user: str) -> str:
    return f"u {counted_address(client)} {user[:MAX_USER_IN_KEY]}"


def describe_key(key: str) -> tuple[str, str, str | None]:
    """``(kind, client, user)`` of a key, kind "client" or "pair" (for the status page)."""
    kind, _, rest = key.partition(" ")
    if kind == "u":
        client, _, user = rest.partition(" ")
        return "pair", client, user
    return "client", rest, None


# --- the policy ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Policy:
    """Thresholds and window; see the module docstring."""

    threshold: int = DEFAULT_THRESHOLD
    client_threshold: int = DEFAULT_CLIENT_THRESHOLD
    window: int = DEFAULT_WINDOW

    @classmethod
    def of(cls, settings: LockoutSettings) -> Policy:
        return cls(settings.threshold, settings.client_threshold, settings.window)


@dataclass(frozen=True, slots=True)
class Decision:
    """What the lockout says about one request.

    ``locked``: refuse it now, for ``retry_after`` seconds, and ``reason`` says which key.
    ``pair_failures``: failures counted for this (user, client) when it was looked at, so a
    success clears the counter only when there is one (no write on the common path).
    """

    locked: bool = False
    retry_after: int = 0
    reason: str = ""
    pair_failures: int = 0
    #: a lock this process already knew (no store read, and the handler logs it only once)
    repeat: bool = False


OPEN = Decision()
Settled = Literal["failed", "granted", "fault"]


@dataclass(frozen=True, slots=True)
class Reservation:
    """A failure counted before a check (:meth:`Lockout.reserve`): ``decision`` says whether
    the check may go on; ``counted`` whether anything was written that :meth:`Lockout.settle`
    may have to give back."""

    client: str
    user: str
    decision: Decision
    counted: bool


class Stats:
    """Per-process counters for the status page (plain ints: a lost increment under a thread
    race is acceptable for statistics, a lock on every request is not)."""

    def __init__(self) -> None:
        self.started = time.time()
        self.checks = 0  #: requests looked at by the access handler
        self.refused = 0  #: requests refused with 429
        self.failures = 0  #: failed password checks counted
        self.successes = 0  #: successful password checks seen
        self.cleared = 0  #: pair counters cleared by a success
        self.store_errors = 0  #: store faults (each one failed open)
        self.skipped = 0  #: requests let through unchecked while the store was down

    def as_dict(self) -> dict[str, int]:
        return {k: v for k, v in vars(self).items() if k != "started"}


STATS = Stats()


def _remember(records: dict[Any, Any], key: object, value: object) -> None:
    """``records[key] = value``, in a per-process dict of at most :data:`CLEAN_MAX` records
    (all dropped when full: each is only a shortcut past a store read)."""
    if len(records) >= CLEAN_MAX:
        records.clear()
    records[key] = value


class Lockout:
    """A policy applied with a store. Thread-safe; one per distinct (policy, store)."""

    def __init__(self, policy: Policy, store: LockoutStore) -> None:
        self.policy = policy
        self.store = store
        self._down_since: float | None = None
        self._retry_at = 0.0
        self._reminded_at = 0.0
        self._lock = threading.Lock()
        # (client, user) -> until when a clean record (no counter at all) is trusted, and
        # the client's failure mark when it was read (None: no marks, time bound only)
        self._clean: dict[tuple[str, str | None], tuple[float, bytes | None]] = {}
        # client -> the same for every login of a client with no failure at all (SQLite,
        # with failure marks only): a good address's first request of each login (a shared
        # proxy, a NAT) reads the store once, not once per login and process
        self._clean_clients: dict[str, tuple[float, bytes]] = {}
        # client -> the same for a client that has failures (its reservations read the pair)
        self._dirty_clients: dict[str, tuple[float, bytes]] = {}
        marks = getattr(store, "failure_marks", None)
        self._marks_of_store = marks if callable(marks) else None
        # (client, user) -> until when a known lock holds, its Decision, whether a refusal
        # under it was already reported (logged) by this process, and the store's unlock
        # generation when it was learned (an admin's unlock changes it: see _known_lock)
        self._locked: dict[tuple[str, str | None], tuple[float, Decision, bool, object]] = {}
        self._unlocks_seen: object = None
        self._unlocks_until = 0.0

    # -- store health: fail open, retry after a pause, log transitions ---------------------

    def _usable(self) -> bool:
        if self._down_since is None:
            return True
        now = time.monotonic()
        if now < self._retry_at:
            STATS.skipped += 1
            return False
        return True

    def _fault(self, exc: StoreUnavailable) -> None:
        STATS.store_errors += 1
        metrics.add("lockout_store_errors")
        now = time.monotonic()
        with self._lock:
            self._retry_at = now + RETRY_SECONDS
            if self._down_since is None:
                self._down_since = self._reminded_at = now
                log.error(
                    "authn: lockout store down, failing open (passwords are still checked, "
                    "nobody is locked out) until it answers again: %s",
                    exc,
                )
            elif now - self._reminded_at >= REMIND_SECONDS:
                self._reminded_at = now
                log.error(
                    "authn: lockout store still down after %.0f s, failing open: %s",
                    now - self._down_since,
                    exc,
                )

    def _recovered(self) -> None:
        if self._down_since is not None:
            with self._lock:
                if self._down_since is not None:
                    log.error(
                        "authn: lockout store %s answers again after %.0f s; lockout is back on",
                        self.store.description,
                        time.monotonic() - self._down_since,
                    )
                    self._down_since = None

    def _marks(self) -> FailureMarks | None:
        return self._marks_of_store() if self._marks_of_store is not None else None

    @property
    def store_down(self) -> bool:
        return self._down_since is not None

    # -- the three calls of the handlers ---------------------------------------------------

    def check(self, client: str, user: str | None) -> Decision:
        """May this request go on to authentication? Never raises for store faults.

        A (client, user) whose counters were both absent is trusted clean without reading
        the store again: the common request of a good user costs no store read. With the
        SQLite store, for :data:`CLEAN_MARKED_SECONDS` as long as the client's
        :class:`~authn.lockout.stores.FailureMarks` slot is unchanged (any failure of that
        client anywhere on the machine changes it, so nothing is missed); with Redis, whose
        failures may be counted on other machines, for :data:`CLEAN_SECONDS` (a lock set
        elsewhere is then seen within a second: at most one more password check per
        process). Any failure counted by this process forgets every clean record at once,
        and the count it gets back is fresh, so a lock is seen here at the next failure.
        """
        STATS.checks += 1
        if self._down_since is not None and not self._usable():
            return OPEN
        if ":" in client:
            client = counted_address(client)
        now = time.monotonic()
        marks = self._marks_of_store() if self._marks_of_store is not None else None
        mark = marks.read(client) if marks is not None else None  # before the store read
        if mark is not None:
            whole = self._clean_clients.get(client)
            if whole is not None and whole[0] > now and whole[1] == mark:
                return OPEN
        clean = self._clean.get((client, user))
        if clean is not None and clean[0] > now and clean[1] == mark:
            return OPEN
        for known_key in ((client, None), (client, user)):
            known = self._known_lock(known_key, now)
            if known is not None:
                return known
        keys = [client_key(client)]
        if user is not None:
            keys.append(pair_key(client, user))
        try:
            generation = self._unlocks(now)  # before the read: an unlock after it is seen
            if mark is not None and self._client_clean(client):
                self._recovered()
                return OPEN
            counts = self.store.get(keys)
        except StoreUnavailable as exc:
            self._fault(exc)
            return OPEN
        self._recovered()
        if not counts:
            trust = CLEAN_SECONDS if mark is None else CLEAN_MARKED_SECONDS
            _remember(self._clean, (client, user), (now + trust, mark))
            return OPEN
        decision = self._decide(counts, client, user, refusing=True)
        if decision.locked:
            self._remember_lock(client, user, decision, now, generation)
        return decision

    def _remember_lock(
        self, client: str, user: str | None, decision: Decision, now: float, generation: object
    ) -> None:
        """Remember a lock until it ends: a locked address under (client, None), so a flood
        of new user names from it costs no store transaction each; a locked pair under
        (client, user)."""
        key = (client, None) if decision.reason == CLIENT_LOCKED else (client, user)
        _remember(self._locked, key, (now + decision.retry_after, decision, True, generation))

    def _known_lock(self, key: tuple[str, str | None], now: float) -> Decision | None:
        """A lock this process knows for ``key``, while it lasts and no admin unlocked
        anything since it was learned: a flood of refused requests costs no store read,
        and only the first refusal is reported (one log line)."""
        known = self._locked.get(key)
        if known is None or known[0] <= now:
            return None
        until, decision, reported, generation = known
        if self._unlocks(now) != generation:
            self._locked.pop(key, None)
            who = f"client={key[0]}" + (f" user={key[1]}" if key[1] is not None else "")
            log.warning("authn: lockout cleared by admin for %s (authn lockout unlock); checking again", who)
            return None
        if not reported:
            self._locked[key] = (until, decision, True, generation)
        STATS.refused += 1
        return dataclasses.replace(decision, retry_after=max(1, math.ceil(until - now)), repeat=reported)

    def _unlocks(self, now: float) -> object:
        """The store's unlock generation: read from shared memory at every call (SQLite), or
        at most every :data:`UNLOCK_POLL_SECONDS` (Redis: a network read). Only requests
        under a known lock ask, so the common request pays nothing."""
        if self._marks_of_store is None and now < self._unlocks_until:
            return self._unlocks_seen
        try:
            self._unlocks_seen = self.store.unlock_generation()
        except StoreUnavailable:
            pass  # keep the last value: the lock holds, as it would without the unlock
        self._unlocks_until = now + UNLOCK_POLL_SECONDS
        return self._unlocks_seen

    def _decide(self, counts: dict[str, Count], client: str, user: str | None, *, refusing: bool) -> Decision:
        now = time.time()
        pair = counts.get(pair_key(client, user)) if user is not None else None
        pair_failures = pair.failures if pair is not None else 0
        locks: list[tuple[float, str]] = []
        whole = counts.get(client_key(client))
        if whole is not None and whole.failures >= self.policy.client_threshold:
            locks.append((whole.expires, CLIENT_LOCKED))
        if pair is not None and pair.failures >= self.policy.threshold:
            locks.append((pair.expires, PAIR_LOCKED))
        if not locks:
            return Decision(pair_failures=pair_failures)
        expires, reason = max(locks)
        if refusing:
            STATS.refused += 1
        return Decision(True, max(1, math.ceil(expires - now)), reason, pair_failures)

    def known_client_lock(self, client: str) -> Decision | None:
        """The lock this process knows for the address ``client`` (learned from the store,
        held until it ends or an admin unlocks), or None: no store read."""
        if not self._locked:
            return None
        return self._known_lock((counted_address(client), None), time.monotonic())

    def _client_clean(self, client: str) -> bool:
        """True when no failure is counted under ``client`` (a counted address) nor any of
        its pairs, known without a store read while its failure mark is unchanged; one read
        (:meth:`~authn.lockout.stores.LockoutStore.client_is_clean`) otherwise, whose answer
        holds until the mark changes. False without failure marks (Redis)."""
        marks = self._marks_of_store() if self._marks_of_store is not None else None
        if marks is None:
            return False
        mark = marks.read(client)  # before the store read, as in check()
        now = time.monotonic()
        known = self._clean_clients.get(client)
        if known is not None and known[0] > now and known[1] == mark:
            return True
        dirty = self._dirty_clients.get(client)
        if dirty is not None and dirty[0] > now and dirty[1] == mark:
            return False
        clean = self.store.client_is_clean(client)
        _remember(
            self._clean_clients if clean else self._dirty_clients, client, (now + CLEAN_MARKED_SECONDS, mark)
        )
        return clean

    def reserve(self, client: str, user: str) -> Reservation:
        """Take a place for (client, user)'s check *before* its password is checked.

        Atomic in the store: a check may start only while the failures counted so far plus
        the checks now in flight stay below the threshold, for the pair and for the client;
        :meth:`settle` then turns the place into a failure (a wrong password) or frees it (a
        right one, or a fault). However many requests race, at most ``threshold`` failed
        checks per pair and ``client_threshold`` per client happen in a window. When the
        failures reached a threshold the decision is locked (429, no check, remembered until
        the window ends); when checks in flight fill the rest, the request waits for them to
        settle (at most :data:`CROWDED_WAIT_SECONDS`): a browser's twenty first requests with
        the right password all pass, one after the other, and twenty guesses get ten checks.
        A store that cannot answer gives an open Reservation that counted nothing.
        """
        client = counted_address(client)
        now = time.monotonic()
        for known_key in ((client, None), (client, user)):
            known = self._known_lock(known_key, now)
            if known is not None:
                return Reservation(client, user, known, counted=False)
        if not self._usable():
            return Reservation(client, user, OPEN, counted=False)
        keys = (client_key(client), pair_key(client, user))
        limits = ((keys[0], self.policy.client_threshold), (keys[1], self.policy.threshold))
        deadline = now + CROWDED_WAIT_SECONDS
        pause = 0.002
        while True:
            try:
                generation = self._unlocks(time.monotonic())
                status, counts = self.store.reserve(
                    limits, self.policy.window, lambda: self._client_clean(client)
                )
            except StoreUnavailable as exc:
                self._fault(exc)
                return Reservation(client, user, OPEN, counted=False)
            if status != "crowded":
                break
            if time.monotonic() >= deadline:  # checks in flight that never end: try later
                return Reservation(client, user, Decision(True, 1, CROWDED), counted=False)
            time.sleep(pause)
            pause = min(pause * 2, 0.05)
        self._recovered()
        if status == "counted":
            pair = counts.get(keys[1])
            return Reservation(
                client, user, Decision(pair_failures=pair.failures if pair else 0), counted=True
            )
        decision = self._decide(counts, client, user, refusing=True)
        if not decision.locked:  # cannot happen with a consistent store; never refuse unlocked
            return Reservation(client, user, OPEN, counted=False)
        self._remember_lock(client, user, decision, time.monotonic(), generation)
        return Reservation(client, user, decision, counted=False)

    def settle(self, reservation: Reservation, outcome: Settled) -> None:
        """The end of a reserved check. ``"failed"`` counts a failure for the pair and the
        client; ``"granted"`` frees the place and clears the pair's failures (a user who
        mistyped is not punished later; the client's stay); ``"fault"`` (the source could not
        answer: not a guess) frees the place."""
        if outcome == "failed":
            STATS.failures += 1
        elif outcome == "granted":
            STATS.successes += 1
        if not reservation.counted or not self._usable():
            return
        client, pair = client_key(reservation.client), pair_key(reservation.client, reservation.user)
        failed = outcome == "failed"
        if failed:
            self._clean.clear()  # this process's clean records may be stale now
            self._clean_clients.clear()
        try:
            self.store.settle(
                [client, pair],
                failed=failed,
                # the pair's failures its reservation saw (a right password writes nothing
                # when there were none)
                clear=[pair] if outcome == "granted" and reservation.decision.pair_failures else [],
                window=self.policy.window,
                client=reservation.client,
            )
        except StoreUnavailable as exc:
            self._fault(exc)
        finally:
            if failed:
                marks = self._marks()
                if marks is not None:
                    marks.bump(reservation.client)  # after the failure is stored: see FailureMarks

    def succeeded(self, client: str, user: str, seen: Decision) -> None:
        """A success without a check (a cached verdict): clear the pair counter when the
        last look at the store saw one (no write on the common path)."""
        STATS.successes += 1
        if seen.pair_failures == 0 or not self._usable():
            return
        try:
            self.store.give_back([], [pair_key(counted_address(client), user)])
        except StoreUnavailable as exc:
            self._fault(exc)
            return
        STATS.cleared += 1

    def top(self, limit: int = 50) -> list[tuple[str, Count]]:
        """The highest live counters (raises StoreUnavailable)."""
        return self.store.top(limit)


# --- one Lockout per configuration, one store per place -----------------------------------

_stores: dict[tuple[str, str | None], LockoutStore] = {}
_lockouts: dict[tuple[Policy, str, str | None], Lockout] = {}
_registry_lock = threading.Lock()


def _make_store(kind: str, where: str | None) -> LockoutStore:
    if kind == "redis":
        assert where is not None
        try:
            return RedisStore(where)
        except StoreUnavailable:
            raise
        except Exception as exc:  # a bad URL found by redis-py
            raise StoreUnavailable(f"lockout store redis: cannot use {where!r}: {exc}") from None
    if where is None:
        # No folder configured: a private folder under /tmp, one database per Apache instance
        # (its parent process), shared by every child and thread of that instance.
        folder, name = default_folder(), f"apache-{os.getppid()}.sqlite3"
        store = SqliteStore(folder, name, private=True)
        prune_stale(folder, keep=name)  # the databases of Apaches long gone
        return store
    return SqliteStore(where)


_by_settings: dict[int, tuple[Settings, Lockout | None]] = {}


def lockout_for(settings: Settings) -> Lockout | None:
    """The Lockout of a location's settings, or None when ``authn.lockout`` is off.

    Built once per distinct configuration and kept for the life of the process. A store that
    cannot even be set up (redis-py missing) gives a Lockout over a store that always fails,
    so the problem is logged and the site stays up. Called twice per request: remembered
    per Settings object (built once per option set), by identity, so a call is one dict read.
    """
    known = _by_settings.get(id(settings))
    if known is not None and known[0] is settings:
        return known[1]
    found = _lockout_for(settings)
    if len(_by_settings) >= CLEAN_MAX:
        _by_settings.clear()
    _by_settings[id(settings)] = (settings, found)
    return found


def _lockout_for(settings: Settings) -> Lockout | None:
    part = settings.lockout
    if not part.enabled:
        return None
    policy = Policy.of(part)
    where = part.redis if part.store == "redis" else part.dir
    key = (policy, part.store, where)
    found = _lockouts.get(key)
    if found is not None:
        return found
    with _registry_lock:
        found = _lockouts.get(key)
        if found is None:
            store = _stores.get((part.store, where))
            if store is None:
                try:
                    store = _make_store(part.store, where)
                except StoreUnavailable as exc:
                    store = _BrokenStore(str(exc))
                _stores[(part.store, where)] = store
            found = _lockouts[key] = Lockout(policy, store)
    return found


def all_lockouts() -> list[Lockout]:
    """Every Lockout this process has built (for the status page)."""
    return list(_lockouts.values())


class _BrokenStore:
    """A store that could not be set up: every call fails with the same message."""

    def __init__(self, message: str) -> None:
        self.description = "unusable"
        self._message = message

    def _fail(self) -> StoreUnavailable:
        return StoreUnavailable(self._message)

    def get(self, keys: object) -> dict[str, Count]:
        raise self._fail()

    def client_is_clean(self, client: str) -> bool:
        raise self._fail()

    def reserve(self, limits: object, window: int, clean: object = None) -> tuple[str, dict[str, Count]]:
        raise self._fail()

    def settle(
        self, keys: object, *, failed: bool, clear: object, window: int, client: object = None
    ) -> None:
        raise self._fail()

    def give_back(self, decrement: object, delete: object) -> None:
        raise self._fail()

    def top(self, limit: int) -> list[tuple[str, Count]]:
        raise self._fail()

    def unlock(self, keys: object) -> None:
        raise self._fail()

    def unlock_generation(self) -> object:
        raise self._fail()
