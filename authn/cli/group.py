"""``authn group``: add and remove users in an AuthGroupFile-format file (``group: u1 u2``).

Lines are read as :func:`authn.sources.groupfile.parse_group_file` (Apache's
mod_authz_groupfile) reads them; a group may span several lines. Only the lines of the
group concerned change: a new member is appended to the group's first line, a removed
member is taken out of every line of the group (a line left with no member is dropped), a
new group is a new line at the end. Every other byte is kept. Writes are locked and atomic
(:mod:`authn.cli.atomicfile`), like ``authn passwd``'s.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass

from authn.cli.atomicfile import Original
from authn.cli.common import ERR_BAD_USER, ERR_FILE, Exit, check_user_name, note, read_file, write
from authn.httpd.words import split_words
from authn.sources.groupfile import parse_group_file

_LINES = re.compile(rb"[^\n]*\n|[^\n]+\Z")
_SPACE = " \t\r\n\v\f"


@dataclass(frozen=True, slots=True)
class GroupLine:
    start: int
    end: int
    group: str
    members: list[str]
    ending: bytes


def _group_lines(data: bytes) -> list[GroupLine]:
    lines = []
    for match in _LINES.finditer(data):
        raw = match.group()
        ending = b"\r\n" if raw.endswith(b"\r\n") else b"\n" if raw.endswith(b"\n") else b""
        text = raw.decode("latin-1").strip(_SPACE)
        if not text or text.startswith("#"):
            continue
        group, colon, rest = text.partition(":")
        if colon:
            lines.append(GroupLine(match.start(), match.end(), group, split_words(rest), ending))
    return lines


def quote_word(word: str) -> str:
    """``word`` as Apache's ap_getword_conf reads it back (quoted if it holds spaces)."""
    if word and not any(c in word for c in _SPACE + "\"'\\"):
        return word
    return '"' + word.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _line(group: str, members: list[str], ending: bytes) -> bytes:
    text = group + ": " + " ".join(quote_word(m) for m in members)
    return text.encode("latin-1") + (ending or b"\n")


def add(data: bytes, group: str, users: list[str]) -> tuple[bytes, list[str]]:
    """``data`` with ``users`` in ``group``; also returns the users that were already in it."""
    mine = [ln for ln in _group_lines(data) if ln.group == group]
    present = {m for ln in mine for m in ln.members}
    already = [u for u in users if u in present]
    new = [u for u in dict.fromkeys(users) if u not in present]
    if not new:
        return data, already
    if not mine:
        if data and not data.endswith(b"\n"):
            data += b"\n"
        return data + _line(group, new, b"\n"), already
    first = mine[0]
    replaced = _line(group, [*first.members, *new], first.ending)
    if not first.ending:
        replaced = replaced[:-1]
    return data[: first.start] + replaced + data[first.end :], already


def remove(data: bytes, group: str, users: list[str] | None) -> tuple[bytes, list[str]]:
    """``data`` without ``users`` in ``group`` (the whole group when ``users`` is None);
    also returns the users that were not in it."""
    out = bytearray()
    previous = 0
    found: set[str] = set()
    for ln in _group_lines(data):
        if ln.group != group:
            continue
        keep = [] if users is None else [m for m in ln.members if m not in users]
        found.update(m for m in ln.members if users is None or m in users)
        if len(keep) == len(ln.members) and users is not None:
            continue
        out += data[previous : ln.start]
        if keep:
            out += _line(group, keep, ln.ending)
        previous = ln.end
    out += data[previous:]
    missing = [] if users is None else [u for u in users if u not in found]
    return bytes(out), missing


def _check_group_name(group: str) -> None:
    check_user_name(os.fsencode(group), "group name")


def _edit(path: str, create: bool, change_data: Callable[[bytes], bytes]) -> None:
    def change(original: Original) -> bytes:
        if original.data is None and not create:
            raise Exit(ERR_FILE, f"cannot modify file {path}; use '-c' to create it")
        return change_data(original.data or b"")

    write(path, change)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="authn group",
        description="Edit an AuthGroupFile-format group file (lines 'group: user1 user2'), "
        "locked and atomic like 'authn passwd'. Every other line is kept as it was.",
        epilog="examples:\n"
        "  authn group add -c /etc/apache2/authn/groups admins alice bob\n"
        "  authn group remove /etc/apache2/authn/groups admins bob\n"
        "  authn group list /etc/apache2/authn/groups --json",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    p_add = sub.add_parser("add", help="add users to a group (the group is created if new)")
    p_add.add_argument("-c", "--create", action="store_true", help="create FILE if missing")
    p_remove = sub.add_parser("remove", help="remove users from a group")
    p_delete = sub.add_parser("delete", help="delete a whole group")
    p_list = sub.add_parser("list", help="show the groups and their members")
    for p in (p_add, p_remove, p_delete, p_list):
        p.add_argument("file", help="AuthGroupFile-format group file")
    for p in (p_add, p_remove, p_delete):
        p.add_argument("group")
    for p in (p_add, p_remove):
        p.add_argument("users", nargs="+", metavar="USER")
    p_list.add_argument("--json", action="store_true", help="one JSON object, for scripts")
    args = parser.parse_args(argv)

    if args.action == "list":
        return _list(args.file, as_json=args.json)
    _check_group_name(args.group)
    users: list[str] = getattr(args, "users", [])
    for user in users:
        check_user_name(os.fsencode(user))
    report: list[str] = []

    def change(data: bytes) -> bytes:
        if args.action == "add":
            new, already = add(data, args.group, users)
            report[:] = [f"{u} is already in {args.group}" for u in already]
        elif args.action == "remove":
            new, missing = remove(data, args.group, users)
            report[:] = [f"{u} is not in {args.group}" for u in missing]
        else:
            new, _ = remove(data, args.group, None)
            if new == data:
                raise Exit(ERR_BAD_USER, f"group {args.group} not found in {args.file}")
        return new

    _edit(args.file, getattr(args, "create", False), change)
    for line in report:
        note(line)
    return 0


def _list(path: str, *, as_json: bool) -> int:
    data = read_file(path)
    members: dict[str, list[str]] = {}
    for ln in _group_lines(data):
        members.setdefault(ln.group, [])
        members[ln.group] += [m for m in ln.members if m not in members[ln.group]]
    parse_group_file(data, path)  # logs the lines Apache would skip
    if as_json:
        json.dump(members, sys.stdout, indent=2)
        print()
    else:
        for group, names in members.items():
            print(f"{group}: {' '.join(quote_word(n) for n in names)}")
    return 0
