"""``authn list``, ``authn disable``, ``authn enable``: looking after the users of a file.

``list`` reads the file as Apache does (:func:`authn.sources.passwordfile.parse_password_file`)
and shows each user's hash scheme, flagging the weak ones. ``disable`` prefixes the hash with
``!`` (the hash is kept, so ``enable`` restores the same password); no crypt of any password
starts with ``!``, so native Apache refuses the account too, and our server logs "account
disabled".
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import asdict, dataclass

from authn import hashes
from authn.cli import htpasswdfile
from authn.cli.atomicfile import Original, rewrite
from authn.cli.common import ERR_BAD_USER, ERR_FILE, ERR_INVALID, Exit, note, read_file, shown
from authn.cli.passwd import DEFAULT_BCRYPT_COST
from authn.errors import FileProblem, NotAPasswordFile
from authn.sources.passwordfile import parse_password_file

WEAK_SCHEMES = {
    "apr1": "Apache MD5: fast to brute-force",
    "sha1": "unsalted SHA-1: fast to brute-force",
    "crypt": "DES crypt: only 8 characters count",
    "md5-crypt": "MD5 crypt: fast to brute-force",
    "plaintext": "plaintext: never accepted by Apache on Unix",
    "crypt-other": "unknown scheme",
}
MIN_SHA_ROUNDS = 5000


@dataclass(frozen=True, slots=True)
class UserInfo:
    user: str
    scheme: str
    cost: int | None
    disabled: bool
    weak: str  #: why the hash is weak, "" when it is not


def describe(user: str, stored: str) -> UserInfo:
    disabled = htpasswdfile.is_disabled(stored)
    info = hashes.identify(htpasswdfile.enabled(stored))
    weak = WEAK_SCHEMES.get(info.scheme, "")
    if info.scheme == "bcrypt" and info.cost is not None and info.cost < DEFAULT_BCRYPT_COST:
        weak = f"bcrypt cost {info.cost} is below {DEFAULT_BCRYPT_COST}"
    if info.scheme.startswith("sha") and info.cost is not None and info.cost < MIN_SHA_ROUNDS:
        weak = f"{info.cost} rounds is below {MIN_SHA_ROUNDS}"
    return UserInfo(user, info.scheme, info.cost, disabled, weak)


def list_users(path: str, *, as_json: bool, weak_only: bool) -> int:
    table = parse_password_file(read_file(path), path)
    for warning in table.warnings:
        note(f"warning: {warning}")
    # lines Apache cannot use (no ':' or an empty name or hash) are in the warnings, not users
    infos = [describe(user, stored) for user, stored in table.hashes.items() if user and stored]
    if weak_only:
        infos = [i for i in infos if i.weak]
    if as_json:
        json.dump([asdict(i) for i in infos], sys.stdout, indent=2)
        print()
        return 0
    width = max([len(i.user) for i in infos] + [4])
    print(f"{'USER':<{width}}  {'SCHEME':<20}  STATUS    NOTE")
    for i in infos:
        scheme = i.scheme if i.cost is None else f"{i.scheme} ({i.cost})"
        status = "disabled" if i.disabled else "active"
        note_text = f"WEAK: {i.weak}" if i.weak else ""
        print(f"{i.user:<{width}}  {scheme:<20}  {status:<8}  {note_text}".rstrip())
    return 0


def set_disabled(path: str, users: list[str], *, disable: bool) -> int:
    names = [os.fsencode(u) for u in users]
    messages: list[str] = []

    def change(original: Original) -> bytes:
        if original.data is None:
            raise Exit(ERR_FILE, f"cannot modify file {path}: it does not exist")
        data = original.data
        messages.clear()
        for name in names:
            try:
                line = htpasswdfile.find(data, name, path)
            except NotAPasswordFile as exc:
                raise Exit(ERR_INVALID, str(exc)) from None
            if line is None:
                raise Exit(ERR_BAD_USER, f"User {shown(name)} not found in {path}")
            flip = htpasswdfile.disabled if disable else htpasswdfile.enabled
            new = flip(line.stored)
            verb = "Disabling" if disable else "Enabling"
            if new == line.stored:
                verb = "Already disabled:" if disable else "Already enabled:"
            messages.append(f"{verb} user {shown(name)}")
            data = htpasswdfile.set_hash(data, name, new, path)
        return data

    try:
        rewrite(path, change)
    except FileProblem as exc:
        raise Exit(ERR_FILE, str(exc)) from None
    for message in messages:
        note(message)
    return 0
