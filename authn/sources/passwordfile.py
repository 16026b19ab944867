"""The ``file`` source: an htpasswd-format password file, parsed once per change.

Parsing follows Apache's mod_authn_file line by line, so that we grant exactly what it
grants:

* lines are read by Apache's line reader (:mod:`authn.httpd.lines`): a line ending
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

Lookups are a dict access. Unknown and disabled users are checked against a dummy hash, so
that no name can be told apart by the time its check takes:

* a disabled user against a dummy of its own hash's scheme and cost;
* an unknown name against a dummy of one of the file's timing classes (scheme and cost,
  :func:`authn.hashes.timing_class`), drawn with the weight of the class (how many users
  have it) by a keyed hash of the name: over many names, unknown names cost what the file's
  users cost, in the same proportions, and one name always costs the same. The key is
  derived from the file's content (its salted hashes), so it is the same in every Apache
  process, unknown to clients, and changes rarely when a line is edited (see
  :func:`_mix_key`).
"""

from __future__ import annotations

import bisect
import hashlib
import itertools
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from authn import hashes
from authn.httpd.lines import APACHE_MAX_LINE, TooLong, logical_lines
from authn.verdict import Reason, Verdict
from authn.watchedfile import CHECK_INTERVAL, Generation, WatchedFile

log = logging.getLogger("authn")

DISABLED_PREFIX = "!"


#: What an empty file's unknown names are checked against: bcrypt at htpasswd's default cost.
_EMPTY_FILE_HASH = "$2y$05$" + "." * 53
#: How many users (in file order) the key of the dummy choice is derived from.
_KEY_SAMPLE = 2000
#: Schemes whose line a client who knows the password can compute (no salt, or 4096 salts).
_UNSALTED = frozenset({"sha1", "plaintext", "crypt"})


@dataclass(frozen=True, slots=True)
class DummyMix:
    """The dummy hashes unknown names are checked against, one per timing class of the file.

    ``dummies[i]`` is drawn for the names whose keyed hash falls below ``bounds[i]`` (and not
    below ``bounds[i - 1]``): the bounds split [0, 2**64) in the proportions of the classes.
    """

    dummies: tuple[str, ...]
    bounds: tuple[int, ...]
    key: bytes

    def dummy_for(self, user: str) -> str:
        """The dummy for ``user``: always the same for one name and one file content."""
        digest = hashlib.blake2b(user.encode("utf-8", "surrogatepass"), digest_size=8, key=self.key)
        return self.dummies[bisect.bisect_right(self.bounds, int.from_bytes(digest.digest(), "big"))]


@dataclass(frozen=True, slots=True)
class PasswordTable:
    """The parsed content of a password file."""

    hashes: dict[str, str]  #: user -> stored hash (first line wins)
    mix: DummyMix  #: what an unknown name is checked against (see the module docstring)
    #: disabled user -> a dummy of the scheme and cost of the user's own hash
    disabled: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    warnings: tuple[str, ...] = field(default=())

    def dummy_for(self, user: str) -> str:
        """The dummy hash an unknown ``user`` is checked against."""
        return self.mix.dummy_for(user)


def parse_password_file(data: bytes, path: str = "<password file>") -> PasswordTable:
    """Parse an htpasswd-format file by Apache's rules; never raises for bad content.

    Also loads and warms what checking the file's hashes needs (:func:`authn.hashes.warm_up`),
    so the first requests after a load never import anything."""
    table: dict[str, str] = {}
    counts: dict[hashes.TimingClass, int] = {}  # what checking a user costs -> how many users
    example: dict[hashes.TimingClass, str] = {}  # -> the first hash of that cost
    disabled_class: dict[str, hashes.TimingClass] = {}  # disabled user -> its own hash's class
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
        disabled = stored.startswith(DISABLED_PREFIX)
        own = stored[len(DISABLED_PREFIX) :] if disabled else stored
        timing = hashes.timing_class(own)
        problem = ""
        if not colon:
            problem = "no ':' between user and hash; this user can never log in"
        elif not user:
            problem = "empty user name; line ignored"
        elif not stored:
            problem = f"user {user!r} has an empty hash and can never log in"
        elif user in table:
            problem = f"user {user!r} appears again; the first line wins, this one is ignored"
        elif timing[0] == "plaintext" and not disabled:
            problem = (
                f"user {user!r} has a plaintext password, which Apache on Unix never accepts; "
                "set a hash with 'authn passwd'"
            )
        if problem:
            warnings.append(f"{path}:{number}: {problem}")
        if user not in table:
            table[user] = stored
            if timing in counts:
                counts[timing] += 1
            else:
                counts[timing], example[timing] = 1, own
            if disabled:
                disabled_class[user] = timing
    mix, dummy_of = _dummy_mix(counts, example, _mix_key(table))
    disabled_dummies = {user: dummy_of[timing] for user, timing in disabled_class.items()}
    return PasswordTable(table, mix, MappingProxyType(disabled_dummies), tuple(warnings))


def _dummy_mix(
    counts: dict[hashes.TimingClass, int], example: dict[hashes.TimingClass, str], key: bytes
) -> tuple[DummyMix, dict[hashes.TimingClass, str]]:
    """The file's timing classes weighted by their number of users, one dummy each (made
    from the class's first hash); and the dummy of each class. An empty file gets bcrypt at
    htpasswd's default cost."""
    if not counts:
        counts[hashes.timing_class(_EMPTY_FILE_HASH)] = 1
        example[hashes.timing_class(_EMPTY_FILE_HASH)] = _EMPTY_FILE_HASH
    dummy_of: dict[hashes.TimingClass, str] = {}
    bounds: list[int] = []
    total, running = sum(counts.values()), 0
    for timing in sorted(counts):  # a fixed order: the same in every process
        hashes.warm_up(example[timing])
        dummy_of[timing] = hashes.dummy_like(example[timing])
        running += counts[timing]
        bounds.append(running * 2**64 // total)
    mix = DummyMix(tuple(dummy_of[t] for t in sorted(counts)), tuple(bounds), key)
    return mix, dummy_of


def _mix_key(table: Mapping[str, str]) -> bytes:
    """The key of the dummy choice: the same for the same file in every process, and
    unknown to a client, who knows neither the salts of the hashes nor the other users.

    It is the smallest digest of the first :data:`_KEY_SAMPLE` lines (user and hash) that
    hold a salted hash, not a digest of the whole file: adding, removing or changing a line
    changes it only when that line held the smallest digest (about one edit in two thousand),
    so an unknown name keeps its cost across edits as a user does, and comparing a name's
    time before and after an edit does not tell whether it exists. Unsalted lines ({SHA},
    plaintext, DES with its 4096 salts) count only in a file that has no other: a client who
    knows one account's password could otherwise compute its line.
    """
    lines = list(itertools.islice(table.items(), _KEY_SAMPLE))
    salted = [
        (u, h) for u, h in lines if hashes.identify(h.removeprefix(DISABLED_PREFIX)).scheme not in _UNSALTED
    ]
    smallest = b""
    for user, stored in salted or lines:
        line = f"{user}:{stored}".encode("latin-1", "replace")
        digest = hashlib.blake2b(line, digest_size=32, person=b"authn-dummy-mix").digest()
        if not smallest or digest < smallest:
            smallest = digest
    return smallest


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
        dummy = table.dummy_for(user)  # for known users too: both ways do the same work
        stored = table.hashes.get(user)
        if stored is None:
            hashes.verify(password, dummy)
            return Verdict.unknown(user, self.name)
        if stored.startswith(DISABLED_PREFIX):
            hashes.verify(password, table.disabled[user])
            return Verdict.denied(user, self.name, Reason.ACCOUNT_DISABLED)
        if hashes.verify(password, stored):
            return Verdict.grant(user, self.name)
        return Verdict.denied(user, self.name)
