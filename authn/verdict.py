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


class Outcome(enum.Enum):
    """The three answers a source can give."""

    UNKNOWN = "unknown"  #: the source does not know this user
    DENIED = "denied"  #: the source knows the user and refuses (wrong password, disabled)
    GRANTED = "granted"  #: the password is right


_NO_ATTRS: Mapping[str, tuple[str, ...]] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class Verdict:
    """A source's answer for one (user, password) check.

    ``reason`` is a short human reason for logs ("bad password", "unknown user"), never a
    secret. ``groups`` and ``attrs`` are only filled for granted verdicts, by sources that
    know them.
    """

    outcome: Outcome
    user: str
    source: str
    reason: str = ""
    groups: frozenset[str] = frozenset()
    attrs: Mapping[str, tuple[str, ...]] = field(default_factory=lambda: _NO_ATTRS)

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
        return cls(Outcome.GRANTED, user, source, "", groups, attrs)

    @classmethod
    def unknown(cls, user: str, source: str) -> Verdict:
        return cls(Outcome.UNKNOWN, user, source, "unknown user")

    @classmethod
    def denied(cls, user: str, source: str, reason: str = "bad password") -> Verdict:
        return cls(Outcome.DENIED, user, source, reason)


class AuthnError(Exception):
    """Base of the errors this package raises on purpose."""


class SourceUnavailable(AuthnError):
    """A credential source cannot answer: an infrastructure fault, answered with 5xx.

    The message says what we were doing and why it failed, for the error log; it never
    contains a password. ``status`` is the HTTP status to answer: 500 by default, 503 for a
    directory that does not answer (an outage the client may retry).
    """

    def __init__(self, source: str, message: str, *, status: int = 500) -> None:
        super().__init__(message)
        self.source = source
        self.status = status


class ConfigError(AuthnError):
    """An option is missing or has a bad value. The message names the option and the fix."""

    def __init__(self, option: str, message: str) -> None:
        super().__init__(f"{option}: {message}")
        self.option = option
