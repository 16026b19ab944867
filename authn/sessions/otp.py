"""The second factor: TOTP (RFC 6238) secrets of enrolled users, and checking a code.

The secrets file (``authn.otp.file``, written by ``authn otp enroll``) has one line per
user, in the spirit of a password file::

    alice:JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP:3f8a...,9c01...

the user, the base32 secret, and the SHA-256 of each unused recovery code (comma separated,
possibly none). ``#`` lines and blank lines are skipped; the first line of a user wins. The
server only reads it (through :class:`~authn.watchedfile.WatchedFile`: an edit takes effect
within a second; a file that cannot be read fails closed).

A code is right when it is the code of the current 30-second step or of the one before or
after (one step of clock drift). It is accepted once: the step is recorded in the session
store, and a code of that step or an earlier one is refused for that user afterwards. A
recovery code works once too (its hash is recorded as used in the session store).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass, field

import pyotp

from authn.httpd.lines import TooLong, logical_lines
from authn.watchedfile import CHECK_INTERVAL, WatchedFile

STEP = 30
DRIFT_STEPS = 1
RECOVERY_CODES = 10


@dataclass(frozen=True, slots=True)
class Enrolment:
    secret: str
    recovery: frozenset[str] = field(default=frozenset())  #: SHA-256 hex of unused codes


def parse_secrets(data: bytes, path: str = "<otp file>") -> dict[str, Enrolment]:
    """The enrolled users of a secrets file; lines that cannot be used are skipped."""
    found: dict[str, Enrolment] = {}
    for item in logical_lines(data.decode("latin-1")):
        if isinstance(item, TooLong):
            break
        line = item[1]
        if not line or line.startswith("#"):
            continue
        user, _, rest = line.partition(":")
        secret, _, recovery = rest.partition(":")
        if not user or user in found or not _valid_secret(secret):
            continue
        found[user] = Enrolment(secret, frozenset(h for h in recovery.split(",") if len(h) == 64))
    return found


def _valid_secret(secret: str) -> bool:
    try:
        return len(pyotp.TOTP(secret).byte_secret()) >= 10
    except Exception:  # pyotp raises binascii.Error, ValueError... for bad base32
        return False


def format_line(user: str, enrolment: Enrolment) -> str:
    return f"{user}:{enrolment.secret}:{','.join(sorted(enrolment.recovery))}"


def new_secret() -> str:
    return pyotp.random_base32(32)


def new_recovery_codes(count: int = RECOVERY_CODES) -> list[str]:
    """Codes of 10 random base32 characters in two groups (``ab3de-fg7hk``): 50 bits each."""
    alphabet = "abcdefghijkmnpqrstuvwxyz23456789"
    return [
        "".join(secrets.choice(alphabet) for _ in range(5))
        + "-"
        + "".join(secrets.choice(alphabet) for _ in range(5))
        for _ in range(count)
    ]


def recovery_hash(code: str) -> str:
    return hashlib.sha256(code.strip().lower().replace(" ", "").encode()).hexdigest()


def provisioning_uri(secret: str, user: str, issuer: str) -> str:
    return str(pyotp.TOTP(secret).provisioning_uri(name=user, issuer_name=issuer))


def matching_step(secret: str, code: str, now: float | None = None) -> int | None:
    """The time step whose code ``code`` is (current one +/- one step), or None."""
    code = code.strip().replace(" ", "")
    if not code.isdigit() or len(code) != 6:
        return None
    totp = pyotp.TOTP(secret)
    step = int((time.time() if now is None else now) // STEP)
    found = None
    for candidate in range(step - DRIFT_STEPS, step + DRIFT_STEPS + 1):
        # compare every candidate, in constant time, so the timing says nothing
        if hmac.compare_digest(totp.at(candidate * STEP), code):
            found = candidate
    return found


class SecretsFile:
    """The enrolled users of ``authn.otp.file``, reloaded when the file changes."""

    def __init__(self, path: str, *, interval: float = CHECK_INTERVAL) -> None:
        self.path = path
        self._file = WatchedFile(
            path, parse_secrets, what="TOTP secrets file", source="otp", interval=interval
        )

    def enrolment(self, user: str, *, folded: bool = False) -> Enrolment | None:
        """The user's enrolment, or None; raises SourceUnavailable when unreadable.

        ``folded``: the login is a directory's, matched without regard to case and spaces
        (``ALICE`` is alice's entry): a line of the file matches when the two fold alike,
        so typing another spelling cannot make an enrolled user look not enrolled."""
        table = self._file.current().value
        found = table.get(user)
        if found is not None or not folded:
            return found
        wanted = " ".join(user.split()).casefold()
        return next((e for name, e in table.items() if " ".join(name.split()).casefold() == wanted), None)
