"""Sessions while their store is down: the grace for sessions a process checked itself, 503
(StoreUnavailable) for everything else, and full service when the store answers again."""

from __future__ import annotations

import logging

import pytest

from authn.errors import StoreUnavailable
from authn.sessions import sessions as module
from authn.sessions.sessions import STORE_DOWN_GRACE_SECONDS, STORE_RETRY_SECONDS, Sessions
from authn.sessions.store import REMOTE_TRUST_SECONDS, Session
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
