"""The request policy: one request in, one answer out, in the order that keeps it safe.

A :class:`Gate` stands in front of one location's :class:`~authn.authenticator.Authenticator`
and its :class:`~authn.lockout.policy.Lockout`. It takes plain values (the client address, the
login and password) and returns one :data:`Answer`; the mod_python adapter
(:mod:`authn.handlers`) only reads the request and maps the answer to Apache. The steps of
:meth:`Gate.admit`, top to bottom:

1. **Nothing to check.** An empty password is refused at once (401, ``empty password``):
   no check runs, so nothing is learned and nothing is counted.
2. **Cache.** A granted verdict from the verified-credential cache proves the password
   without a check. The lockout still looks at the client and the account (a locked pair
   is refused with the right password too: 429), from memory while nothing changed.
3. **Reserve, check, settle.** Right before each real check (a hash, a directory bind) the
   lockout counts a failure for the account (:meth:`~authn.lockout.policy.Lockout.reserve`); past a
   threshold it refuses instead (429) and no check runs, so concurrent guesses can never
   outrun the threshold. A wrong password keeps the failure; a right one gives it back and
   clears the pair; a source that cannot answer gives it back and answers 5xx.
4. **Group rule** (``authn.require.group``) on a granted verdict: 401 when it refuses.

What counts is :data:`authn.verdict.COUNTED`; every refusal carries its
:class:`~authn.verdict.Reason`, the word the denial line and the fail2ban filter use.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass

from authn.authenticator import Authenticator
from authn.errors import SourceUnavailable, StoreUnavailable
from authn.lockout.policy import Decision, Lockout, Reservation, Settled, lockout_for
from authn.sessions.otp import Enrolment, SecretsFile, matching_step, recovery_hash
from authn.sessions.sessions import Sessions, grace_store_for, realm_of, store_for
from authn.verdict import Reason, Verdict, decode_granted, encode_granted


@dataclass(frozen=True, slots=True)
class Granted:
    """Let the request through (200 from the content): ``verdict`` says who and what."""

    verdict: Verdict


@dataclass(frozen=True, slots=True)
class Refused:
    """401 with a fresh challenge, and one denial line."""

    user: str
    source: str
    reason: Reason
    detail: str = ""


@dataclass(frozen=True, slots=True)
class Throttled:
    """429 with ``Retry-After``: too many failures. ``report`` is False for the refusals
    after the first one of a lock in this process (one denial line per lock, not a flood)."""

    user: str
    retry_after: int
    report: bool = True


@dataclass(frozen=True, slots=True)
class Unavailable:
    """5xx (``status``): a source could not answer; ``message`` says which and why."""

    user: str
    source: str
    status: int
    message: str
    reason: Reason = Reason.DIRECTORY_DOWN


@dataclass(frozen=True, slots=True)
class SignedIn:
    """A sign-in succeeded: set the session cookie ``token`` and send the browser on."""

    verdict: Verdict
    token: str


Answer = Granted | Refused | Throttled | Unavailable | SignedIn
#: what the lockout counts second-factor codes under: the account, apart from its password
CODE_SUFFIX = " #code"


class _Stop(Exception):
    """Raised by the reservation hook to stop a chain of sources before a check."""

    def __init__(self, decision: Decision) -> None:
        super().__init__("locked out")
        self.decision = decision


def _throttled(user: str, decision: Decision) -> Throttled:
    return Throttled(user, decision.retry_after, report=not decision.repeat)


def unavailable(user: str, exc: SourceUnavailable) -> Unavailable:
    return Unavailable(user, exc.source, exc.status, str(exc), exc.reason)


class Gate:
    """The request policy of one location (see the module docstring). Thread-safe."""

    def __init__(self, authenticator: Authenticator, lockout: Lockout | None) -> None:
        self.authenticator = authenticator
        self.lockout = lockout
        settings = authenticator.settings
        self.login = settings.login
        self._sessions: Sessions | None = None
        self.realm = realm_of(settings)
        self._otp = SecretsFile(settings.login.otp_file) if settings.login.otp_file else None
        # session id -> (the session record it was checked on, the sources' generation then,
        # until when the check holds, the decoded verdict)
        self._resumed: dict[str, tuple[object, tuple[object, ...], float, Verdict]] = {}
        self._group_rule = authenticator.has_group_rule
        # the last Granted answers by verdict (an answer is immutable: sharing it saves
        # building one per request)
        self._answers: dict[int, tuple[Verdict, Granted]] = {}

    def _granted(self, verdict: Verdict) -> Granted:
        """``Granted(verdict)``, the same object for the same verdict while it is cached."""
        known = self._answers.get(id(verdict))
        if known is not None and known[0] is verdict:
            return known[1]
        answer = Granted(verdict)
        if len(self._answers) >= 4096:
            self._answers.clear()
        self._answers[id(verdict)] = (verdict, answer)
        return answer

    @property
    def sessions(self) -> Sessions:
        """The location's sessions (opened on first use; raises StoreUnavailable)."""
        if self._sessions is None:
            settings = self.authenticator.settings
            self._sessions = Sessions(store_for(settings), self.login, grace_store_for(settings))
        return self._sessions

    @property
    def asks_code(self) -> bool:
        return self._otp is not None

    # --- sessions ------------------------------------------------------------------------

    def resume(self, token: str) -> Answer | None:
        """The answer for a request that carries a session cookie: Granted (the group rule
        applied to the session's user) or Refused by the group rule; None when the session
        is not valid here (unknown, logged out, timed out, another realm, or its credential
        changed: a new password, a deleted or disabled user)."""
        try:
            session = self.sessions.find(token, self.realm)
        except StoreUnavailable as exc:
            return Unavailable("", "sessions", 503, str(exc), Reason.DIRECTORY_DOWN)
        if session is None:
            return None
        # A password file answers from memory: the session's entry is compared again whenever
        # the file changed (its generation), so an edit ends the session within the second
        # the file takes to reload. A directory is asked again at most once per cache TTL per
        # process (like a cached password): a changed password, a disabled or deleted entry
        # ends the session then.
        now = time.monotonic()
        try:
            generation = tuple(source.generation() for source in self.authenticator.sources)
        except SourceUnavailable as exc:
            return unavailable(session.user, exc)
        known = self._resumed.get(session.id)
        if known is not None and known[0] is session and known[1] == generation and now < known[2]:
            verdict = known[3]
        else:
            verdict = decode_granted(session.user, session.verdict)
            try:
                if self.authenticator.fingerprint(session.user, verdict) != session.fingerprint:
                    self._resumed.pop(session.id, None)
                    return None
            except SourceUnavailable as exc:
                return unavailable(session.user, exc)
            if len(self._resumed) >= 8192:
                self._resumed.clear()
            until = math.inf if verdict.source == "file" else now + self.authenticator.settings.cache.ttl
            self._resumed[session.id] = (session, generation, until, verdict)
        return self.authorize(session.user, verdict)

    def sign_in(self, client: str, user: str, password: bytes, code: str = "") -> Answer:
        """A sign-in form's credentials: :meth:`admit` (lockout, cache, sources, group rule),
        then the second factor for an enrolled user (a reserved check like the password's:
        a wrong or reused code counts), then a new session: SignedIn with its token."""
        answer = self.admit(client, user, password)
        if not isinstance(answer, Granted):
            return answer
        verdict = answer.verdict
        if self._otp is not None:
            refused = self._second_factor(client, user, verdict, code)
            if refused is not None:
                return refused
        auth = self.authenticator
        try:
            fingerprint = auth.fingerprint(verdict.user, verdict)
            if fingerprint is None:  # removed between the check and now
                return Refused(user, verdict.source, Reason.UNKNOWN_USER)
            token = self.sessions.start(
                verdict.user, self.realm, fingerprint, encode_granted(verdict).decode()
            )
        except SourceUnavailable as exc:
            return unavailable(user, exc)
        except StoreUnavailable as exc:
            return Unavailable(user, "sessions", 503, str(exc), Reason.DIRECTORY_DOWN)
        return SignedIn(verdict, token)

    def _second_factor(self, client: str, user: str, verdict: Verdict, code: str) -> Answer | None:
        assert self._otp is not None
        try:
            enrolment = self._otp.enrolment(user, folded=self.authenticator.directory is not None)
        except SourceUnavailable as exc:
            return unavailable(user, exc)
        if enrolment is None:
            if self.login.otp_optional:
                return None
            return Refused(user, "otp", Reason.NOT_ENROLLED)
        lockout = self.lockout
        reservation = None
        if lockout is not None:
            # its own counter: a right password clears the password's pair, never this one,
            # so ten wrong codes lock the codes of the account from this address
            reservation = lockout.reserve(client, self.authenticator.identity(user, verdict) + CODE_SUFFIX)
            if reservation.decision.locked:
                return _throttled(user, reservation.decision)
        try:
            right = self._code_is_right(self.authenticator.identity(user, verdict), enrolment, code)
        except StoreUnavailable as exc:
            if lockout is not None and reservation is not None:
                lockout.settle(reservation, "fault")
            return Unavailable(user, "sessions", 503, str(exc), Reason.DIRECTORY_DOWN)
        if lockout is not None and reservation is not None:
            lockout.settle(reservation, "granted" if right else "failed")
        return None if right else Refused(user, "otp", Reason.BAD_CODE)

    def _code_is_right(self, account: str, enrolment: Enrolment, code: str) -> bool:
        """A TOTP code of this step (+/- one), or an unused recovery code; each works once
        for the ``account`` (the lockout's: every spelling of a directory login is one)."""
        store = self.sessions.store
        step = matching_step(enrolment.secret, code)
        if step is not None:
            return store.use_code(account, step)
        digest = recovery_hash(code)
        if code.strip() and digest in enrolment.recovery:
            return store.use_code(f"{account}\0recovery:{digest}", 1)
        return False

    def sign_out(self, token: str) -> None:
        """Log out: the session ends at once for every process (raises StoreUnavailable)."""
        self.sessions.end(token)

    def screen(self, client: str, user: str | None) -> Throttled | None:
        """Before anything else (the access handler): a locked client, or a locked pair when
        the login is the account (no directory), gets 429 without looking further."""
        if self.lockout is None:
            return None
        known = user if user is not None and self.authenticator.identity_is_login else None
        decision = self.lockout.check(client, known)
        return _throttled(user or "", decision) if decision.locked else None

    def admit(self, client: str, user: str, password: bytes) -> Answer:
        """Authenticate ``user`` with ``password`` from ``client``, then apply the group rule."""
        auth, lockout = self.authenticator, self.lockout
        if not password:
            return Refused(user, auth.sources[0].name if auth.sources else "-", Reason.EMPTY_PASSWORD)
        if lockout is not None:
            # an address locked out gets its 429 from memory before anything else: a flood
            # from it costs no cache look (its wrong passwords would reach the machine-wide one)
            known = lockout.known_client_lock(client)
            if known is not None:
                return _throttled(user, known)
        # The hot path, a cached good password: one cache look, one lockout look, no store
        # read or write, a shared answer (every Python call here costs about a microsecond
        # in a busy Apache child, whose caches the other children keep evicting).
        cache = auth.cache
        if cache is not None:
            try:
                cached = cache.lookup(user, password)
            except SourceUnavailable as exc:  # the cache asks the source's generation
                return unavailable(user, exc)
            if cached is not None:
                if lockout is not None:
                    identity = user if auth.directory is None else auth.identity(user, cached)
                    decision = lockout.check(client, identity)
                    if decision.locked:
                        return _throttled(user, decision)
                    lockout.succeeded(client, identity, decision)
                if self._group_rule:
                    return self.authorize(cached.user, cached)
                return self._granted(cached)
        reservations: list[Reservation] = []

        def reserve(identity: str) -> None:
            if lockout is None:
                return
            reservation = lockout.reserve(client, identity)
            if reservation.decision.locked:
                raise _Stop(reservation.decision)
            reservations.append(reservation)

        try:
            verdict = auth.check(user, password, reserve)
        except _Stop as stop:
            self._settle(reservations, "failed")  # the checks before the stop did run
            return _throttled(user, stop.decision)
        except SourceUnavailable as exc:
            self._settle(reservations, "fault")
            return unavailable(user, exc)
        if not verdict.granted:
            self._settle(reservations, "failed")
            return Refused(user, verdict.source, verdict.reason or Reason.BAD_PASSWORD, verdict.detail)
        self._settle(reservations, "granted")
        return self.authorize(verdict.user, verdict)

    def _settle(self, reservations: list[Reservation], outcome: Settled) -> None:
        if self.lockout is not None:
            for reservation in reservations:
                self.lockout.settle(reservation, outcome)

    def authorize(self, user: str, verdict: Verdict | None) -> Answer:
        """The group rule for ``user`` (granted by ``verdict``, or by another module when
        None): Granted, Refused (not in a required group) or Unavailable."""
        auth = self.authenticator
        if not auth.has_group_rule:
            return Granted(verdict if verdict is not None else Verdict.grant(user, "-"))
        try:
            allowed = auth.authorize(user, verdict)
        except SourceUnavailable as exc:
            return unavailable(user, exc)
        if not allowed:
            return Refused(user, "groups", Reason.NOT_IN_GROUP)
        return Granted(verdict if verdict is not None else Verdict.grant(user, "-"))


_gates: dict[int, tuple[Authenticator, Gate]] = {}
_gates_lock = threading.Lock()


def gate_for(authenticator: Authenticator) -> Gate:
    """The Gate of a location's Authenticator (one per Authenticator, kept for the process)."""
    known = _gates.get(id(authenticator))
    if known is not None and known[0] is authenticator:
        return known[1]
    with _gates_lock:
        gate = Gate(authenticator, lockout_for(authenticator.settings))
        _gates[id(authenticator)] = (authenticator, gate)
    return gate
