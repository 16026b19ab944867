"""``authn import``: many users at once from CSV (``user,password`` per row) or stdin.

Every row is checked before anything is hashed (a bad row stops the import with its row
number, and the file is untouched). Passwords are hashed on all cores (a process pool:
bcrypt holds the GIL-free C code, but processes also scale apr1 and the crypt schemes), with
a progress bar on stderr when it is a terminal and none when piped. The file is then
rewritten once, locked and atomic, exactly like ``authn passwd`` does for one user.
"""

from __future__ import annotations

import argparse
import csv
import io
import os
import sys
from concurrent.futures import ProcessPoolExecutor

from authn import hashes
from authn.cli import htpasswdfile
from authn.cli.atomicfile import Original
from authn.cli.common import (
    ERR_BAD_USER,
    ERR_FILE,
    ERR_INVALID,
    ERR_OVERFLOW,
    ERR_SYNTAX,
    MAX_VALUE,
    Exit,
    check_user_name,
    note,
    read_file,
    write,
)
from authn.cli.passwd import BCRYPT_COSTS, DEFAULT_BCRYPT_COST
from authn.errors import NotAPasswordFile

SCHEMES = ("bcrypt", "sha512-crypt", "sha256-crypt", "apr1")


def _hash_one(job: tuple[bytes, str, int | None]) -> str:
    password, scheme, cost = job
    return hashes.make_hash(password, scheme, cost)


#: UTF-8, with the byte order mark that spreadsheets write dropped (not part of a user name);
#: bytes that are not UTF-8 pass through unchanged (surrogateescape, as os.fsencode undoes)
CSV_ENCODING = "utf-8-sig"


def read_rows(stream: io.TextIOBase | io.TextIOWrapper, where: str) -> dict[bytes, bytes]:
    """user -> password from CSV rows; a first row ``user,password`` is a header. Rows with
    an empty password are kept (as htpasswd would store them) with one warning naming them."""
    rows: dict[bytes, bytes] = {}
    empty: list[int] = []
    for number, row in enumerate(csv.reader(stream), start=1):
        if not row or (len(row) == 1 and not row[0].strip()):
            continue
        if number == 1 and [c.strip().lower() for c in row] == ["user", "password"]:
            continue
        if len(row) != 2:
            raise Exit(ERR_SYNTAX, f"{where}:{number}: expected 2 columns (user,password)")
        user, password = (os.fsencode(c) for c in row)
        try:
            check_user_name(user)
        except Exit as exc:
            raise Exit(exc.code, f"{where}:{number}: {exc.message}") from None
        if len(password) > MAX_VALUE:
            raise Exit(ERR_OVERFLOW, f"{where}:{number}: password too long (> {MAX_VALUE})")
        if user in rows:
            raise Exit(ERR_BAD_USER, f"{where}:{number}: user {row[0]} appears twice")
        if not password:
            empty.append(number)
        rows[user] = password
    if empty:
        shown = ", ".join(map(str, empty[:10])) + (", ..." if len(empty) > 10 else "")
        note(
            f"Warning: {where}: {len(empty)} row(s) with an empty password (row {shown}); "
            "authn never grants an empty password, so these users cannot log in."
        )
    return rows


class Progress:
    """A one-line progress bar on stderr, only when stderr is a terminal."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.shown = sys.stderr.isatty() and total > 0
        self.last = -1

    def update(self, done: int) -> None:
        if not self.shown:
            return
        percent = done * 100 // self.total
        if percent != self.last:
            self.last = percent
            bar = "#" * (percent * 30 // 100)
            sys.stderr.write(f"\rhashing [{bar:<30}] {done}/{self.total}")
            sys.stderr.flush()

    def close(self) -> None:
        if self.shown:
            sys.stderr.write("\n")


def hash_all(rows: dict[bytes, bytes], scheme: str, cost: int | None, jobs: int) -> dict[bytes, str]:
    work = [(password, scheme, cost) for password in rows.values()]
    progress = Progress(len(work))
    results: list[str] = []
    chunk = max(1, min(64, len(work) // (jobs * 8) or 1))
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        for stored in pool.map(_hash_one, work, chunksize=chunk):
            results.append(stored)
            progress.update(len(results))
    progress.close()
    return dict(zip(rows, results, strict=True))


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="authn import",
        description="Add or update many users of a password file from CSV rows "
        "'user,password' (a header row 'user,password' is skipped), hashed on all cores. "
        "Every row is checked first; on any error the file is left untouched.",
        epilog="examples:\n"
        "  authn import -c /etc/apache2/authn/users new-staff.csv\n"
        "  producer | authn import --skip-existing /etc/apache2/authn/users -",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("file", help="htpasswd-format password file")
    parser.add_argument("csv", nargs="?", default="-", help="CSV file, or - for stdin (default)")
    parser.add_argument("-c", "--create", action="store_true", help="create FILE if missing")
    parser.add_argument("--scheme", choices=SCHEMES, default="bcrypt", help="default: bcrypt")
    parser.add_argument("-C", "--cost", type=int, help=f"bcrypt cost, 4-17 (default {DEFAULT_BCRYPT_COST})")
    parser.add_argument("--skip-existing", action="store_true", help="keep users already in FILE unchanged")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="hashing processes (all cores)")
    args = parser.parse_args(argv)
    cost = args.cost
    if args.scheme == "bcrypt":
        cost = DEFAULT_BCRYPT_COST if cost is None else cost
        if cost not in BCRYPT_COSTS:
            raise Exit(ERR_SYNTAX, f"bcrypt cost must be 4 to 17, not {cost}")
    elif cost is not None:
        raise Exit(ERR_SYNTAX, "--cost applies to bcrypt only")

    if args.csv == "-":
        stdin = io.TextIOWrapper(
            sys.stdin.buffer, encoding=CSV_ENCODING, errors="surrogateescape", newline=""
        )
        rows = read_rows(stdin, "stdin")
    else:
        try:
            with open(args.csv, newline="", encoding=CSV_ENCODING, errors="surrogateescape") as fh:
                rows = read_rows(fh, args.csv)
        except OSError as exc:
            raise Exit(ERR_FILE, f"cannot read {args.csv}: {exc.strerror}") from None

    existing = _existing_users(args.file, args.create)
    if args.skip_existing:
        rows = {u: p for u, p in rows.items() if u not in existing}
    new_hashes = hash_all(rows, args.scheme, cost, max(1, args.jobs))
    counts = {"added": 0, "updated": 0}

    def change(original: Original) -> bytes | None:
        if original.data is None and not args.create:
            raise Exit(ERR_FILE, f"cannot modify file {args.file}; use '-c' to create it")
        data = original.data or b""
        try:
            present = htpasswdfile.users(data, args.file)
        except NotAPasswordFile as exc:
            raise Exit(ERR_INVALID, str(exc)) from None
        todo = {u: h for u, h in new_hashes.items() if not (args.skip_existing and u in present)}
        counts["updated"] = sum(1 for u in todo if u in present)
        counts["added"] = len(todo) - counts["updated"]
        return htpasswdfile.set_hashes(data, todo, args.file) if todo else None

    write(args.file, change)
    note(f"authn import: {counts['added']} added, {counts['updated']} updated in {args.file}")
    return 0


def _existing_users(path: str, create: bool) -> set[bytes]:
    if not os.path.lexists(path):
        if create:
            return set()
        raise Exit(ERR_FILE, f"cannot modify file {path}; use '-c' to create it")
    data = read_file(path)
    try:
        return set(htpasswdfile.users(data, path))
    except NotAPasswordFile as exc:
        raise Exit(ERR_INVALID, str(exc)) from None
