"""Password hashes as Apache stores them in htpasswd-format files.

The contract is Apache's own ``apr_password_validate()`` on Unix, so that whatever native
mod_authn_file grants for a given file, we grant, and nothing more:

* ``$2y$``, ``$2a$``, ``$2b$``: bcrypt. Like Apache, only the first 72 bytes of the password
  count (the ``bcrypt`` package refuses longer input, so we cut it ourselves).
* ``$apr1$``: Apache's MD5 variant, through passlib (imported and warmed once, under a lock:
  see :func:`_apr1`).
* ``{SHA}``: base64 of SHA-1.
* anything else goes to the system's ``crypt(3)`` (libxcrypt on Debian), exactly as Apache
  does: SHA-256/512 crypt (``$5$``, ``$6$``), MD5 crypt (``$1$``), yescrypt (``$y$``),
  traditional DES crypt. A plaintext "hash" never matches, because crypt() of any password
  never yields the plaintext back.

Passwords are ``bytes`` (exactly what the client sent); hashes are ``str``. Nothing here
raises on bad input: a malformed hash simply never matches.
"""

from __future__ import annotations

import base64
import ctypes
import hashlib
import hmac
import re
import secrets
import threading
from dataclasses import dataclass
from typing import Any

import bcrypt

BCRYPT_MAX_BYTES = 72
_BCRYPT_RE = re.compile(r"^\$(2[aby])\$(\d\d)\$[./A-Za-z0-9]{53}$")
_CRYPT64 = "./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_SHA_PREFIX = "{SHA}"
_CRYPT_UNSAFE = "!*:;\\"  # libxcrypt refuses a setting holding any of these


@dataclass(frozen=True, slots=True)
class HashInfo:
    """What a stored hash says about itself: its scheme and its cost (rounds), if any."""

    scheme: str
    cost: int | None = None

    @property
    def label(self) -> str:
        return self.scheme if self.cost is None else f"{self.scheme} (cost {self.cost})"


def identify(stored: str) -> HashInfo:
    """Name the scheme of a stored hash, as Apache would route it."""
    if stored.startswith(("$2y$", "$2a$", "$2b$")):
        m = _BCRYPT_RE.match(stored)
        return HashInfo("bcrypt", int(m.group(2)) if m else None)
    if stored.startswith("$apr1$"):
        return HashInfo("apr1")
    if stored.startswith(_SHA_PREFIX):
        return HashInfo("sha1")
    for prefix, name, default_rounds in (
        ("$5$", "sha256-crypt", 5000),
        ("$6$", "sha512-crypt", 5000),
    ):
        if stored.startswith(prefix):
            m = re.match(r"^\$[56]\$rounds=(\d+)\$", stored)
            return HashInfo(name, int(m.group(1)) if m else default_rounds)
    if stored.startswith("$1$"):
        return HashInfo("md5-crypt")
    if stored.startswith("$y$"):
        return HashInfo("yescrypt")
    if re.fullmatch(r"[./A-Za-z0-9]{13}", stored):
        return HashInfo("crypt")
    if stored.startswith("$"):
        return HashInfo("crypt-other")
    return HashInfo("plaintext")


# --- the system crypt(3), called the way Apache calls it --------------------------------------


def _load_libcrypt() -> ctypes.CDLL:
    """libxcrypt by its soname; ctypes.util (which imports subprocess) only if that fails."""
    try:
        return ctypes.CDLL("libcrypt.so.1", use_errno=True)
    except OSError:
        from ctypes.util import find_library

        return ctypes.CDLL(find_library("crypt") or "libcrypt.so.1", use_errno=True)


_libcrypt = _load_libcrypt()
_crypt_rn = _libcrypt.crypt_rn
_crypt_rn.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_void_p, ctypes.c_int]
_crypt_rn.restype = ctypes.c_char_p
_CRYPT_DATA_SIZE = 32768  # sizeof(struct crypt_data) in libxcrypt


def system_crypt(password: bytes, setting: str) -> str | None:
    """crypt(3) through libxcrypt's reentrant ``crypt_rn``; None when it refuses.

    ctypes drops the GIL for the call, so other threads run while a slow hash is computed.
    """
    if b"\0" in password:
        return None
    try:
        setting_bytes = setting.encode("ascii")
    except UnicodeEncodeError:
        return None
    data = ctypes.create_string_buffer(_CRYPT_DATA_SIZE)
    result: bytes | None = _crypt_rn(password, setting_bytes, data, _CRYPT_DATA_SIZE)
    if not result or result.startswith(b"*"):
        return None
    return result.decode("ascii", "replace")


_apr1_lock = threading.Lock()
_apr1_handler: Any = None


def _apr1() -> Any:
    """passlib's apr1 handler, imported and warmed on first use (passlib costs about 8 MB per
    process, so only a file with apr1 lines pays for it).

    passlib resolves its handlers lazily (``passlib.hash`` imports a handler on attribute
    access; its hash64 codec initialises itself on first use) and none of that is
    thread-safe: concurrent first uses on the threads of a fresh event-MPM child raised
    ``ImportError: cannot import name 'apr_md5_crypt'`` and ``AttributeError: _lazy_opts``
    (APACHE-NOTES #22). The first caller imports the handler and runs one hash and one verify
    with it while holding a lock; no thread sees the handler before that is done.
    """
    global _apr1_handler
    handler = _apr1_handler
    if handler is not None:
        return handler
    with _apr1_lock:
        if _apr1_handler is None:
            from passlib.hash import apr_md5_crypt

            if not apr_md5_crypt.verify(b"warm-up", apr_md5_crypt.hash(b"warm-up")):
                raise RuntimeError("passlib's apr1 handler failed its warm-up check")
            _apr1_handler = apr_md5_crypt
        return _apr1_handler


def warm_up(stored: str) -> None:
    """Load and warm whatever :func:`verify` needs for ``stored`` (apr1: passlib), so that
    the first checks never load anything. Safe to call from any thread, any number of times.
    Everything else :func:`verify` uses is loaded when this module is imported."""
    if stored.startswith("$apr1$"):
        _apr1()


# --- verification -----------------------------------------------------------------------------


def verify(password: bytes, stored: str) -> bool:
    """True when ``password`` matches ``stored`` by Apache's rules; never raises."""
    if not password or not stored or b"\0" in password:
        return False
    if stored.startswith(("$2y$", "$2a$", "$2b$")):
        # libxcrypt's bcrypt is the crypt_blowfish code Apache uses, about 12% faster than the
        # bcrypt package: a cold check then costs what it costs native Apache.
        sample_bcrypt = system_crypt(password[:BCRYPT_MAX_BYTES], stored)
        if sample_bcrypt is not None:
            return hmac.compare_digest(sample_bcrypt.encode("latin-1"), stored.encode("latin-1"))
        try:
            return bcrypt.checkpw(password[:BCRYPT_MAX_BYTES], stored.encode("ascii"))
        except (ValueError, UnicodeEncodeError):
            return False
    if stored.startswith("$apr1$"):
        try:
            return bool(_apr1().verify(password, stored))
        except (ValueError, TypeError):
            return False
    if stored.startswith(_SHA_PREFIX):
        sample = _SHA_PREFIX + base64.b64encode(hashlib.sha1(password).digest()).decode()  # noqa: S324 - Apache's {SHA} format
        return hmac.compare_digest(sample.encode(), stored.encode("latin-1"))
    sample_crypt = system_crypt(password, stored)
    if sample_crypt is None:
        return False
    return hmac.compare_digest(sample_crypt.encode("latin-1"), stored.encode("latin-1"))


TimingClass = tuple[str, str]


def timing_class(stored: str) -> TimingClass:
    """What decides the cost of ``verify(password, stored)``: two hashes of one class cost
    the same to check, whatever the password (scheme and cost, not salt or digest).

    ``(scheme, parameters)``: the cost of bcrypt, the rounds of SHA-crypt, the parameter
    field of yescrypt and its kin. A plaintext "hash" goes to crypt(3) too (see
    :func:`verify`), which refuses at once a setting holding a space, a control character,
    non-ASCII or one of ``! * : ; \\``, and otherwise reads its first characters: two salt
    characters make a DES crypt, ``_`` and eight more a BSDi crypt with the rounds they
    encode; anything else is refused at once.
    """
    well_formed_bcrypt = _BCRYPT_RE.match(stored)  # first: the common case of a large file
    if well_formed_bcrypt:
        return "bcrypt", well_formed_bcrypt.group(2)
    info = identify(stored)
    if info.scheme == "bcrypt":
        return "bcrypt", "malformed"
    if info.cost is not None:  # SHA-256/512 crypt
        return info.scheme, str(info.cost)
    if info.scheme in ("yescrypt", "crypt-other"):
        ident, _, rest = stored[1:].partition("$")
        params = rest.split("$", 1)[0]
        if ident in ("y", "gy", "sha1") or params.startswith("rounds="):
            return info.scheme, f"{ident}${params}"
        if ident == "7":  # scrypt: N, r and p are the first 11 characters
            return info.scheme, f"{ident}${params[:11]}"
        return info.scheme, ident
    if info.scheme == "plaintext":
        if not stored:
            return "empty", ""  # verify() refuses it before any work
        if any(c <= " " or c >= "\x7f" or c in _CRYPT_UNSAFE for c in stored):
            return "plaintext", "refused"
        if stored[0] == "_" and len(stored) >= 9 and all(c in _CRYPT64 for c in stored[1:9]):
            return "plaintext", "bsdi:" + stored[1:5]
        if len(stored) >= 2 and stored[0] in _CRYPT64 and stored[1] in _CRYPT64:
            return "plaintext", "des"
        return "plaintext", "refused"
    return info.scheme, ""


def dummy_like(stored: str) -> str:
    """A hash of the same :func:`timing_class` as ``stored`` that no password matches.

    Checking a password against it costs what checking against ``stored`` costs, so an
    unknown user takes as long as a wrong password. The settings part (scheme, cost, salt)
    is kept and the digest part is replaced by random characters of the same alphabet.
    """
    info = identify(stored)
    if info.scheme == "bcrypt" and info.cost is not None:
        return stored[:29] + "".join(secrets.choice(_CRYPT64) for _ in range(31))
    if info.scheme == "sha1":
        return _SHA_PREFIX + base64.b64encode(secrets.token_bytes(20)).decode()
    if info.scheme == "crypt":
        return stored[:2] + "".join(secrets.choice(_CRYPT64) for _ in range(11))
    if info.scheme == "plaintext":
        # Only the characters crypt(3) reads as settings are kept (none of a password beyond
        # them), then a "$": crypt() accepts it there and never yields it, so the dummy goes
        # the same way through crypt() and never matches.
        kind = timing_class(stored)[1]
        if kind == "des":
            return stored[:2] + "$"
        if kind.startswith("bsdi:"):
            return stored[:9] + "$"
        return "!" if stored else ""
    if stored.startswith("$") and stored.count("$") >= 3:
        head, _, digest = stored.rpartition("$")
        return head + "$" + "".join(secrets.choice(_CRYPT64) for _ in range(len(digest)))
    # Other unknown formats are refused without any work; so are their dummies.
    return "!"


# --- making hashes (for the CLI) --------------------------------------------------------------


def _salt(n: int) -> str:
    return "".join(secrets.choice(_CRYPT64) for _ in range(n))


def make_hash(password: bytes, scheme: str, cost: int | None = None) -> str:
    """Hash ``password`` the way ``htpasswd`` writes it.

    ``scheme`` is one of ``bcrypt`` (written as ``$2y$``, cost 4-17 like htpasswd -C, or up
    to 31), ``apr1``, ``sha256-crypt``, ``sha512-crypt`` (``cost`` is the rounds, written
    only when given, like htpasswd -r), ``sha1`` or ``crypt``. Raises ValueError for an
    unknown scheme or a cost out of range.
    """
    if scheme == "bcrypt":
        rounds = 5 if cost is None else cost
        if not 4 <= rounds <= 31:
            raise ValueError(f"bcrypt cost must be 4 to 31, not {rounds}")
        hashed = bcrypt.hashpw(password[:BCRYPT_MAX_BYTES], bcrypt.gensalt(rounds))
        return "$2y$" + hashed.decode("ascii")[4:]
    if scheme == "apr1":
        return str(_apr1().hash(password))
    if scheme in ("sha256-crypt", "sha512-crypt"):
        prefix = "$5$" if scheme == "sha256-crypt" else "$6$"
        if cost is not None and not 1000 <= cost <= 999_999_999:
            raise ValueError(f"rounds must be 1000 to 999999999, not {cost}")
        setting = prefix + (f"rounds={cost}$" if cost is not None else "") + _salt(16)
        result = system_crypt(password, setting)
        if result is None:
            raise ValueError("the system crypt() refused this password")
        return result
    if scheme == "sha1":
        return _SHA_PREFIX + base64.b64encode(hashlib.sha1(password).digest()).decode()  # noqa: S324
    if scheme == "crypt":
        result = system_crypt(password[:8], _salt(2))
        if result is None:
            raise ValueError("the system crypt() refused this password")
        return result
    raise ValueError(f"unknown scheme {scheme!r}")
