"""Editing htpasswd-format password files line by line, as ``htpasswd`` does, but safely.

What is a valid file, and which line belongs to which user, follows ``htpasswd``
(Apache's ``support/htpasswd.c``), so ``authn passwd`` refuses exactly the files it refuses
(exit code 7):

* ``htpasswd`` reads the file in pieces of at most 255 bytes (its line buffer); each piece,
  after leading white space, is empty, a ``#`` comment, or must contain a ``:``. A piece
  without one makes the whole file "not a valid htpasswd file".
* the user name of a line is what comes before the first ``:`` once leading white space is
  skipped, compared byte for byte;
* the hash is read as Apache's mod_authn_file reads it (see
  :func:`authn.sources.passwordfile.parse_password_file`): the line trimmed, up to the next
  ``:``.

Edits change only the lines of the user concerned; every other byte of the file (comments,
blank lines, CRLF line ends, unknown lines) is kept. Where ``htpasswd`` would rewrite every
duplicate line of the user, we write the new record on the first and drop the later ones
(Apache only ever reads the first). A file whose last line has no newline gets one before a
new record is appended (``htpasswd`` glues the two lines together).

User names and records are bytes here: exactly what the command line gave
(``os.fsencode``), exactly what is in the file.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from authn.errors import NotAPasswordFile
from authn.sources.passwordfile import DISABLED_PREFIX

HTPASSWD_PIECE = 255  #: htpasswd's line buffer holds 255 bytes and a NUL
_SPACE = b" \t\n\v\f\r"  # apr_isspace / C isspace


@dataclass(frozen=True, slots=True)
class Line:
    number: int
    start: int  #: byte offset of the line in the file
    end: int  #: offset just past its newline
    user: bytes | None  #: None for blank and comment lines
    stored: str  #: the hash as Apache reads it ("" for blank and comment lines)


def _stored(raw: bytes) -> str:
    """The hash of a user line, as Apache reads it: the line trimmed, up to the next ':'."""
    rest = raw.strip(_SPACE).partition(b":")[2]
    return rest.split(b":", 1)[0].decode("latin-1")


def _scan(data: bytes, path: str) -> Iterator[tuple[int, int, int, bytes | None]]:
    """(line number, start, end, user or None) for each line; raises NotAPasswordFile."""
    start = 0
    size = len(data)
    number = 0
    while start < size:
        number += 1
        newline = data.find(b"\n", start)
        end = size if newline < 0 else newline + 1
        raw = data[start:end]
        text = raw.lstrip(_SPACE)
        user: bytes | None = None
        if text and not text.startswith(b"#"):
            if len(raw) > HTPASSWD_PIECE:
                _check_pieces(raw, number, path)
            user, colon, _ = text.partition(b":")
            if not colon:
                raise NotAPasswordFile(path, number)
        elif len(raw) > HTPASSWD_PIECE:
            _check_pieces(raw, number, path)
        yield number, start, end, user
        start = end


def _check_pieces(raw: bytes, number: int, path: str) -> None:
    for i in range(0, len(raw), HTPASSWD_PIECE):
        piece = raw[i : i + HTPASSWD_PIECE].lstrip(_SPACE)
        if piece and not piece.startswith(b"#") and b":" not in piece:
            raise NotAPasswordFile(path, number)


def iter_lines(data: bytes, path: str = "<password file>") -> Iterator[Line]:
    """The lines of a password file in order, read lazily as ``htpasswd`` reads them: the
    lines before a line it refuses come out first, then NotAPasswordFile is raised."""
    for n, start, end, user in _scan(data, path):
        yield Line(n, start, end, user, _stored(data[start:end]) if user is not None else "")


def read_lines(data: bytes, path: str = "<password file>") -> list[Line]:
    """The lines of a password file; raises NotAPasswordFile where ``htpasswd`` would exit 7."""
    return list(iter_lines(data, path))


def raw_hash(data: bytes, line: Line) -> bytes:
    """What ``htpasswd -v`` takes for the hash of a user line: everything after the first
    ':' up to the end of line (Apache itself stops at the next ':' and trims it)."""
    rest = data[line.start : line.end].lstrip(_SPACE).partition(b":")[2]
    return rest.split(b"\n", 1)[0].split(b"\r", 1)[0]


def users(data: bytes, path: str = "<password file>") -> set[bytes]:
    """The user names of a password file; raises NotAPasswordFile."""
    return {user for _, _, _, user in _scan(data, path) if user is not None}


def find(data: bytes, user: bytes, path: str = "<password file>") -> Line | None:
    """The first line of ``user``, or None; raises NotAPasswordFile (for the whole file)."""
    found: Line | None = None
    for n, start, end, name in _scan(data, path):
        if found is None and name == user:
            found = Line(n, start, end, name, _stored(data[start:end]))
    return found


def record(user: bytes, stored: str) -> bytes:
    """One line of a password file."""
    return user + b":" + stored.encode("ascii") + b"\n"


def set_hash(data: bytes, user: bytes, stored: str, path: str = "<password file>") -> bytes:
    """``data`` with ``user``'s hash set to ``stored`` (added at the end if new)."""
    return set_hashes(data, {user: stored}, path)


def set_hashes(data: bytes, new: dict[bytes, str], path: str = "<password file>") -> bytes:
    """``data`` with the hashes of several users set in one pass (new users appended in
    order); an existing user's first line is rewritten and its later lines dropped."""
    out = bytearray()
    previous = 0
    done: set[bytes] = set()
    for _, start, end, user in _scan(data, path):
        if user is None or user not in new:
            continue
        out += data[previous:start]
        if user not in done:
            out += record(user, new[user])
            done.add(user)
        previous = end
    out += data[previous:]
    added = [record(user, stored) for user, stored in new.items() if user not in done]
    if added and out and not out.endswith(b"\n"):
        out += b"\n"
    return bytes(out) + b"".join(added)


def remove(data: bytes, user: bytes, path: str = "<password file>") -> bytes:
    """``data`` without any line of ``user``."""
    out = bytearray()
    previous_end = 0
    for line in read_lines(data, path):
        if line.user == user:
            out += data[previous_end : line.start]
            previous_end = line.end
    out += data[previous_end:]
    return bytes(out)


def is_disabled(stored: str) -> bool:
    return stored.startswith(DISABLED_PREFIX)


def disabled(stored: str) -> str:
    """The hash of a disabled account: never matches any password, here or in Apache."""
    return stored if is_disabled(stored) else DISABLED_PREFIX + stored


def enabled(stored: str) -> str:
    return stored[len(DISABLED_PREFIX) :] if is_disabled(stored) else stored
