"""``authn otp``: the second factor's secrets file (``authn.otp.file``).

``enroll FILE USER`` gives the user a new TOTP secret (replacing an old one), prints the
``otpauth://`` URI and a QR code for an authenticator app, and ten one-time recovery codes,
shown once and stored only as SHA-256 hashes. ``remove FILE USER`` takes the user out (the
password alone then decides, or nothing does, per ``authn.otp.optional``). ``list FILE``
shows who is enrolled and how many recovery codes each has left. Writes are locked and
atomic, new files are made readable by the owner and the Apache group only (0640), like
``authn passwd``'s.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from typing import TextIO

from authn.cli.atomicfile import Original, rewrite
from authn.cli.common import ERR_BAD_USER, ERR_FILE, Exit, check_user_name, note
from authn.errors import FileProblem
from authn.sessions import otp


def _lines_without(data: bytes, user: str) -> tuple[list[bytes], bool]:
    kept, found = [], False
    for line in data.splitlines(keepends=True):
        name = line.split(b":", 1)[0].decode("latin-1").strip()
        if name == user and not line.lstrip().startswith(b"#"):
            found = True
            continue
        kept.append(line)
    return kept, found


def _write(path: str, change: Callable[[Original], bytes | None]) -> None:
    try:
        rewrite(path, change)
    except FileProblem as exc:
        raise Exit(ERR_FILE, str(exc)) from None


def enroll(path: str, user: str, issuer: str, out: TextIO | None = None) -> list[str]:
    """Enroll ``user``; returns the recovery codes (also printed with the URI and QR code)."""
    check_user_name(user.encode("utf-8"))
    secret = otp.new_secret()
    codes = otp.new_recovery_codes()
    enrolment = otp.Enrolment(secret, frozenset(otp.recovery_hash(c) for c in codes))
    record = otp.format_line(user, enrolment).encode("utf-8") + b"\n"

    def change(original: Original) -> bytes:
        kept, _ = _lines_without(original.data or b"", user)
        if kept and not kept[-1].endswith(b"\n"):
            kept[-1] += b"\n"
        return b"".join(kept) + record

    _write(path, change)
    out = out or sys.stdout
    uri = otp.provisioning_uri(secret, user, issuer)
    print(f"Scan this with an authenticator app, or enter the secret {secret}:", file=out)
    print(uri, file=out)
    try:
        import segno

        segno.make(uri, error="m").terminal(out=out, compact=True)
    except ImportError:
        note("authn otp: the QR code needs the Python package 'segno'; the URI above works too")
    print("Recovery codes (each works once; keep them safe, they are not shown again):", file=out)
    for code in codes:
        print(f"  {code}", file=out)
    return codes


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="authn otp",
        description="Manage the TOTP second factor of sign-in (the file named by authn.otp.file).",
        epilog="examples:\n"
        "  authn otp enroll /etc/apache2/authn/otp alice\n"
        "  authn otp list /etc/apache2/authn/otp\n"
        "  authn otp remove /etc/apache2/authn/otp alice",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    p_enroll = sub.add_parser(
        "enroll", help="give a user a new secret; prints the QR code and recovery codes"
    )
    p_enroll.add_argument("--issuer", default=os.uname().nodename, help="the name the app shows (the host's)")
    p_remove = sub.add_parser("remove", help="take a user's second factor away")
    p_list = sub.add_parser("list", help="who is enrolled, and their recovery codes left")
    for p in (p_enroll, p_remove, p_list):
        p.add_argument("file", help="the secrets file (authn.otp.file)")
    for p in (p_enroll, p_remove):
        p.add_argument("user")
    args = parser.parse_args(argv)
    if args.action == "enroll":
        enroll(args.file, args.user, args.issuer)
        return 0
    if args.action == "remove":
        removed = []

        def change(original: Original) -> bytes | None:
            if original.data is None:
                raise Exit(ERR_FILE, f"cannot read {args.file}: no such file")
            kept, found = _lines_without(original.data, args.user)
            if found:
                removed.append(args.user)
                return b"".join(kept)
            return None

        _write(args.file, change)
        if not removed:
            raise Exit(ERR_BAD_USER, f"user {args.user} is not enrolled in {args.file}")
        note(f"authn otp: {args.user} is no longer enrolled")
        return 0
    try:
        with open(args.file, "rb") as fh:
            enrolled = otp.parse_secrets(fh.read(), args.file)
    except OSError as exc:
        raise Exit(ERR_FILE, f"cannot read {args.file}: {exc.strerror}") from None
    for user, enrolment in enrolled.items():
        print(f"{user}\trecovery codes left: {len(enrolment.recovery)}")
    return 0
