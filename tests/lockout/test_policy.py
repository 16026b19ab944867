"""The lockout policy on a real store (SQLite in a temp folder, Redis from the fixture)."""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from authn.errors import ConfigError
from authn.lockout import policy as lockout
from authn.lockout.policy import Lockout, Policy
from authn.lockout.stores import FailureMarks, LockoutStore, RedisStore, SqliteStore
from authn.settings import LockoutSettings, Settings, parse_settings

StoreFactory = Callable[[], LockoutStore]


def _fail(guard: Lockout, client: str, user: str) -> lockout.Decision:
    """One failed check as the gate makes it (reserve, check, settle as failed); the
    Decision says whether the pair or the client is locked now."""
    reservation = guard.reserve(client, user)
    if reservation.decision.locked:
        return reservation.decision
    guard.settle(reservation, "failed")
    return guard.check(client, user)


@pytest.fixture(params=["sqlite", "redis"])
def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> StoreFactory:
    if request.param == "sqlite":
        return lambda: SqliteStore(str(tmp_path / "counters"))
    server = request.getfixturevalue("redis_server")
    return lambda: RedisStore(server.url)


def test_pair_locks_after_threshold_and_only_that_pair(make_store: StoreFactory) -> None:
    guard = Lockout(Policy(threshold=3, client_threshold=100, window=60), make_store())
    for _ in range(2):
        assert not _fail(guard, "192.0.2.1", "alice").locked
    assert _fail(guard, "192.0.2.1", "alice").locked
    decision = guard.check("192.0.2.1", "alice")
    assert decision.locked and 1 <= decision.retry_after <= 60
    assert decision.reason == "user locked out from this address"
    # The same user from another address, another user from the same address: not locked.
    assert not guard.check("192.0.2.2", "alice").locked
    assert not guard.check("192.0.2.1", "bob").locked
    assert not guard.check("192.0.2.1", None).locked


def test_client_threshold_locks_the_whole_address(make_store: StoreFactory) -> None:
    guard = Lockout(Policy(threshold=100, client_threshold=5, window=60), make_store())
    for i in range(5):
        _fail(guard, "192.0.2.9", f"user{i}")
    for user in ("someone", None):
        decision = guard.check("192.0.2.9", user)
        assert decision.locked and decision.reason == "client address locked out"
    assert not guard.check("192.0.2.10", "someone").locked


def test_success_clears_the_pair_but_not_the_address(make_store: StoreFactory) -> None:
    guard = Lockout(Policy(threshold=3, client_threshold=4, window=60), make_store())
    _fail(guard, "192.0.2.1", "alice")
    _fail(guard, "192.0.2.1", "alice")
    seen = guard.check("192.0.2.1", "alice")
    assert seen.pair_failures == 2
    guard.succeeded("192.0.2.1", "alice", seen)
    assert guard.check("192.0.2.1", "alice").pair_failures == 0
    # The address budget was not reset: two more failures for anyone lock the address.
    _fail(guard, "192.0.2.1", "bob")
    assert _fail(guard, "192.0.2.1", "carol").locked


def test_window_passes_and_access_returns(make_store: StoreFactory) -> None:
    guard = Lockout(Policy(threshold=1, client_threshold=100, window=1), make_store())
    _fail(guard, "192.0.2.1", "alice")
    assert guard.check("192.0.2.1", "alice").locked
    time.sleep(1.3)
    assert not guard.check("192.0.2.1", "alice").locked
    # A new window starts from zero.
    assert _fail(guard, "192.0.2.1", "alice").locked


def test_counters_are_shared_between_processes(tmp_path: Path) -> None:
    guard = Lockout(Policy(threshold=4, window=60), SqliteStore(str(tmp_path)))
    _fail(guard, "192.0.2.1", "alice")
    pids = []
    for _ in range(2):
        pid = os.fork()
        if pid == 0:  # the child uses the inherited object: it must reopen its connection
            try:
                _fail(guard, "192.0.2.1", "alice")
            finally:
                os._exit(0)
        pids.append(pid)
    for pid in pids:
        os.waitpid(pid, 0)
    assert _fail(guard, "192.0.2.1", "alice").locked


def test_store_down_fails_open_logs_once_and_recovers(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(lockout, "RETRY_SECONDS", 0.0)
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the folder should be")
    guard = Lockout(Policy(threshold=1, window=60), SqliteStore(str(blocker / "sub")))
    with caplog.at_level(logging.ERROR, logger="authn"):
        for _ in range(3):
            assert not _fail(guard, "192.0.2.1", "alice").locked
            assert not guard.check("192.0.2.1", "alice").locked
    down = [r for r in caplog.records if "lockout store down" in r.getMessage()]
    assert len(down) == 1 and "cannot open" in down[0].getMessage()
    assert guard.store_down
    blocker.unlink()  # the admin fixes it; no restart
    caplog.clear()
    with caplog.at_level(logging.ERROR, logger="authn"):
        assert _fail(guard, "192.0.2.1", "alice").locked
    assert any("answers again" in r.getMessage() for r in caplog.records)
    assert not guard.store_down


def test_private_default_folder_refuses_a_folder_others_can_write(tmp_path: Path) -> None:
    folder = tmp_path / "shared"
    folder.mkdir(mode=0o777)
    folder.chmod(0o777)
    guard = Lockout(Policy(), SqliteStore(str(folder), private=True))
    assert not guard.check("192.0.2.1", "alice").locked  # fails open
    assert guard.store_down


def test_long_user_names_share_a_bounded_key() -> None:
    assert lockout.pair_key("192.0.2.1", "x" * 10_000) == lockout.pair_key("192.0.2.1", "x" * 300)
    assert lockout.describe_key(lockout.pair_key("::1", "a b")) == ("pair", "::/64", "a b")
    assert lockout.describe_key(lockout.client_key("192.0.2.1")) == ("client", "192.0.2.1", None)


def test_options() -> None:
    base = [("authn.file", "/etc/users")]
    assert parse_settings(base).lockout.enabled is True
    settings = parse_settings(
        [*base, ("authn.lockout", "off"), ("authn.lockout.threshold", "3"),
         ("authn.lockout.window", "60"), ("authn.lockout.store", "redis"),
         ("authn.lockout.redis", "redis://10.0.0.5:6379/1")]
    )  # fmt: skip
    assert (settings.lockout.enabled, settings.lockout.threshold, settings.lockout.window) == (
        False,
        3,
        60,
    )
    assert lockout.lockout_for(settings) is None
    for key, value, words in [
        ("authn.lockout", "maybe", "on or off"),
        ("authn.lockout.threshold", "0", "from 1"),
        ("authn.lockout.window", "ten", "seconds"),
        ("authn.lockout.store", "memcached", "sqlite, redis"),
        ("authn.lockout.redis", "10.0.0.5", "redis://"),
        ("authn.lockout.dir", "relative", "absolute"),
        ("authn.lockout.treshold", "3", "did you mean authn.lockout.threshold"),
    ]:
        with pytest.raises(ConfigError, match=re.escape(words)) as info:
            parse_settings([*base, (key, value)])
        assert key in str(info.value)
    with pytest.raises(ConfigError, match=re.escape("authn.lockout.redis")):
        parse_settings([*base, ("authn.lockout.store", "redis")])


def test_unusable_redis_url_fails_open(caplog: pytest.LogCaptureFixture) -> None:
    settings = Settings(
        password_file="/x", lockout=LockoutSettings(store="redis", redis="redis://127.0.0.1:1/0")
    )
    guard = lockout.lockout_for(settings)
    assert guard is not None
    with caplog.at_level(logging.ERROR, logger="authn"):
        assert not guard.check("192.0.2.1", "alice").locked
    assert any("lockout store down" in r.getMessage() for r in caplog.records)


def test_clean_record_is_trusted_then_another_process_lock_is_seen(
    make_store: StoreFactory, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> None:
    """The hot path: a clean (address, user) costs no store read. A lock that another
    process sets is seen at once with SQLite (the client's failure mark changed), within
    CLEAN_SECONDS with Redis (the failure may have been counted on another machine); a
    failure counted here forgets every clean record at once."""
    monkeypatch.setattr(lockout, "CLEAN_SECONDS", 0.5)
    here = Lockout(Policy(threshold=2, client_threshold=100, window=60), make_store())
    other = Lockout(Policy(threshold=2, client_threshold=100, window=60), make_store())  # another child
    assert not here.check("192.0.2.9", "alice").locked  # read: clean, trusted from now on
    _fail(other, "192.0.2.9", "alice")
    assert _fail(other, "192.0.2.9", "alice").locked
    if request.node.callspec.params["make_store"] == "sqlite":
        assert here.check("192.0.2.9", "alice").locked  # the mark changed: read again at once
    else:
        assert not here.check("192.0.2.9", "alice").locked  # still trusted (at most 0.5 s)
        time.sleep(0.6)
        assert here.check("192.0.2.9", "alice").locked  # read again: the lock is seen
    # A failure counted by this process drops its clean records at once.
    assert not here.check("192.0.2.10", "bob").locked
    _fail(other, "192.0.2.10", "bob")
    _fail(other, "192.0.2.10", "bob")
    _fail(here, "192.0.2.10", "carol")
    assert here.check("192.0.2.10", "bob").locked


def test_sqlite_good_user_costs_no_store_read_while_others_guess(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With SQLite, a clean record stays trusted past CLEAN_SECONDS while the client's
    failure mark is unchanged, and failures of other addresses do not change it: during a
    guessing flood from elsewhere, every prefork child serves a good user without a store read."""
    monkeypatch.setattr(lockout, "CLEAN_SECONDS", 0.05)
    store = SqliteStore(str(tmp_path / "counters"))
    here = Lockout(Policy(threshold=3, client_threshold=100, window=60), store)
    other = Lockout(
        Policy(threshold=3, client_threshold=100, window=60), SqliteStore(str(tmp_path / "counters"))
    )
    reads: list[object] = []
    real_get = store.get

    def counting_get(keys: list[str]) -> dict[str, lockout.Count]:
        reads.append(keys)
        return real_get(keys)

    real_clean = store.client_is_clean

    def counting_clean(client: str) -> bool:
        reads.append(client)
        return real_clean(client)

    monkeypatch.setattr(store, "get", counting_get)
    monkeypatch.setattr(store, "client_is_clean", counting_clean)
    assert not here.check("192.0.2.9", "alice").locked
    assert len(reads) == 1
    for i in range(50):
        _fail(other, f"198.51.100.{i % 7}", f"guess{i}")
    time.sleep(0.1)
    assert not here.check("192.0.2.9", "alice").locked
    marks = store.failure_marks()
    assert marks is not None
    slots = {marks._offset(f"198.51.100.{i}") for i in range(7)}
    assert marks._offset("192.0.2.9") not in slots  # (a shared slot would cost a read, no more)
    assert len(reads) == 1
    # The same address failing for anyone changes the mark: the next check reads again.
    _fail(other, "192.0.2.9", "mallory")
    assert not here.check("192.0.2.9", "alice").locked
    assert reads[1:] == ["192.0.2.9", ["c 192.0.2.9", "u 192.0.2.9 alice"]]  # not clean: the pair


def test_sqlite_clean_address_is_read_once_for_all_its_logins(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An address with no failure at all is trusted for every login after one read (a NAT
    or a proxy bringing many good users); a failure under any of its logins ends that, and
    its pairs are read one by one again: a locked pair stays locked."""
    store = SqliteStore(str(tmp_path / "counters"))
    here = Lockout(Policy(threshold=3, client_threshold=100, window=60), store)
    other = Lockout(
        Policy(threshold=3, client_threshold=100, window=60), SqliteStore(str(tmp_path / "counters"))
    )
    reads: list[object] = []
    real_get, real_clean = store.get, store.client_is_clean
    monkeypatch.setattr(store, "get", lambda keys: reads.append(keys) or real_get(keys))
    monkeypatch.setattr(store, "client_is_clean", lambda client: reads.append(client) or real_clean(client))
    for i in range(50):
        assert not here.check("192.0.2.9", f"user{i}").locked
    assert reads == ["192.0.2.9"]
    for _ in range(3):
        _fail(other, "192.0.2.9", "mallory")
    assert here.check("192.0.2.9", "mallory").locked
    assert not here.check("192.0.2.9", "user1").locked
    assert here.check("192.0.2.9", "mallory").locked  # still: the address is not clean
    # a prefix of the address is another address: 192.0.2.90's failures do not dirty 192.0.2.9
    other_store = SqliteStore(str(tmp_path / "counters2"))
    near = Lockout(Policy(threshold=3, client_threshold=100, window=60), other_store)
    for _ in range(3):
        _fail(near, "192.0.2.90", "bob")
    assert other_store.client_is_clean("192.0.2.9")
    assert not other_store.client_is_clean("192.0.2.90")


def test_failure_marks_file_is_private(tmp_path: Path) -> None:
    store = SqliteStore(str(tmp_path / "counters"))
    marks = store.failure_marks()
    assert marks is not None
    path = Path(store.path + ".marks")
    assert path.stat().st_mode & 0o777 == 0o600
    before = marks.read("192.0.2.1")
    marks.bump("192.0.2.1")
    assert marks.read("192.0.2.1") != before
    assert FailureMarks(str(path)).read("192.0.2.1") == marks.read("192.0.2.1")  # shared file
    path.chmod(0o666)
    with pytest.raises(OSError):
        FailureMarks(str(path))


def test_stale_databases_of_gone_apaches_are_pruned(tmp_path: Path) -> None:
    from authn.lockout.stores import STALE_SECONDS, prune_stale

    gone = _dead_pid()
    old = time.time() - STALE_SECONDS - 60
    names = {
        "gone-old": [f"apache-{gone}.sqlite3", f"apache-{gone}.sqlite3-wal", f"apache-{gone}.sqlite3.marks"],
        "gone-recent": [f"apache-{gone + 1}.sqlite3"],
        "running-old": [f"apache-{os.getpid()}.sqlite3"],
        "mine": ["apache-1.sqlite3"],
        "other": ["lockout.sqlite3"],
    }
    for kind, files in names.items():
        for name in files:
            (tmp_path / name).write_bytes(b"x")
            if kind != "gone-recent":
                os.utime(tmp_path / name, (old, old))
    assert prune_stale(str(tmp_path), keep="apache-1.sqlite3") == 3
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left == sorted(names["gone-recent"] + names["running-old"] + names["mine"] + names["other"])


def _dead_pid() -> int:
    """The pid of a process that has exited (not reused within this test, in practice)."""
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def test_sqlite_table_is_bounded_and_keeps_the_high_counters(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A flood of one-failure addresses cannot grow the database without end, nor push out
    the counter of an address that is close to its lock."""
    from authn.lockout import stores as lockoutstore

    monkeypatch.setattr(lockoutstore, "MAX_COUNTERS", 100)
    monkeypatch.setattr(lockoutstore, "PURGE_EVERY_SECONDS", 0.0)
    store = SqliteStore(str(tmp_path / "counters"))
    guard = Lockout(Policy(threshold=10, client_threshold=1000, window=600), store)
    for _ in range(9):
        _fail(guard, "192.0.2.1", "alice")
    for i in range(500):
        _fail(guard, f"198.51.{i // 250}.{i % 250}", "x")
    rows = store.top(10_000)
    assert len(rows) <= 100
    assert dict(rows)[lockout.pair_key("192.0.2.1", "alice")].failures == 9
    assert _fail(guard, "192.0.2.1", "alice").locked  # the tenth failure still locks


def test_reserve_is_atomic_across_processes(tmp_path: Path) -> None:
    """Forked children reserving at once for one pair: exactly the threshold are let through."""
    store_dir = str(tmp_path / "counters")
    Lockout(Policy(threshold=10, window=60), SqliteStore(store_dir)).check("192.0.2.1", "alice")
    results = tmp_path / "results"
    results.mkdir()
    pids = []
    for n in range(30):
        pid = os.fork()
        if pid == 0:
            try:
                guard = Lockout(Policy(threshold=10, window=60), SqliteStore(store_dir))
                reservation = guard.reserve("192.0.2.1", "alice")
                (results / str(n)).write_text("locked" if reservation.decision.locked else "open")
            finally:
                os._exit(0)
        pids.append(pid)
    for pid in pids:
        os.waitpid(pid, 0)
    outcomes = [p.read_text() for p in results.iterdir()]
    assert outcomes.count("open") == 10 and outcomes.count("locked") == 20


def test_redis_reserve_and_give_back(redis_server: object) -> None:
    from devkit.redis import RedisServer

    assert isinstance(redis_server, RedisServer)
    guard = Lockout(Policy(threshold=2, client_threshold=3, window=60), RedisStore(redis_server.url))
    first = guard.reserve("192.0.2.1", "alice")
    assert not first.decision.locked and first.counted
    guard.settle(first, "granted")  # given back: no counter left
    assert guard.store.top(10) == []
    for _ in range(2):
        guard.settle(guard.reserve("192.0.2.1", "alice"), "failed")
    assert guard.reserve("192.0.2.1", "alice").decision.locked
    fault = guard.reserve("192.0.2.1", "bob")
    guard.settle(fault, "fault")  # a fault is not a guess: both counters given back
    counts = dict(guard.store.top(10))
    assert counts[lockout.client_key("192.0.2.1")].failures == 2
    assert lockout.pair_key("192.0.2.1", "bob") not in counts


def test_a_locked_address_costs_no_store_transaction_per_new_user_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Once this process knows an address is locked, new user names from it are refused
    from memory: a flood of rotating names from a locked address writes nothing."""
    store = SqliteStore(str(tmp_path / "counters"))
    guard = Lockout(Policy(threshold=100, client_threshold=3, window=60), store)
    for i in range(3):
        _fail(guard, "192.0.2.9", f"user{i}")
    calls: list[object] = []
    real = store.reserve
    monkeypatch.setattr(store, "reserve", lambda *a: calls.append(a) or real(*a))
    decisions = [guard.reserve("192.0.2.9", f"new{i}").decision for i in range(50)]
    assert all(d.locked and d.reason == lockout.CLIENT_LOCKED for d in decisions)
    assert len(calls) <= 1
    assert [d.repeat for d in decisions].count(False) <= 1  # reported once per lock


def _hold_table_lock(path: str, seconds: float) -> subprocess.Popen[str]:
    """A child of this process that holds the in-flight table's lock for ``seconds`` (lockf
    locks belong to a process: the test's own would not count), once it says so."""
    holder = subprocess.Popen(
        [sys.executable, "-c", "import fcntl, os, time\n"
         f"fd = os.open({path!r}, os.O_RDWR)\n"
         f"fcntl.lockf(fd, fcntl.LOCK_EX, 1, 0)\nprint('held', flush=True)\ntime.sleep({seconds})"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
    return holder


def test_a_lock_file_held_outside_authn_fails_open_after_the_busy_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Something outside authn holding one of the store's locks (a script of the Apache
    user, an admin's tool) makes the store count as down after SQLITE_BUSY_SECONDS: the
    request fails open (logged) instead of hanging behind it. The table of checks in flight
    (taken before each check) and the writers' lock file (taken to store a failure)."""
    import fcntl

    from authn.lockout import stores as lockoutstore

    monkeypatch.setattr(lockoutstore, "SQLITE_BUSY_SECONDS", 0.3)
    store = SqliteStore(str(tmp_path / "counters"))
    guard = Lockout(Policy(threshold=3, window=60), store)
    _fail(guard, "192.0.2.1", "alice")  # the database, its lock file and its table exist
    # lockf locks belong to a process: another one holds the table's
    holder = _hold_table_lock(store.path + ".inflight", 30)
    try:
        started = time.monotonic()
        with caplog.at_level(logging.ERROR, logger="authn"):
            reservation = guard.reserve("192.0.2.1", "alice")
        assert not reservation.decision.locked and not reservation.counted  # failed open
        assert time.monotonic() - started < 2
        assert any("held by another process" in r.getMessage() for r in caplog.records)
    finally:
        holder.kill()
        holder.communicate()
    monkeypatch.setattr(guard, "_retry_at", 0.0)  # (the store is left alone a while after a fault)
    caplog.clear()
    reservation = guard.reserve("192.0.2.1", "alice")
    assert reservation.counted
    lock = os.open(store.path + ".lock", os.O_RDWR)
    fcntl.flock(lock, fcntl.LOCK_EX)
    try:
        started = time.monotonic()
        with caplog.at_level(logging.ERROR, logger="authn"):
            guard.settle(reservation, "failed")
        assert time.monotonic() - started < 2
        assert any("held by another process" in r.getMessage() for r in caplog.records)
    finally:
        os.close(lock)
    table = store.in_flight()
    assert table is not None and table.look(table.tags(["c 192.0.2.1"]), time.time())[0][1] == 0


def test_ipv6_clients_count_by_their_slash_64(make_store: StoreFactory) -> None:
    """A host holds a whole /64: its addresses share one budget (else each /128 is fresh)."""
    guard = Lockout(Policy(threshold=3, client_threshold=100, window=60), make_store())
    for host in ("2001:db8:1:2::10", "2001:db8:1:2::11", "2001:db8:1:2:ffff::1"):
        _fail(guard, host, "alice")
    assert guard.check("2001:db8:1:2::99", "alice").locked
    assert not guard.check("2001:db8:1:3::10", "alice").locked  # another /64
    assert lockout.counted_address("::ffff:192.0.2.7") == "192.0.2.7"
    assert lockout.counted_address("192.0.2.7") == "192.0.2.7"


def test_in_flight_table_keys_of_one_bucket_and_a_full_bucket(tmp_path: Path) -> None:
    """Two keys of one bucket keep their own places; a bucket whose ways all hold places
    gives no place (the check waits as when crowded), and a place that expired is reused."""
    from authn.lockout.stores import PENDING_SECONDS, InFlight

    table = InFlight(str(tmp_path / "inflight"))
    same = [table.BUCKETS * n + 7 for n in range(1, table.WAYS + 2)]
    now = time.time()
    table.lock()
    try:
        for tag in same[: table.WAYS]:
            assert table.take([tag], table.look([tag], now), now)
        assert not table.take([same[-1]], table.look([same[-1]], now), now)  # full
        later = now + PENDING_SECONDS + 1
        assert table.take([same[-1]], table.look([same[-1]], later), later)  # an expired way reused
    finally:
        table.unlock()
    assert [live for _, live, _ in table.look(same[1 : table.WAYS], now)] == [1] * (table.WAYS - 1)
    table.give(same[1:3], failed=True)
    looked = table.look(same[1:3], now)
    assert [live for _, live, _ in looked] == [0, 0]
    assert [settled for _, settled in table.stamp(looked)] == [1, 1]


def test_in_flight_tags_are_keyed_by_the_tables_salt(tmp_path: Path) -> None:
    """Every process of a machine finds a key in the same bucket (one salt per table, drawn
    by the first), and nobody can compute which logins share another user's bucket."""
    from authn.lockout.stores import InFlight

    one, again = InFlight(str(tmp_path / "a")), InFlight(str(tmp_path / "a"))
    other = InFlight(str(tmp_path / "b"))
    keys = [f"u 192.0.2.{i} alice" for i in range(20)]
    assert one.tags(keys) == again.tags(keys)
    assert one.tags(keys) != other.tags(keys)
    assert (tmp_path / "a").read_bytes()[:16] != bytes(16)


def test_a_stamp_cannot_match_again_after_its_way_changed_hands(tmp_path: Path) -> None:
    """ABA (found by an outside attack): a reservation reads the failures (9), another
    process runs a whole failing check meanwhile, on a way that other keys had taken and
    given back since the first stamp; the reservation must not trust its stale 9 (an 11th
    check at threshold 10). A way's settled count never goes back, so the stamp differs."""
    from authn.lockout.policy import client_key, pair_key
    from authn.lockout.stores import InFlight

    folder = str(tmp_path / "lockout")
    late, other, traffic = SqliteStore(folder), SqliteStore(folder), SqliteStore(folder)
    keys = [client_key("10.0.0.1"), pair_key("10.0.0.1", "alice")]
    limits = [(keys[0], 100), (keys[1], 10)]

    def failed_check(store: SqliteStore, key_limits: list[tuple[str, int]]) -> str:
        status, _ = store.reserve(key_limits, 600)
        if status == "counted":
            store.settle([k for k, _ in key_limits], failed=True, clear=[], window=600, client="10.0.0.1")
        return status

    for _ in range(9):
        assert failed_check(other, limits) == "counted"
    table = late.in_flight()
    assert table is not None
    for bucket in (tag % InFlight.BUCKETS for tag in table.tags(keys)):
        # a key of other traffic in the same bucket takes the freed way and settles there
        stranger = next(
            f"u 10.9.{i // 256 % 256}.{i % 256} bob{i}"
            for i in range(10**6)
            if table.tags([f"u 10.9.{i // 256 % 256}.{i % 256} bob{i}"])[0] % InFlight.BUCKETS == bucket
        )
        assert failed_check(traffic, [(stranger, 10)]) == "counted"
    real_get = late.get

    def descheduled_get(read: Sequence[str]) -> dict[str, lockout.Count]:
        found = real_get(read)
        late.get = real_get  # type: ignore[method-assign]
        assert failed_check(other, limits) == "counted"  # the 10th failure, meanwhile
        return found

    late.get = descheduled_get  # type: ignore[method-assign]
    status, counts = late.reserve(limits, 600)
    assert status == "locked" and counts[keys[1]].failures == 10


def test_a_sibling_holding_the_in_flight_lock_is_waited_for_not_failed_open(tmp_path: Path) -> None:
    """Another child of the same parent (another Apache child) holding the table's lock is
    waited for in the kernel, past the busy time (it holds it for microseconds in real
    life); the same wait from a process of another parent fails open (the test above)."""

    folder = str(tmp_path / "lockout")
    SqliteStore(folder).in_flight()  # the table exists
    holder = _hold_table_lock(folder + "/lockout.sqlite3.inflight", 1.0)
    try:
        waiter = subprocess.run(
            [sys.executable, "-c", "import sys, time\n"
             "from authn.lockout import stores\n"
             "from authn.lockout.policy import Lockout, Policy\n"
             "stores.SQLITE_BUSY_SECONDS = 0.3\n"
             f"guard = Lockout(Policy(threshold=3, window=60), stores.SqliteStore({folder!r}))\n"
             "started = time.monotonic()\n"
             "counted = guard.reserve('192.0.2.1', 'alice').counted\n"
             "print(counted, round(time.monotonic() - started, 1))"],
            capture_output=True, text=True, timeout=30, cwd=str(Path(__file__).resolve().parents[2]),
        )  # fmt: skip
    finally:
        holder.kill()
        holder.communicate()
    counted, waited = waiter.stdout.split()
    assert counted == "True", waiter.stderr
    assert float(waited) >= 0.5
