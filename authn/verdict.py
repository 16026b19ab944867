"""Verdicts (what a credential source answers) and the reasons of refusals.

A source answers every credential check with a :class:`Verdict`. Denials are values, not
exceptions; the other tiers of failure (a source that cannot answer, a bad option) are the
exceptions of :mod:`authn.errors`.
"""

from __future__ import annotations

import dataclasses
import enum
import json
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
    BAD_CODE = "bad code"  #: the password was right, the second factor's code is wrong or reused
    NOT_ENROLLED = "second factor not enrolled"  #: a code is required and the user has none
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
    {
        Reason.UNKNOWN_USER,
        Reason.BAD_PASSWORD,
        Reason.ACCOUNT_DISABLED,
        Reason.ACCOUNT_REFUSED,
        Reason.BAD_CODE,
    }
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


def encode_granted(verdict: Verdict) -> bytes:
    """A granted verdict as compact JSON (source, groups, attributes, the lockout's account;
    never a password), for the caches and sessions that keep it; :func:`decode_granted` gives
    it back. The account is kept so a cached directory verdict needs no DN parsing per request."""
    attrs = {k: list(v) for k, v in verdict.attrs.items()}
    data = [verdict.source, sorted(verdict.groups), attrs, verdict.identity]
    return json.dumps(data, separators=(",", ":")).encode()


def decode_granted(user: str, payload: bytes | str) -> Verdict:
    source, groups, attrs, *rest = json.loads(payload)
    frozen = MappingProxyType({k: tuple(v) for k, v in attrs.items()})
    verdict = Verdict.grant(user, source, frozenset(groups), frozen)
    return dataclasses.replace(verdict, identity=rest[0]) if rest and rest[0] else verdict
