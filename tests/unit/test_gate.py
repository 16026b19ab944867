"""The request policy without Apache: every answer of the gate, what it counts, and bursts.

Real parts only: a real password file, a real SQLite lockout store in a temp folder, the
real cache; a spy counts the checks that reach the password file.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from authn import hashes
from authn.authenticator import Authenticator
from authn.gate import Gate, Granted, Refused, Throttled, Unavailable
from authn.lockout.policy import Lockout, Policy
from authn.lockout.stores import SqliteStore
from authn.settings import parse_settings
from authn.verdict import COUNTED, Reason

CLIENT = "192.0.2.7"


class Site:
    """A password file, a group file, a gate over them, and a count of the real checks."""

    def __init__(self, folder: Path, *, threshold: int = 3, client_threshold: int = 100, **options: str):
        self.users = folder / "users"
        self.users.write_text(
            f"alice:{hashes.make_hash(b'right', 'apr1')}\nbob:{hashes.make_hash(b'builder', 'apr1')}\n"
        )
        self.groups = folder / "groups"
        self.groups.write_text("admins: alice\n")
        pairs = [("authn.file", str(self.users)), ("authn.cache.ttl", "0"), *options.items()]
        settings = parse_settings([(k.replace("_", "."), v) for k, v in pairs])
        self.authenticator = Authenticator(settings)
        self.store = SqliteStore(str(folder / "lockout"))
        self.lockout = Lockout(Policy(threshold, client_threshold, 600), self.store)
        self.gate = Gate(self.authenticator, self.lockout)
        self.checks = 0
        self._lock = threading.Lock()
        source = self.authenticator.sources[0]
        real_check = source.check

        def counting_check(user: str, password: bytes) -> object:
            with self._lock:
                self.checks += 1
            return real_check(user, password)

        source.check = counting_check  # type: ignore[method-assign]

    def counters(self) -> dict[str, int]:
        return {key: count.failures for key, count in self.store.top(100)}


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Callable[..., Site]]:
    made: list[Site] = []

    def make(**kwargs: object) -> Site:
        folder = tmp_path / f"site{len(made)}"
        folder.mkdir()
        made.append(Site(folder, **kwargs))  # type: ignore[arg-type]
        return made[-1]

    yield make


def test_each_answer_and_what_it_counts(site: Callable[..., Site]) -> None:
    s = site()
    table: list[tuple[str, bytes, type, Reason | None, int]] = [
        # user, password, answer, reason, checks it costs
        ("alice", b"", Refused, Reason.EMPTY_PASSWORD, 0),
        ("alice", b"wrong", Refused, Reason.BAD_PASSWORD, 1),
        ("nobody", b"x", Refused, Reason.UNKNOWN_USER, 1),
        ("alice", b"right", Granted, None, 1),
    ]
    for user, password, kind, reason, checks in table:
        before = s.checks
        answer = s.gate.admit(CLIENT, user, password)
        assert isinstance(answer, kind), (user, password, answer)
        if reason is not None:
            assert isinstance(answer, Refused) and answer.reason is reason
        assert s.checks - before == checks, (user, password)
    # The wrong password and the unknown user were counted for the address; the success
    # cleared alice's pair and gave its own reservation back; the empty password counted nothing.
    assert s.counters() == {f"c {CLIENT}": 2, f"u {CLIENT} nobody": 1}


def test_threshold_refuses_before_any_check_even_the_right_password(site: Callable[..., Site]) -> None:
    s = site(threshold=3)
    for _ in range(3):
        assert isinstance(s.gate.admit(CLIENT, "alice", b"wrong"), Refused)
    checks = s.checks
    for password in (b"wrong", b"right"):
        answer = s.gate.admit(CLIENT, "alice", password)
        assert isinstance(answer, Throttled) and 1 <= answer.retry_after <= 600
    assert s.checks == checks  # no check ran
    # Reported once per lock (one denial line), then quietly.
    assert [isinstance(a, Throttled) and a.report for a in [s.gate.admit(CLIENT, "alice", b"x")]] == [False]
    # Another address, another user: not locked.
    assert isinstance(s.gate.admit("192.0.2.8", "alice", b"right"), Granted)
    assert isinstance(s.gate.admit(CLIENT, "bob", b"builder"), Granted)


def test_client_threshold_counts_every_user_of_an_address(site: Callable[..., Site]) -> None:
    s = site(threshold=100, client_threshold=5)
    for i in range(5):
        assert isinstance(s.gate.admit(CLIENT, f"user{i}", b"x"), Refused)
    assert isinstance(s.gate.admit(CLIENT, "alice", b"right"), Throttled)
    assert s.checks == 5


def test_group_refusal_is_not_counted(site: Callable[..., Site]) -> None:
    s2 = site()
    settings = parse_settings(
        [
            ("authn.file", str(s2.users)),
            ("authn.groupfile", str(s2.groups)),
            ("authn.require.group", "admins"),
            ("authn.cache.ttl", "0"),
        ]
    )
    gate = Gate(Authenticator(settings), s2.lockout)
    answer = gate.admit(CLIENT, "bob", b"builder")
    assert isinstance(answer, Refused) and answer.reason is Reason.NOT_IN_GROUP
    assert isinstance(gate.admit(CLIENT, "alice", b"right"), Granted)
    assert s2.counters() == {}


def test_faults_answer_5xx_with_their_reason_and_count_nothing(
    site: Callable[..., Site], tmp_path: Path
) -> None:
    s = site()
    s.users.rename(s.users.with_suffix(".gone"))
    answer = s.gate.admit(CLIENT, "alice", b"right")
    assert isinstance(answer, Unavailable) and answer.status == 500
    assert answer.reason is Reason.FILE_UNREADABLE and "cannot read password file" in answer.message
    assert s.counters() == {}
    # A missing group file is a file that cannot be read, not a directory that is down.
    s2 = site()
    settings = parse_settings(
        [
            ("authn.file", str(s2.users)),
            ("authn.groupfile", str(tmp_path / "no-such-groups")),
            ("authn.require.group", "admins"),
            ("authn.cache.ttl", "0"),
        ]
    )
    answer = Gate(Authenticator(settings), s2.lockout).admit(CLIENT, "alice", b"right")
    assert isinstance(answer, Unavailable)
    assert (answer.source, answer.reason, answer.status) == ("groupfile", Reason.FILE_UNREADABLE, 500)


def test_cached_grant_still_meets_the_lock(site: Callable[..., Site], tmp_path: Path) -> None:
    s = site(threshold=2, authn_cache_ttl="300", authn_cache_dir=str(tmp_path / "cache"))
    assert isinstance(s.gate.admit(CLIENT, "alice", b"right"), Granted)  # now cached
    for _ in range(2):
        assert isinstance(s.gate.admit(CLIENT, "alice", b"wrong"), Refused)
    checks = s.checks
    assert isinstance(s.gate.admit(CLIENT, "alice", b"right"), Throttled)
    assert s.checks == checks


def test_no_lockout_configured(site: Callable[..., Site]) -> None:
    s = site()
    gate = Gate(s.authenticator, None)
    for _ in range(20):
        assert isinstance(gate.admit(CLIENT, "alice", b"wrong"), Refused)
    assert isinstance(gate.admit(CLIENT, "alice", b"right"), Granted)


@pytest.mark.parametrize(("users", "threshold", "client_threshold"), [(1, 10, 1000), (200, 1000, 100)])
def test_a_concurrent_burst_gets_at_most_the_threshold_of_checks(
    site: Callable[..., Site], users: int, threshold: int, client_threshold: int
) -> None:
    """100 threads guessing one user's password at once (threshold 10), or 200 threads
    trying 200 unknown users from one address (client threshold 100): the reservation is
    counted before each check, so no burst outruns the threshold."""
    s = site(threshold=threshold, client_threshold=client_threshold)
    limit = min(threshold, client_threshold)
    answers: list[object] = []
    start = threading.Barrier(100 if users == 1 else 200)

    def guess(i: int) -> None:
        start.wait()
        answers.append(s.gate.admit(CLIENT, "alice" if users == 1 else f"ghost{i}", b"wrong"))

    threads = [threading.Thread(target=guess, args=(i,)) for i in range(start.parties)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert s.checks == limit
    assert sum(isinstance(a, Refused) for a in answers) == limit
    assert sum(isinstance(a, Throttled) for a in answers) == start.parties - limit


def test_counted_reasons_are_the_real_checks() -> None:
    assert Reason.EMPTY_PASSWORD not in COUNTED and Reason.NOT_IN_GROUP not in COUNTED
    assert {Reason.UNKNOWN_USER, Reason.BAD_PASSWORD} <= COUNTED


def test_a_missing_file_behind_the_cache_is_unavailable_not_a_crash(
    site: Callable[..., Site], tmp_path: Path
) -> None:
    """The cache asks the password file's generation before any check: a file gone or
    unreadable there is the same 500 with its reason, not an exception out of the gate."""
    s = site(authn_cache_ttl="300", authn_cache_dir=str(tmp_path / "cache"))
    assert isinstance(s.gate.admit(CLIENT, "alice", b"right"), Granted)
    s.users.rename(s.users.with_suffix(".gone"))
    import time

    time.sleep(0.6)  # the next look at the file's identity
    answer = s.gate.admit(CLIENT, "alice", b"right")
    assert isinstance(answer, Unavailable) and answer.reason is Reason.FILE_UNREADABLE


def test_concurrent_right_passwords_all_pass_and_count_nothing(site: Callable[..., Site]) -> None:
    """A browser's first requests come at once, all with the right password and no cache:
    checks in flight hold places, but none of them is a failure, so none is refused."""
    s = site(threshold=3, client_threshold=5)
    start = threading.Barrier(40)
    answers: list[object] = []

    def sign_in() -> None:
        start.wait()
        answers.append(s.gate.admit(CLIENT, "alice", b"right"))

    threads = [threading.Thread(target=sign_in) for _ in range(40)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(isinstance(a, Granted) for a in answers), answers
    assert s.checks == 40 and s.counters() == {}
