"""The ``file`` source: an htpasswd-format password file, parsed once per change.

Parsing follows Apache's mod_authn_file line by line, so that we grant exactly what it
grants:

* lines are read by Apache's line reader (:mod:`authn.sources.apachelines`): a line ending
  in a backslash continues on the next one, and each line is trimmed of surrounding white
  space (CRLF files work); empty lines and lines starting with ``#`` are skipped;
* the user name is everything before the first ``:``, the hash everything after it up to the
  next ``:`` (later fields are ignored, as in Apache);
* the first line for a user wins; later ones are shadowed;
* a line longer than Apache's 8190-byte line limit (a CR before the LF counts) ends the
  file for Apache, so it ends it for us too.

Lines that Apache would not use (no colon, empty user, empty or plaintext hash, duplicate
user) are kept exactly as Apache treats them and produce one warning each, naming the file
and the line. A hash that starts with ``!`` is a disabled account (``authn passwd``
writes them): it never authenticates, here or in native Apache, since ``!`` is no hash any
crypt accepts.

Lookups are a dict access; unknown users and disabled users are checked against a dummy hash
of the file's most common scheme and cost, so they take as long as a wrong password.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from authn import hashes
from authn.sources.apachelines import APACHE_MAX_LINE, TooLong, logical_lines
from authn.verdict import Verdict
from authn.watchedfile import CHECK_INTERVAL, Generation, WatchedFile

log = logging.getLogger("authn")

DISABLED_PREFIX = "!"


@dataclass(frozen=True, slots=True)
class PasswordTable:
    """The parsed content of a password file."""

    hashes: dict[str, str]  #: user -> stored hash (first line wins)
    dummy: str  #: a hash of the file's most common scheme and cost that nothing matches
    warnings: tuple[str, ...] = field(default=())


def parse_password_file(data: bytes, path: str = "<password file>") -> PasswordTable:
    """Parse an htpasswd-format file by Apache's rules; never raises for bad content."""
    table: dict[str, str] = {}
    warnings: list[str] = []
    text = data.decode("latin-1")  # byte-exact: one code point per byte
    for item in logical_lines(text):
        if isinstance(item, TooLong):
            warnings.append(
                f"{path}:{item.number}: line longer than {APACHE_MAX_LINE} bytes; Apache stops "
                "reading the file here, so the lines after it are ignored too"
            )
            break
        number, line = item
        if not line or line.startswith("#"):
            continue
        user, colon, rest = line.partition(":")
        stored = rest.split(":", 1)[0]
        problem = ""
        if not colon:
            problem = "no ':' between user and hash; this user can never log in"
        elif not user:
            problem = "empty user name; line ignored"
        elif not stored:
            problem = f"user {user!r} has an empty hash and can never log in"
        elif user in table:
            problem = f"user {user!r} appears again; the first line wins, this one is ignored"
        elif hashes.identify(stored).scheme == "plaintext" and not stored.startswith(DISABLED_PREFIX):
            problem = (
                f"user {user!r} has a plaintext password, which Apache on Unix never accepts; "
                "set a hash with 'authn passwd'"
            )
        if problem:
            warnings.append(f"{path}:{number}: {problem}")
        if user not in table:
            table[user] = stored
    return PasswordTable(table, _dummy_for(table.values()), tuple(warnings))


def _dummy_for(stored_hashes: Iterable[str]) -> str:
    """A dummy hash like the most common (scheme, cost) of the file; bcrypt if it is empty."""
    counts: Counter[hashes.HashInfo] = Counter()
    example: dict[hashes.HashInfo, str] = {}
    for i, stored in enumerate(stored_hashes):
        if i >= 2000:  # a sample is enough to find the common scheme of a large file
            break
        info = hashes.identify(stored)
        if info.scheme in ("plaintext", "crypt-other"):
            continue
        counts[info] += 1
        example.setdefault(info, stored)
    if not counts:
        return hashes.dummy_like("$2y$05$" + "." * 53)
    return hashes.dummy_like(example[counts.most_common(1)[0][0]])


class PasswordFile:
    """Credential source backed by an htpasswd-format file (see the module docstring)."""

    def __init__(self, path: str, *, name: str = "file", interval: float = CHECK_INTERVAL) -> None:
        self.name = name
        self.path = path
        self._file = WatchedFile(
            path, self._parse_and_warn, what="password file", source=name, interval=interval
        )

    @staticmethod
    def _parse_and_warn(data: bytes, path: str) -> PasswordTable:
        table = parse_password_file(data, path)
        for warning in table.warnings:
            log.warning("authn: %s", warning)
        return table

    def table(self) -> PasswordTable:
        """The current parsed file; raises SourceUnavailable when it cannot be read."""
        return self._file.current().value

    def generation(self) -> Generation:
        return self._file.current().generation

    def check(self, user: str, password: bytes) -> Verdict:
        table = self._file.current().value
        stored = table.hashes.get(user)
        if stored is None:
            hashes.verify(password, table.dummy)
            return Verdict.unknown(user, self.name)
        if stored.startswith(DISABLED_PREFIX):
            hashes.verify(password, table.dummy)
            return Verdict.denied(user, self.name, "account disabled")
        if hashes.verify(password, stored):
            return Verdict.grant(user, self.name)
        return Verdict.denied(user, self.name)
