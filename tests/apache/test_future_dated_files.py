"""Password and group files whose modification time lies in the future (``rsync -t``,
``cp -p`` or ``tar`` from a host whose clock is ahead), through a real Apache whose children
run as www-data: an edit is taken in every child within a second, and a file made
unreadable answers 500 within a second, as native Apache does."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from authn import hashes
from devkit.apache import Apache
from devkit.http import basic, request

pytestmark = pytest.mark.apache

StartApache = Callable[..., Apache]
DAY = 86400.0
PASSWORDS = {"alice": b"alice-pw", "bob": b"bob-pw", "carol": b"carol-pw"}
PROMISE = 1.0  # seconds: "in every Apache child within a second"


def users_text(names: list[str]) -> bytes:
    return "".join(f"{n}:{hashes.make_hash(PASSWORDS[n], 'apr1')}\n" for n in names).encode()


def write_future_dated(path: Path, data: bytes, *, in_place: bool) -> None:
    """Write ``data`` as ``rsync -t`` (a temp file renamed over) or ``cp -p`` / ``rsync
    --inplace -t`` (rewritten in place) do, then date the file one day ahead."""
    future = time.time() + DAY
    if in_place:
        with open(path, "r+b") as fh:
            fh.truncate(0)
            fh.write(data)
        os.utime(path, (future, future))
        return
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    tmp.chmod(0o644)
    os.utime(tmp, (future, future))
    os.replace(tmp, path)


def site(root: Path, users: Path, groups: Path) -> str:
    for area in ("private", "admins"):
        (root / area).mkdir(parents=True, exist_ok=True)
        (root / area / "index.html").write_text(f"{area}\n")
    block = (
        '    Include "${AUTHN_CONF}/authn-basic.conf"\n'
        f'    PythonOption authn.file "{users}"\n'
        "    PythonOption authn.lockout off\n"
        "    PythonOption authn.cache.ttl 0\n"
    )
    return f"""
Include "${{AUTHN_CONF}}/authn.conf"
DocumentRoot "{root}"
<Directory "{root}/private">
{block}    Require valid-user
</Directory>
<Directory "{root}/admins">
{block}    PythonOption authn.groupfile "{groups}"
    PythonOption authn.require.group admins
    Require valid-user
</Directory>
"""


def status(apache: Apache, area: str, user: str) -> int:
    return request(apache.port, f"/{area}/", auth=basic(user, PASSWORDS[user])).status


def answers_within_the_promise(
    apache: Apache, area: str, user: str, expected: int, changed_at: float, *, every_child: bool = True
) -> None:
    """The first answer ``expected`` comes within the promise; from the promise on, every
    answer (from whichever child: each request may land on any) is ``expected``."""
    while (got := status(apache, area, user)) != expected:
        assert time.monotonic() - changed_at < PROMISE, f"{area} {user}: still {got} after {PROMISE} s"
        time.sleep(0.05)
    if every_child:
        time.sleep(max(0.0, changed_at + PROMISE - time.monotonic()))
        answers = [status(apache, area, user) for _ in range(16)]
        assert answers == [expected] * 16, answers


@pytest.mark.parametrize("mpm", ["prefork", "event"])
def test_future_dated_files_are_taken_and_fail_closed_within_a_second(
    start_apache: StartApache, scratch: Path, mpm: str
) -> None:
    users, groups = scratch / "users", scratch / "groups"
    write_future_dated(users, users_text(["alice", "bob", "carol"]), in_place=False)
    write_future_dated(groups, b"admins: alice carol\n", in_place=False)
    apache = start_apache(site(scratch / "www", users, groups), mpm=mpm)
    for _ in range(16):  # every child loads both files (each request may land on any child)
        assert status(apache, "private", "bob") == 200
        assert status(apache, "admins", "carol") == 200

    # bob deleted from the password file (a temp file renamed over it, as rsync -t does)
    write_future_dated(users, users_text(["alice", "carol"]), in_place=False)
    answers_within_the_promise(apache, "private", "bob", 401, time.monotonic())
    assert status(apache, "private", "alice") == 200

    # carol removed from the group (the group file rewritten in place, as cp -p does)
    write_future_dated(groups, b"admins: alice\n", in_place=True)
    answers_within_the_promise(apache, "admins", "carol", 401, time.monotonic())
    assert status(apache, "admins", "alice") == 200

    if os.geteuid() != 0:
        return  # Apache runs as ourselves and reads our own 0600 files: nothing to test
    for path, area in ((users, "private"), (groups, "admins")):
        try:
            path.chmod(0o600)  # owned by root: the www-data children cannot read it
            answers_within_the_promise(apache, area, "alice", 500, time.monotonic())
            assert f"{path}: Permission denied (errno 13)" in apache.error_log()
        finally:
            path.chmod(0o644)
        answers_within_the_promise(apache, area, "alice", 200, time.monotonic(), every_child=False)
