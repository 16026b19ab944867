"""Credential sources and group sources.

A credential source has a ``name`` and a ``check(user, password) -> Verdict`` method. It
answers unknown / denied / granted and raises :class:`authn.errors.SourceUnavailable` only
for infrastructure faults. Sources know nothing of Apache, caches or lockout.
"""

from __future__ import annotations

from typing import Protocol

from authn.verdict import Verdict


class CredentialSource(Protocol):
    """What every credential source offers."""

    name: str

    def check(self, user: str, password: bytes) -> Verdict:
        """Check ``password`` for ``user``; see the module docstring for the contract."""
        ...

    def generation(self) -> object:
        """A value that changes whenever the source's data changes (for cache keys)."""
        ...
