"""The errors authn raises on purpose: one tree, each with a message that names the fix.

Denials are not errors: a source answers a wrong password with a verdict
(:class:`authn.verdict.Verdict`). These exceptions are the other tiers of failure::

    AuthnError
    ├── ConfigError          an option has a bad value: 500, the line names the option
    ├── SourceUnavailable    a credential source cannot answer: 5xx, never 401 or 200
    ├── UnreadableFile       a file an option names cannot be read (CA, bind password):
    │                        the source turns it into SourceUnavailable (500, ``file
    │                        unreadable``), retried on the next request
    │   (DirectoryDown       no directory host answered; the ldap source turns it into
    │                        SourceUnavailable with status 503)
    ├── StoreUnavailable     a shared store (lockout counters) cannot answer: the lockout
    │   │                    fails open, logged
    │   └── CacheUnusable    the machine-wide cache file cannot be used (also an OSError):
    │                        each process keeps its own cache, logged
    ├── FileProblem          the CLI cannot read or write a file safely: exit 1, file intact
    └── NotAPasswordFile     the CLI refuses a file htpasswd refuses: exit 7

Anything else is a bug and propagates.
"""

from __future__ import annotations

from authn.verdict import Reason


class AuthnError(Exception):
    """Base of the errors this package raises on purpose."""


class ConfigError(AuthnError):
    """An option is missing or has a bad value. The message names the option and the fix."""

    def __init__(self, option: str, message: str) -> None:
        super().__init__(f"{option}: {message}")
        self.option = option


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


class UnreadableFile(AuthnError):
    """A file named by an option cannot be read. The message names the option, the path,
    the OS error and the fix; it is the same in the error log and in ``authn check``."""

    def __init__(self, option: str, path: str, why: str) -> None:
        super().__init__(
            f"{option}: cannot read {path}: {why}; fix: correct the path, or let the Apache "
            f"user read it (chgrp <Apache group> {path} && chmod 0640 {path})"
        )
        self.option = option
        self.path = path


def probe_file(option: str, path: str) -> None:
    """Raise :class:`UnreadableFile` unless ``path`` can be opened and read now."""
    try:
        with open(path, "rb") as fh:
            fh.read(1)
    except OSError as exc:
        raise UnreadableFile(option, path, exc.strerror or str(exc)) from None


class DirectoryDown(AuthnError):
    """No configured directory host could serve the operation; the message names each host
    and why it failed."""


class StoreUnavailable(AuthnError):
    """A shared store cannot answer; the message says which store and what to check."""


class CacheUnusable(StoreUnavailable, OSError):
    """The machine-wide cache folder or file cannot be used safely (an ``OSError`` too, with
    its ``errno``, so it is handled with every other file error of the cache)."""


class FileProblem(AuthnError):
    """The CLI cannot read or write a file safely; the message names the file and the fix."""


class NotAPasswordFile(AuthnError):
    """The file is not in htpasswd format (``htpasswd`` exits 7 on it)."""

    def __init__(self, path: str, line: int) -> None:
        super().__init__(
            f"{path} does not appear to be a valid htpasswd file (line {line} has no ':' "
            "between user and hash)"
        )
        self.line = line
