"""Sessions while their store is down: the grace for sessions a process checked itself, 503
(StoreUnavailable) for everything else, and full service when the store answers again."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from authn.cache.shared import SharedStore
from authn.errors import StoreUnavailable
from authn.sessions import sessions as module
from authn.sessions.sessions import STORE_DOWN_GRACE_SECONDS, STORE_RETRY_SECONDS, Sessions
from authn.sessions.store import REMOTE_TRUST_SECONDS, Session, session_id
from authn.settings import LoginSettings

REALM = "r" * 32


class FlakyStore:
    """A remote store (no epoch, like Redis) that can be taken down; counts its reads."""

    description = "fake:store"

    def __init__(self) -> None:
        self.records: dict[str, Session] = {}
        self.down = False
        self.reads = 0

    def _check(self) -> None:
        if self.down:
            raise StoreUnavailable("session store fake: connection refused")

    def create(self, session: Session) -> None:
        self._check()
        self.records[session.id] = session

    def get(self, sid: str) -> Session | None:
        self.reads += 1
        self._check()
        return self.records.get(sid)

    def touch(self, sid: str, seen: float) -> None:
        self._check()

    def delete(self, sid: str) -> None:
        self._check()
        self.records.pop(sid, None)

    def epoch(self) -> bytes | None:
        return None


class Clock:
    def __init__(self) -> None:
        self.mono = 1000.0

    def monotonic(self) -> float:
        return self.mono


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    clock = Clock()
    monkeypatch.setattr(module.time, "monotonic", clock.monotonic)
    return clock


def test_checked_sessions_survive_an_outage_for_the_grace_only(
    clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    store = FlakyStore()
    sessions = Sessions(store, LoginSettings(form=True))  # type: ignore[arg-type]
    seen = sessions.start("alice", REALM, "fp", "v")
    unseen = sessions.start("bob", REALM, "fp", "v")
    ended = sessions.start("carol", REALM, "fp", "v")
    assert sessions.find(seen, REALM) is not None
    assert sessions.find(ended, REALM) is not None
    sessions.end(ended)  # this process saw the sign-out: never honoured again
    clock.mono += REMOTE_TRUST_SECONDS + 0.1
    store.down = True
    with caplog.at_level(logging.ERROR, logger="authn"):
        found = sessions.find(seen, REALM)
        assert found is not None and found.user == "alice"
        with pytest.raises(StoreUnavailable):
            sessions.find(unseen, REALM)  # never checked here: 503, not a guess
        with pytest.raises(StoreUnavailable):
            sessions.find(ended, REALM)
        with pytest.raises(StoreUnavailable):
            sessions.start("dave", REALM, "fp", "v")  # no new sign-in
    assert sum("session store down" in r.message for r in caplog.records) == 1
    # a hung store costs no time per request: not asked again during the retry pause
    reads = store.reads
    assert sessions.find(seen, REALM) is not None and store.reads == reads
    clock.mono += STORE_DOWN_GRACE_SECONDS
    with pytest.raises(StoreUnavailable):
        sessions.find(seen, REALM)  # the grace is over
    store.down = False
    clock.mono += STORE_RETRY_SECONDS
    with caplog.at_level(logging.ERROR, logger="authn"):
        assert sessions.find(seen, REALM) is not None
        assert sessions.find(unseen, REALM) is not None
        assert sessions.find(ended, REALM) is None
    assert any("answers again" in r.message for r in caplog.records)


def test_a_session_ended_elsewhere_is_refused_once_read_even_if_the_store_goes_down_later(
    clock: Clock,
) -> None:
    store = FlakyStore()
    sessions = Sessions(store, LoginSettings(form=True))  # type: ignore[arg-type]
    token = sessions.start("alice", REALM, "fp", "v")
    assert sessions.find(token, REALM) is not None
    store.records.clear()  # a sign-out or revocation on another machine
    clock.mono += REMOTE_TRUST_SECONDS + 0.1
    assert sessions.find(token, REALM) is None  # read again: gone, and forgotten here
    store.down = True
    clock.mono += STORE_RETRY_SECONDS
    with pytest.raises(StoreUnavailable):
        sessions.find(token, REALM)


def test_the_grace_is_machine_wide_through_the_cache_file(
    clock: Clock, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A process that never read a session honours it while the store is down when another
    process of the machine read it within the grace (prefork: many children, one machine);
    a read that finds the session gone takes it out of the file for every process."""
    store = FlakyStore()
    shared = SharedStore(str(tmp_path / "cache"), 64)
    reader, other, third = (Sessions(store, LoginSettings(form=True), shared) for _ in range(3))  # type: ignore[arg-type]
    token = reader.start("alice", REALM, "fp", "v")
    ended = reader.start("bob", REALM, "fp", "v")
    assert reader.find(token, REALM) is not None and reader.find(ended, REALM) is not None
    store.records.pop(session_id(ended))  # signed out elsewhere ...
    assert other.find(ended, REALM) is None  # ... and read again on this machine
    store.down = True
    found = third.find(token, REALM)
    assert found is not None and found.user == "alice"
    with pytest.raises(StoreUnavailable):
        third.find(ended, REALM)
    clock.mono += STORE_RETRY_SECONDS
    later = module.time.time() + STORE_DOWN_GRACE_SECONDS
    monkeypatch.setattr(module.time, "time", lambda: later)
    with pytest.raises(StoreUnavailable):
        other.find(token, REALM)  # the machine-wide copy has run out too
