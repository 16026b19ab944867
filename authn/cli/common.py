"""What every ``authn`` command shares: exit codes (htpasswd's), the error type, prompts."""

from __future__ import annotations

import getpass
import os
import sys
import warnings
from collections.abc import Callable

from authn.cli.atomicfile import Original, group_note, rewrite
from authn.errors import FileProblem

# htpasswd's exit codes; every authn command uses them with the same meaning.
OK = 0
ERR_FILE = 1  #: the file cannot be read, created or written
ERR_SYNTAX = 2  #: bad command line
ERR_VERIFY = 3  #: passwords differ, or a -v check failed
ERR_INTERRUPTED = 4  #: Ctrl-C (or end of input) at a prompt
ERR_OVERFLOW = 5  #: a value is too long
ERR_BAD_USER = 6  #: invalid or unknown user name
ERR_INVALID = 7  #: not a valid password file
ERR_PROBLEMS = 8  #: `authn check` found mistakes

MAX_VALUE = 255  #: htpasswd's limit for user names and passwords, in bytes


class Exit(Exception):
    """Stop the command with ``code`` after printing ``message`` (one line) on stderr."""

    def __init__(self, code: int, message: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def note(text: str) -> None:
    """A line for the human on stderr (stdout stays clean for scripts)."""
    print(text, file=sys.stderr, flush=True)


def check_user_name(user: bytes, what: str = "username") -> None:
    """Refuse names that cannot stand in a password or group file (exit 6) or are too long.

    ``htpasswd`` refuses only ``:``; we also refuse control characters (a newline would
    split the record in two and corrupt the file) and names that the file format cannot hold
    (leading white space or ``#`` make the line blank or a comment; an empty name never logs
    in).
    """
    if len(user) > MAX_VALUE:
        raise Exit(ERR_OVERFLOW, f"{what} too long (> {MAX_VALUE})")
    if b":" in user:
        raise Exit(ERR_BAD_USER, f"{what} contains illegal character ':'")
    bad = next((c for c in user if c < 0x20 or c == 0x7F), None)
    if bad is not None:
        raise Exit(ERR_BAD_USER, f"{what} contains the control character {bytes([bad])!r}")
    if not user:
        raise Exit(ERR_BAD_USER, f"{what} is empty")
    if user[:1] in (b" ", b"#"):
        raise Exit(
            ERR_BAD_USER,
            f"{what} starts with {user[:1].decode()!r}, which makes the line blank or a comment",
        )


def read_file(path: str) -> bytes:
    """The bytes of ``path``; exit 1 with htpasswd's message when it cannot be read."""
    try:
        with open(path, "rb") as fh:
            return fh.read()
    except OSError as exc:
        raise Exit(ERR_FILE, f"cannot open file {path} for read access: {exc.strerror}") from None


def prompt_password(prompt: str) -> bytes:
    """Read a password from the terminal without echo; Ctrl-C exits 4. End of input reads
    as an empty password, as htpasswd's prompt does (same exit codes in scripts)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", getpass.GetPassWarning)
            text = getpass.getpass(prompt)
    except KeyboardInterrupt:
        print(file=sys.stderr)
        raise Exit(ERR_INTERRUPTED, "interrupted; nothing was changed") from None
    except EOFError:
        print(file=sys.stderr)
        return b""
    return os.fsencode(text)


def shown(name: bytes) -> str:
    """A user name as text for messages."""
    return os.fsdecode(name)


def write(path: str, change: Callable[[Original], bytes | None]) -> None:
    """:func:`authn.cli.atomicfile.rewrite` for a command: a :class:`FileProblem` exits 1 with
    its line, and a file this call created gets a note when Apache's group cannot read it."""
    existed = os.path.exists(path)
    try:
        rewrite(path, change)
    except FileProblem as exc:
        raise Exit(ERR_FILE, str(exc)) from None
    if not existed and (line := group_note(path)):
        note(line)
