"""Verdicts (what a credential source answers) and the error types.

A source answers every credential check with a :class:`Verdict`. Denials are values, not
exceptions. Exceptions are kept for the two other tiers of failure:

* :class:`SourceUnavailable`: an infrastructure fault (a file that cannot be read, a
  directory that does not answer). The adapter answers 5xx and logs the message, never 401.
* :class:`ConfigError`: an option has a bad value. The adapter answers 500 and logs the
  message, which names the option, the value and what would be accepted.

Anything else is a bug and propagates.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType


class Reason(enum.StrEnum):
    """Why a request was refused: a closed list, because it is a public contract.

    The value is what the denial line of the error log says (``reason="bad password"``) and
    what the shipped fail2ban filter matches; :data:`COUNTED` are the reasons the lockout
    counts. A source that knows more (Active Directory's sub-codes) says it in a verdict's
    ``detail``, never in a new reason.
    """

    UNKNOWN_USER = "unknown user"  #: no source knows the login
    #: a source knows the user; the password is wrong
    BAD_PASSWORD = "bad password"  # noqa: S105 - a reason, not a password
    ACCOUNT_DISABLED = "account disabled"  #: a disabled account (``!`` line, AD flag)
    ACCOUNT_REFUSED = "account refused"  #: the directory refuses the account (expired, locked...)
    #: refused before any check: nothing was tried
    EMPTY_PASSWORD = "empty password"  # noqa: S105 - a reason, not a password
    LOCKED_OUT = "locked out"  #: too many failures: refused before any check (429)
    NOT_IN_GROUP = "not in a required group"  #: the password was right, the group rule says no
    FILE_UNREADABLE = "file unreadable"  #: our fault (5xx), not the client's
    DIRECTORY_DOWN = "directory down"  #: our fault (5xx), not the client's


#: Real checks that failed: each one counts for the lockout. An empty password is refused
#: before any check, so it tells a guesser nothing and costs no store write (a flood of them
#: must not be able to keep the lockout store busy).
COUNTED: frozenset[Reason] = frozenset(
    {Reason.UNKNOWN_USER, Reason.BAD_PASSWORD, Reason.ACCOUNT_DISABLED, Reason.ACCOUNT_REFUSED}
)
#: What the shipped fail2ban filter matches: the counted guesses and the refusals of a client
#: that is already locked out.
BANNED: frozenset[Reason] = COUNTED | {Reason.LOCKED_OUT}


class Outcome(enum.Enum):
    """The three answers a source can give."""

    UNKNOWN = "unknown"  #: the source does not know this user
    DENIED = "denied"  #: the source knows the user and refuses (wrong password, disabled)
    GRANTED = "granted"  #: the password is right


_NO_ATTRS: Mapping[str, tuple[str, ...]] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class Verdict:
    """A source's answer for one (user, password) check.

    ``reason`` says why a denied or unknown verdict refuses (:class:`Reason`), ``detail``
    adds what the source knows beyond it (Active Directory's "password expired"); neither is
    ever a secret. ``groups`` and ``attrs`` are only filled for granted verdicts, by sources
    that know them. ``identity`` is the account the lockout counts the check under when it
    is not the login itself (a directory entry's DN); empty means the login.
    """

    outcome: Outcome
    user: str
    source: str
    reason: Reason | None = None
    groups: frozenset[str] = frozenset()
    attrs: Mapping[str, tuple[str, ...]] = field(default_factory=lambda: _NO_ATTRS)
    detail: str = ""
    identity: str = ""

    @property
    def granted(self) -> bool:
        return self.outcome is Outcome.GRANTED

    @classmethod
    def grant(
        cls,
        user: str,
        source: str,
        groups: frozenset[str] = frozenset(),
        attrs: Mapping[str, tuple[str, ...]] = _NO_ATTRS,
    ) -> Verdict:
        return cls(Outcome.GRANTED, user, source, None, groups, attrs)

    @classmethod
    def unknown(cls, user: str, source: str) -> Verdict:
        return cls(Outcome.UNKNOWN, user, source, Reason.UNKNOWN_USER)

    @classmethod
    def denied(
        cls, user: str, source: str, reason: Reason = Reason.BAD_PASSWORD, detail: str = ""
    ) -> Verdict:
        return cls(Outcome.DENIED, user, source, reason, detail=detail)


class AuthnError(Exception):
    """Base of the errors this package raises on purpose."""


class SourceUnavailable(AuthnError):
    """A credential source cannot answer: an infrastructure fault, answered with 5xx.

    The message says what we were doing and why it failed, for the error log; it never
    contains a password. ``status`` is the HTTP status to answer: 500 by default, 503 for a
    directory that does not answer (an outage the client may retry). ``reason`` is what the
    denial line says: a file (password or group file) that cannot be read by default.
    """

    def __init__(
        self, source: str, message: str, *, status: int = 500, reason: Reason = Reason.FILE_UNREADABLE
    ) -> None:
        super().__init__(message)
        self.source = source
        self.status = status
        self.reason = reason


class ConfigError(AuthnError):
    """An option is missing or has a bad value. The message names the option and the fix."""

    def __init__(self, option: str, message: str) -> None:
        super().__init__(f"{option}: {message}")
        self.option = option
