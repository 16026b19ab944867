"""``authn passwd``: a drop-in ``htpasswd`` that writes files atomically, under a lock.

It takes ``htpasswd``'s command lines (flags before operands, bundled flags such as ``-cb``,
``-C10`` or ``-C 10``, ``--`` to end them) and answers with its exit codes, checked in the
same order: command line (2, 5, 6), file access (1), password and hash (3, 4, 5), file
content (7). Differences, all on purpose:

* the default scheme is bcrypt (``$2y$``) with cost :data:`DEFAULT_BCRYPT_COST`, not apr1;
* ``-p`` (plaintext) is refused with exit 2: Apache on Unix never accepts a plaintext
  password, and it would sit readable in the file;
* user names with control characters, a leading space or ``#``, or no characters at all
  are refused with exit 6 (``htpasswd`` writes them and corrupts or shadows the line);
* ``-r`` outside 1000-999999999 is refused with exit 3 (``htpasswd`` writes the broken
  hash ``*0`` and exits 0);
* a disabled account (``authn disable``) stays disabled when its password is changed;
* ``-v`` checks the user's first line only, the one Apache uses (``htpasswd`` checks every
  line of the user and exits 3 if any of them differs);
* the file is replaced atomically under the writers' lock, keeping its mode and owner.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass, field

from authn import hashes
from authn.cli import htpasswdfile
from authn.cli.atomicfile import Original
from authn.cli.common import (
    ERR_BAD_USER,
    ERR_FILE,
    ERR_INVALID,
    ERR_OVERFLOW,
    ERR_SYNTAX,
    ERR_VERIFY,
    MAX_VALUE,
    Exit,
    check_user_name,
    note,
    prompt_password,
    read_file,
    shown,
    write,
)
from authn.errors import NotAPasswordFile

DEFAULT_BCRYPT_COST = 10
BCRYPT_COSTS = range(4, 18)  #: what htpasswd -C accepts
SHA_ROUNDS = range(1000, 1_000_000_000)  #: what crypt(3) accepts for -2/-5 -r
_OPTSTRING = "cnbBimsdpDv25C:r:"
_INTEGER = re.compile(r"\s*[+-]?\d+")  # what strtol() reads

SCHEME_OF_FLAG = {
    "B": "bcrypt",
    "m": "apr1",
    "2": "sha256-crypt",
    "5": "sha512-crypt",
    "s": "sha1",
    "d": "crypt",
}

HELP = f"""\
usage: authn passwd [-c|-n|-D|-v] [-b|-i] [-B|-m|-2|-5|-s|-d] [-C cost] [-r rounds]
                    FILE USER [PASSWORD]
       authn passwd -n [-b|-i] [scheme flags] USER [PASSWORD]

Add or change a user's password in an htpasswd-format file, delete a user, or check a
password. Same command lines and exit codes as Apache's htpasswd, so it can replace it in
scripts; the file is rewritten atomically under a lock, keeping its mode, owner and group.

what to do (at most one; default: add or update USER in the existing FILE):
  -c          create FILE (replacing it if it exists) with USER as its only user
  -n          print "USER:HASH" on stdout; no FILE is read or written
  -D          delete USER from FILE
  -v          check USER's password in FILE (exit 0 if right, 3 if wrong)

where the password comes from (default: asked twice on the terminal, not echoed):
  -b          from the command line: the PASSWORD operand (visible to other local users!)
  -i          from the first line of standard input, asked once (for scripts)

hash scheme (default: bcrypt, written $2y$, cost {DEFAULT_BCRYPT_COST}):
  -B          bcrypt                   -C cost     bcrypt cost, 4 to 17
  -5          SHA-512 crypt            -r rounds   SHA-256/512 rounds (default 5000)
  -2          SHA-256 crypt
  -m          Apache MD5 (apr1)        weak: fast to brute-force; only for old clients
  -s          SHA-1 {{SHA}}              weak: unsalted
  -d          crypt(3) DES             weak: only the first 8 characters count
  -p          refused: Apache on Unix never accepts plaintext passwords

exit codes: 0 ok, 1 file access problem, 2 bad command line, 3 passwords differ or
wrong password (-v), 4 interrupted, 5 value too long, 6 invalid or unknown user name,
7 not a valid password file.

examples:
  authn passwd -c /etc/apache2/authn/users alice        create the file, ask twice
  authn passwd /etc/apache2/authn/users bob             add bob or change his password
  printf '%s\\n' "$PW" | authn passwd -i users carol      from a script, no echo, no argv
  authn passwd -v users alice                           is this alice's password?
  authn passwd -D users bob                             delete bob
"""


@dataclass
class Request:
    """One parsed ``authn passwd`` command line."""

    mode: str = "update"  #: update, create, print, delete, verify
    source: str = "prompt"  #: prompt, arg, stdin
    scheme: str = "bcrypt"
    cost: int | None = None
    path: str = ""
    user: bytes = b""
    password: bytes | None = None
    modes: list[str] = field(default_factory=list)


def parse(argv: list[str]) -> Request:
    """Parse like htpasswd's apr_getopt loop and check_args(); raises Exit."""
    req = Request()
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg in ("-h", "--help"):
            print(HELP, end="")
            raise Exit(0)
        if arg == "--":
            i += 1
            break
        if not arg.startswith("-") or arg == "-":
            break
        j = 1
        while j < len(arg):
            opt = arg[j]
            j += 1
            if opt not in _OPTSTRING.replace(":", ""):
                raise Exit(ERR_SYNTAX, f"illegal option -- {opt}")
            if opt in "Cr":
                if j < len(arg):
                    value = arg[j:]
                elif i + 1 < len(argv):
                    i += 1
                    value = argv[i]
                else:
                    raise Exit(ERR_SYNTAX, f"option requires an argument -- {opt}")
                j = len(arg)
                if not _INTEGER.fullmatch(value) or int(value) <= 0:
                    raise Exit(ERR_SYNTAX, "argument to -C/-r must be a positive integer")
                req.cost = int(value)
            elif opt in "cnDv":
                req.modes.append({"c": "create", "n": "print", "D": "delete", "v": "verify"}[opt])
            elif opt == "b":
                req.source = "arg"
            elif opt == "i":
                req.source = "stdin"
            elif opt == "p":
                raise Exit(
                    ERR_SYNTAX,
                    "-p (plaintext) is not supported: Apache on Unix never accepts a plaintext "
                    "password; use the default bcrypt",
                )
            else:
                req.scheme = SCHEME_OF_FLAG[opt]
        i += 1
    if len(set(req.modes)) > 1:
        raise Exit(ERR_SYNTAX, "only one of -c -n -v -D may be specified")
    if req.modes:
        req.mode = req.modes[0]
    operands = argv[i:]
    wanted = (1 if req.mode == "print" else 2) + (1 if req.source == "arg" else 0)
    if len(operands) != wanted:
        raise Exit(
            ERR_SYNTAX,
            f"expected {_operands_text(req)}, got {len(operands)} operand(s); see 'authn passwd --help'",
        )
    if req.mode != "print":
        req.path = operands.pop(0)
    req.user = os.fsencode(operands[0])
    check_user_name(req.user)
    if req.source == "arg":
        req.password = os.fsencode(operands[1])
        _check_password_length(req.password)
    return req


def _operands_text(req: Request) -> str:
    words = [] if req.mode == "print" else ["FILE"]
    words.append("USER")
    if req.source == "arg":
        words.append("PASSWORD")
    return " ".join(words)


def _check_password_length(password: bytes) -> None:
    if len(password) > MAX_VALUE:
        raise Exit(ERR_OVERFLOW, f"password too long (> {MAX_VALUE})")


def check_file_access(req: Request) -> None:
    """htpasswd's file checks (exit 1), before any password is asked."""
    path = req.path
    regular = os.path.isfile(path)
    if regular:
        try:
            os.close(os.open(path, os.O_RDWR | os.O_APPEND))
        except OSError as exc:
            raise Exit(ERR_FILE, f"cannot open file {path} for read/write access: {exc.strerror}") from None
        return
    if req.mode != "create":
        raise Exit(ERR_FILE, f"cannot modify file {path}; use '-c' to create it")
    real = os.path.realpath(path)  # a dangling symlink: create what it points to, as htpasswd
    folder = os.path.dirname(real)
    if os.path.lexists(real) or not os.access(folder, os.W_OK | os.X_OK):
        raise Exit(ERR_FILE, f"cannot create file {path}")


def read_password(req: Request, *, confirm: bool) -> bytes:
    if req.password is not None:
        return req.password
    if req.source == "stdin":
        data = sys.stdin.buffer.read(MAX_VALUE + 1)
        if len(data) > MAX_VALUE:
            raise Exit(ERR_OVERFLOW, f"password too long (>{MAX_VALUE + 1})")
        if data.endswith(b"\n"):
            data = data[:-2] if data.endswith(b"\r\n") else data[:-1]
        return data
    password = prompt_password("New password: " if confirm else "Enter password: ")
    if len(password) > MAX_VALUE:
        raise Exit(ERR_OVERFLOW, f"password too long (>{MAX_VALUE + 1})")
    if confirm and prompt_password("Re-type new password: ") != password:
        raise Exit(ERR_VERIFY, "password verification error")
    return password


def make_hash(req: Request, password: bytes) -> str:
    """The hash for ``password`` by the request's scheme and cost; raises Exit(3)."""
    if req.cost is not None and req.scheme not in ("bcrypt", "sha256-crypt", "sha512-crypt"):
        note("Warning: Ignoring -C/-r argument for this algorithm.")
    cost = req.cost
    if req.scheme == "bcrypt":
        cost = DEFAULT_BCRYPT_COST if cost is None else cost
        if cost not in BCRYPT_COSTS:
            raise Exit(ERR_VERIFY, f"bcrypt cost (-C) must be 4 to 17, not {cost}")
    elif req.scheme in ("sha256-crypt", "sha512-crypt"):
        if cost is not None and cost not in SHA_ROUNDS:
            raise Exit(ERR_VERIFY, f"rounds (-r) must be 1000 to 999999999, not {cost}")
    else:
        cost = None
    if req.scheme == "crypt" and len(password) > 8:
        note("Warning: Password truncated to 8 characters by CRYPT algorithm.")
    try:
        stored = hashes.make_hash(password, req.scheme, cost)
    except ValueError as exc:
        raise Exit(ERR_VERIFY, f"cannot hash the password: {exc}") from None
    if len(req.user) + 1 + len(stored) > MAX_VALUE - 1:
        raise Exit(ERR_OVERFLOW, "resultant record too long")
    return stored


def run(argv: list[str]) -> int:
    req = parse(argv)
    if req.mode != "print":
        check_file_access(req)
    if req.mode == "verify":
        return _verify(req)
    if req.mode == "delete":
        return _delete(req)
    password = read_password(req, confirm=True)
    if not password:
        note("Warning: empty password; authn never grants an empty password, so this user cannot log in.")
    stored = make_hash(req, password)
    if req.mode == "print":
        sys.stdout.buffer.write(htpasswdfile.record(req.user, stored) + b"\n")
        return 0
    _store(req, stored)
    return 0


def _verify(req: Request) -> int:
    """Check the password in the order ``htpasswd -v`` does, so the exit code is the same:
    the file is read line by line, the user's line is checked when it is reached (the
    password asked there), a wrong password exits 3 at once, and a line htpasswd refuses
    exits 7 only when it is reached first. So with a broken line in the file, a wrong
    password for a user above it exits 3; a right one, a user below it or a missing user
    exits 7. Only the user's first line counts, the one Apache uses."""
    data = read_file(req.path)
    password: bytes | None = None
    try:
        for line in htpasswdfile.iter_lines(data, req.path):
            if line.user != req.user or password is not None:
                continue  # later lines are still read: htpasswd refuses a broken one
            if not htpasswdfile.raw_hash(data, line):
                raise Exit(ERR_INVALID, f"Empty hash for user {shown(req.user)}")
            password = read_password(req, confirm=False)
            if htpasswdfile.is_disabled(line.stored):
                raise Exit(ERR_VERIFY, "password verification failed (the account is disabled)")
            if not hashes.verify(password, line.stored):
                raise Exit(ERR_VERIFY, "password verification failed")
    except NotAPasswordFile as exc:
        raise Exit(ERR_INVALID, str(exc)) from None
    if password is None:
        raise Exit(ERR_BAD_USER, f"User {shown(req.user)} not found")
    note(f"Password for user {shown(req.user)} correct.")
    return 0


def _delete(req: Request) -> int:
    found = False

    def change(original: Original) -> bytes | None:
        nonlocal found
        data = _existing(original, req.path)
        try:
            found = htpasswdfile.find(data, req.user, req.path) is not None
            return htpasswdfile.remove(data, req.user, req.path) if found else None
        except NotAPasswordFile as exc:
            raise Exit(ERR_INVALID, str(exc)) from None

    _rewrite(req.path, change)
    note(f"Deleting password for user {shown(req.user)}" if found else f"User {shown(req.user)} not found")
    return 0


def _store(req: Request, stored: str) -> None:
    outcome = ""

    def change(original: Original) -> bytes:
        nonlocal outcome
        if req.mode == "create":
            outcome = "Adding"
            return htpasswdfile.record(req.user, stored)
        data = _existing(original, req.path)
        try:
            line = htpasswdfile.find(data, req.user, req.path)
            new_hash = stored
            if line is not None and htpasswdfile.is_disabled(line.stored):
                new_hash = htpasswdfile.disabled(stored)
                outcome = "Updating (still disabled; 'authn enable' to let in)"
            else:
                outcome = "Adding" if line is None else "Updating"
            return htpasswdfile.set_hash(data, req.user, new_hash, req.path)
        except NotAPasswordFile as exc:
            raise Exit(ERR_INVALID, str(exc)) from None

    _rewrite(req.path, change)
    note(f"{outcome} password for user {shown(req.user)}")


def _existing(original: Original, path: str) -> bytes:
    if original.data is None:  # removed between our access check and the lock
        raise Exit(ERR_FILE, f"cannot modify file {path}; use '-c' to create it")
    return original.data


def _rewrite(path: str, change: Callable[[Original], bytes | None]) -> None:
    write(path, change)
