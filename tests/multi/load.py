"""The load driver of the several-machines test: a steady mix of valid users, wrong passwords,
unknown users and signed-in browsers sent through the balancer, from many 127.x addresses,
every answer recorded with the phase of the test it fell in.

What a right answer is, per kind of client:

* ``valid`` (Basic, the right password): 200; a 401, 403 or 429 is a wrong answer.
* ``wrong`` (Basic, a wrong password) and ``unknown`` (Basic, no such user): 401 or 429; a 200
  is a wrong answer.
* ``session`` (a browser signed in before the load started): 200; a 303 (sent to the sign-in
  page: the session was lost) or a 401 is a wrong answer.

Anything else (a 5xx from a node or from the balancer, a broken connection) is counted as an
error, apart from wrong answers: which phases may have errors is the test's business.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

from devkit.http import basic, request
from tests.signin.test_signin_apache import Browser

KINDS = ("valid", "wrong", "unknown", "session")
RIGHT = {"valid": {200}, "wrong": {401, 429}, "unknown": {401, 429}, "session": {200}}
WRONG = {"valid": {401, 403, 429}, "wrong": {200}, "unknown": {200}, "session": {303, 401}}


@dataclass(frozen=True, slots=True)
class Answer:
    phase: str
    kind: str
    status: int  #: 0: no answer (connection refused or broken)
    node: str  #: the node that answered (its X-Node header), "-" for the balancer itself


@dataclass
class Load:
    """Threads that send requests to ``port`` until :meth:`stop` (or ``limit`` seconds)."""

    port: int
    path: str
    users: dict[str, str]  #: valid login -> password
    browsers: list[Browser]  #: signed in already
    limit: float = 240.0
    phase: str = "start"
    answers: list[Answer] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> Load:
        workers = [("valid", 0), ("valid", 1), ("wrong", 0), ("unknown", 0)]
        workers += [("session", i) for i in range(len(self.browsers))]
        for kind, number in workers:
            thread = threading.Thread(target=self._run, args=(kind, number), daemon=True)
            self._threads.append(thread)
            thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(30)

    def _run(self, kind: str, number: int) -> None:
        deadline = time.monotonic() + self.limit
        valid = list(self.users.items())
        for i in itertools.count():
            if self._stop.is_set() or time.monotonic() >= deadline:
                return
            phase = self.phase
            try:
                status, node = self._send(kind, number, i, valid)
            except OSError:
                status, node = 0, "-"
            with self._lock:
                self.answers.append(Answer(phase, kind, status, node))

    def _send(self, kind: str, number: int, i: int, valid: list[tuple[str, str]]) -> tuple[int, str]:
        if kind == "session":
            reply = self.browsers[number].send(self.path)
        elif kind == "valid":
            user, password = valid[i % len(valid)]
            reply = request(
                self.port, self.path, auth=basic(user, password), source=f"127.0.100.{number + 1}", timeout=10
            )
        else:
            # every other guess from one of a few addresses (soon locked out: 429), the others
            # from fresh ones (checked by the directory: 401); each with a forged
            # X-Forwarded-For the nodes must not believe
            base = 110 if kind == "wrong" else 150
            source = (
                f"127.0.{base}.{i % 20 + 1}" if i % 2 else f"127.0.{base + 1 + i // 500 % 30}.{i % 250 + 1}"
            )
            user = "alice" if kind == "wrong" else f"nobody{i % 50}"
            reply = request(
                self.port,
                self.path,
                auth=basic(user, f"guess-{i}"),
                source=source,
                timeout=10,
                headers={"X-Forwarded-For": f"10.{i % 250}.0.1"},
            )
        return reply.status, reply.header("X-Node") or "-"

    # --- counting -------------------------------------------------------------------------

    def of(self, phase: str) -> list[Answer]:
        with self._lock:
            return [a for a in self.answers if a.phase == phase]

    def wrong_answers(self, phase: str | None = None) -> list[Answer]:
        with self._lock:
            return [
                a for a in self.answers if (phase is None or a.phase == phase) and a.status in WRONG[a.kind]
            ]

    def summary(self, phase: str) -> str:
        """``kind: status x count, ...`` for one phase, and which nodes answered."""
        answers = self.of(phase)
        parts = []
        for kind in KINDS:
            counts = Counter(a.status for a in answers if a.kind == kind)
            if counts:
                parts.append(f"{kind} " + " ".join(f"{s}x{n}" for s, n in sorted(counts.items())))
        nodes = Counter(a.node for a in answers)
        text = "; ".join(parts) + " | nodes " + " ".join(f"{k}x{v}" for k, v in sorted(nodes.items()))
        errors = Counter((a.kind, a.node, a.status) for a in answers if a.status not in RIGHT[a.kind])
        if errors:
            text += " | not 2xx/401/429: " + " ".join(
                f"{k} {n} {s}x{c}" for (k, n, s), c in sorted(errors.items())
            )
        return text
