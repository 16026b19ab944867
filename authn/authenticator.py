"""From settings to verdicts: which sources to ask, in which order, and the group rule.

:func:`authenticator_for` returns the :class:`Authenticator` of an option set; it is built
once and kept for the life of the process, and the sources it holds (one per password file
path, shared by every location that names the same file) stay warm between requests.
"""

from __future__ import annotations

import dataclasses
import hashlib
import threading
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from authn.cache.verdicts import cache_for
from authn.errors import ConfigError
from authn.settings import Settings, settings_for
from authn.sources import CredentialSource
from authn.sources.groupfile import GroupFile
from authn.sources.passwordfile import PasswordFile
from authn.verdict import Reason, Verdict

if TYPE_CHECKING:  # python-ldap (about 19 MB per process) only where a directory is used
    from authn.sources.ldap.directory import Directory

Before = Callable[[str], None]


def _no_hook(identity: str) -> None:
    """The default ``before`` hook of :meth:`Authenticator.check`: nothing to reserve."""


def _in_network_form(before: Before) -> Before:
    """``before`` for a directory, whose identities are text: pass them on as logins arrive
    from the network (UTF-8 bytes read as Latin-1), the form the lockout keys use."""
    if before is _no_hook:
        return before
    return lambda identity: before(identity.encode("utf-8").decode("latin-1"))


_sources: dict[tuple[str, str], object] = {}
_sources_lock = threading.RLock()


def _shared(kind: str, key: str, make: type) -> object:
    """One source object per (kind, key) in the process, so a file is loaded once."""
    found = _sources.get((kind, key))
    if found is None:
        with _sources_lock:
            found = _sources.get((kind, key))
            if found is None:
                found = _sources[(kind, key)] = make(key)
    return found


LDAP_MISSING = (
    "ldap needs python-ldap, which this Python cannot import: install python3-ldap "
    "(Debian), or pip install 'authn[ldap]' in the venv Apache uses"
)


class Authenticator:
    """Checks credentials and group rules for one location's settings."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        sources: list[CredentialSource] = []
        self.directory: Directory | None = None
        for name in settings.sources:
            if name == "file":
                assert settings.password_file is not None
                sources.append(_shared("file", settings.password_file, PasswordFile))  # type: ignore[arg-type]
            elif name == "ldap":
                try:  # python-ldap is optional (the "ldap" extra, Debian's python3-ldap)
                    from authn.sources.ldap.directory import directory_for
                except ModuleNotFoundError as exc:
                    if exc.name != "ldap":
                        raise
                    raise ConfigError("authn.source", LDAP_MISSING) from None

                self.directory = directory_for(settings)
                sources.append(self.directory)
        self.sources: tuple[CredentialSource, ...] = tuple(sources)
        self.group_file: GroupFile | None = None
        if settings.group_file is not None:
            self.group_file = _shared("groupfile", settings.group_file, GroupFile)  # type: ignore[assignment]
        self.cache = cache_for(settings, self.sources)  # None when authn.cache.ttl is 0

    def identity(self, user: str, verdict: Verdict | None = None) -> str:
        """The account the lockout counts ``user``'s checks under (in the network form of
        ``user``: UTF-8 bytes read as Latin-1, as logins arrive).

        A password file's names are exact, so it is the login. A directory counts under the
        entry it found (its DN: every spelling of the login that finds the entry, ``ALICE``,
        a full-width spelling, ``alice@example.org`` by ``mail``, is one account) and an unknown
        login folded as the directory compares strings: changing the spelling buys a guesser
        no fresh budget. ``verdict`` (a cached or fresh one) tells which source knew the user.
        """
        directory = self.directory
        if directory is None or (verdict is not None and verdict.source != directory.name):
            return user
        return directory.identity(user, verdict).encode("utf-8").decode("latin-1")

    @property
    def identity_is_login(self) -> bool:
        """True when every check counts under the login itself (no directory in the chain),
        so the lockout can look at the (client, login) pair before anything else."""
        return self.directory is None

    def cached(self, user: str, password: bytes) -> Verdict | None:
        """A granted verdict from the cache, or None (no cache, a miss, an empty password)."""
        if self.cache is None or not password:
            return None
        return self.cache.lookup(user, password)

    def check(self, user: str, password: bytes, before: Before = _no_hook) -> Verdict:
        """Ask the sources in order, without the cache; the first that knows the user decides.

        ``before(identity)`` is called right before each real check (a hash, a bind), with
        the account it counts under (:meth:`identity`); it may raise to stop the chain (the
        lockout's reservation does). A wrong password in one source does not fall through to
        the next (Apache's AuthBasicProvider rule). A granted verdict goes into the cache.
        Raises SourceUnavailable when a source that had to be asked cannot answer.
        """
        if not password:
            return Verdict.denied(user, self.sources[0].name if self.sources else "-", Reason.EMPTY_PASSWORD)
        verdict = Verdict.unknown(user, self.sources[-1].name if self.sources else "-")
        for source in self.sources:
            if source is self.directory:
                verdict = self.directory.check(user, password, _in_network_form(before))
            else:
                before(user)
                verdict = source.check(user, password)
            if verdict.outcome is not verdict.outcome.UNKNOWN:
                break
        if verdict.granted and self.directory is not None and verdict.source == self.directory.name:
            verdict = self._with_required_group(verdict)
        if verdict.granted and self.cache is not None:
            self.cache.store_verdict(user, password, verdict)
        return verdict

    def authenticate(self, user: str, password: bytes) -> Verdict:
        """The cache, then the sources (:meth:`check`): a verdict with no lockout around it
        (the request policy, :mod:`authn.gate`, adds the lockout)."""
        return self.cached(user, password) or self.check(user, password)

    def _with_required_group(self, verdict: Verdict) -> Verdict:
        """The directory's verdict with the first required group the user is in added to its
        groups, so that the cached verdict answers the group rule without a directory query
        until it expires (mod_authnz_ldap caches its group compares the same way)."""
        names = self.settings.require_groups
        if not names or any(name in verdict.groups for name in names):
            return verdict
        assert self.directory is not None
        for name in names:
            if self.directory.in_any_group(verdict, (name,)):
                return dataclasses.replace(verdict, groups=verdict.groups | {name})
        return verdict

    def fingerprint(self, user: str, verdict: Verdict) -> str | None:
        """What a session keeps of the credential it was granted on, to end it when that
        changes: for a password file, a digest of the user's stored hash (a new password, a
        deleted or disabled user gives another value or None, within the second the file
        takes to reload); for a directory, the entry's DN and its password-change time
        (:meth:`~authn.sources.ldap.directory.Directory.credential_mark`: None when the entry
        is gone, disabled, locked or expired). Raises SourceUnavailable."""
        if verdict.source == "file":
            for source in self.sources:
                if isinstance(source, PasswordFile):
                    stored = source.table().hashes.get(user)
                    if stored is None or stored.startswith("!"):
                        return None
                    return hashlib.sha256(stored.encode("latin-1")).hexdigest()[:32]
            return None
        directory = self.directory
        dn = verdict.attrs.get("dn", ())
        if directory is None or verdict.source != directory.name or not dn:
            return self.identity(user, verdict)
        mark = directory.credential_mark(dn[0])
        if mark is None:
            return None
        return hashlib.sha256(f"{self.identity(user, verdict)}|{mark}".encode()).hexdigest()[:32]

    @property
    def has_group_rule(self) -> bool:
        return bool(self.settings.require_groups)

    def groups_of(self, user: str, verdict: Verdict | None = None) -> frozenset[str]:
        """The user's groups: those the source found plus those of the group file."""
        groups = verdict.groups if verdict is not None and verdict.user == user else frozenset()
        if self.group_file is not None:
            groups = groups | self.group_file.groups_of(user)
        return groups

    def authorize(self, user: str, verdict: Verdict | None = None) -> bool:
        """True when the group rule passes (or there is none).

        Groups of the group file and of the verdict are checked first; for a user the
        directory granted, the directory is then asked (by DN or by name under
        ``authn.ldap.group_base``, nested groups included). Raises SourceUnavailable.
        """
        if not self.settings.require_groups:
            return True
        groups = self.groups_of(user, verdict)
        if any(name in groups for name in self.settings.require_groups):
            return True
        if self.directory is not None and verdict is not None and verdict.user == user:
            if verdict.source == self.directory.name:
                return self.directory.in_any_group(verdict, self.settings.require_groups)
        return False


_authenticators: dict[Settings, Authenticator] = {}


# Per-request fast path: the option pairs exactly as Apache hands them over (same location,
# same order) -> Authenticator. One tuple and one dict lookup, about 1 us inside Apache,
# against about 3 us for parsing the key and hashing Settings. Bounded: option sets are few.
_by_pairs: dict[tuple[tuple[str, str], ...], Authenticator] = {}
_BY_PAIRS_MAX = 1024


def authenticator_for(options: Mapping[str, str]) -> Authenticator:
    """The Authenticator for an option set (raises ConfigError for bad options)."""
    pairs = tuple(options.items())
    found = _by_pairs.get(pairs)
    if found is not None:
        return found
    settings = settings_for(options)
    found = _authenticators.get(settings)
    if found is None:
        with _sources_lock:
            found = _authenticators.setdefault(settings, Authenticator(settings))
    if len(_by_pairs) < _BY_PAIRS_MAX:
        _by_pairs[pairs] = found
    return found
