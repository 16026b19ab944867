"""WatchedFile takes a changed file within a second whatever its timestamps say, never reads
one half-written, and fails closed at once for a file that can no longer be read.

Files copied with ``rsync -t``, ``cp -p`` or ``tar`` from a host whose clock is ahead carry a
modification time in the future; a restored backup one far in the past, or the very one of
the file it replaces."""

from __future__ import annotations

import json
import os
import pwd
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from authn.errors import SourceUnavailable
from authn.sources.groupfile import GroupFile
from authn.watchedfile import CHECK_INTERVAL, SETTLE_SECONDS, WatchedFile
from devkit.apache import REPO, make_readable

HOUR, DAY = 3600.0, 86400.0
# seconds to add to "now" for the new file's mtime; None: the old file's own mtime
SHIFTS = {"+1 h": HOUR, "+1 day": DAY, "-1 day": -DAY, "old file's mtime": None}


def watch(path: Path, interval: float = CHECK_INTERVAL) -> WatchedFile[bytes]:
    """A watcher; by default with the production interval, as an Apache child has it."""
    return WatchedFile(
        str(path), lambda data, _path: data, what="test file", source="file", interval=interval
    )


def set_mtime(path: Path, mtime: float) -> None:
    os.utime(path, (mtime, mtime))


def replace(path: Path, data: bytes, mtime: float) -> None:
    """Replace ``path`` by rename, the new file's times set before the rename (rsync -t)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    set_mtime(tmp, mtime)
    os.replace(tmp, path)


def seconds_until(condition: Callable[[], bool], limit: float = 1.0) -> float:
    """How long until ``condition()`` holds, polled every 20 ms; fails after ``limit``."""
    started = time.monotonic()
    while not condition():
        assert time.monotonic() - started < limit, f"not within {limit} s"
        time.sleep(0.02)
    return time.monotonic() - started


@pytest.mark.parametrize("shift", SHIFTS.values(), ids=SHIFTS.keys())
def test_a_file_replaced_by_rename_is_taken_within_a_second(tmp_path: Path, shift: float | None) -> None:
    path = tmp_path / "users"
    old_mtime = time.time() + HOUR  # the file it replaces came from the same host
    replace(path, b"alice:old-hash\n", old_mtime)
    watched = watch(path)
    assert watched.current().value == b"alice:old-hash\n"
    # same size, and with None the same mtime: only the inode and the change time differ
    replace(path, b"alice:new-hash\n", old_mtime if shift is None else time.time() + shift)
    seconds_until(lambda: watched.current().value == b"alice:new-hash\n")


@pytest.mark.parametrize("shift", [HOUR, DAY], ids=["+1 h", "+1 day"])
def test_an_in_place_rewrite_of_a_future_dated_file_is_taken_whole(tmp_path: Path, shift: float) -> None:
    """The rewrite (``rsync --inplace -t``, ``cp -p`` over the file) writes the content, then
    sets the future mtime: the half-written state is never taken, the end state within 1 s."""
    path = tmp_path / "users"
    path.write_bytes(b"alice:old\nbob:old\n")
    set_mtime(path, time.time() + shift)
    watched = watch(path, interval=0.1)
    assert watched.current().value == b"alice:old\nbob:old\n"
    time.sleep(0.15)  # the next look at the file is due: it happens right after the write
    with open(path, "r+b") as fh:
        half_written = time.monotonic()  # before the write: a pause of this thread cannot stretch it
        fh.truncate(0)
        fh.write(b"alice:new\n")  # half of the new content
        fh.flush()
        while time.monotonic() - half_written < SETTLE_SECONDS * 0.6:
            assert watched.current().value == b"alice:old\nbob:old\n"  # never the half
            time.sleep(0.01)
        fh.write(b"bob:new\n")
    set_mtime(path, time.time() + shift)
    seconds_until(lambda: watched.current().value == b"alice:new\nbob:new\n")


def test_a_file_rewritten_in_place_and_left_alone_is_taken_by_its_age(tmp_path: Path) -> None:
    """A change nobody looked at while it happened is taken on the first look, when its
    timestamps are safely in the past: no extra wait for a quiet process."""
    path = tmp_path / "users"
    path.write_bytes(b"v1\n")
    watched = WatchedFile(str(path), lambda data, _p: data, what="f", source="file", interval=0.0)
    assert watched.current().value == b"v1\n"
    path.write_bytes(b"v2\n")
    time.sleep(SETTLE_SECONDS + 0.05)
    assert watched.current().value == b"v2\n"


def test_the_first_look_takes_a_future_dated_file_at_once(tmp_path: Path) -> None:
    path = tmp_path / "users"
    path.write_bytes(b"v1\n")
    set_mtime(path, time.time() + DAY)
    assert watch(path).current().value == b"v1\n"


def test_a_future_dated_group_file_replaced_by_rename_is_taken(tmp_path: Path) -> None:
    path = tmp_path / "groups"
    replace(path, b"admins: alice bob\n", time.time() + DAY)
    groups = GroupFile(str(path))
    assert groups.groups_of("bob") == {"admins"}
    replace(path, b"admins: alice\n", time.time() + DAY)  # bob removed
    seconds_until(lambda: not groups.groups_of("bob"))


# --- a file made unreadable ----------------------------------------------------------------
# Root reads any file, so when the tests run as root the scenario runs in a child process as
# an ordinary user (nobody), like Apache's children run as www-data.

UNREADABLE_SCENARIO = """
import json, os, sys, time
from authn.errors import SourceUnavailable
from authn.watchedfile import WatchedFile
path, shift = sys.argv[1], float(sys.argv[2])
watched = WatchedFile(path, lambda data, _p: data, what="test file", source="file", interval=0.1)
assert watched.current().value == b"alice:x\\n"
os.chmod(path, 0o644)  # the change time moves; the file stays readable: still served
time.sleep(0.15)
assert watched.current().value == b"alice:x\\n"
os.chmod(path, 0)
os.utime(path, (time.time() + shift, time.time() + shift))
started = time.monotonic()
answers = []
while time.monotonic() - started < 1.5:
    try:
        answers.append(["served", round(time.monotonic() - started, 3)])
        watched.current()
    except SourceUnavailable as exc:
        answers[-1] = ["failed closed", round(time.monotonic() - started, 3), str(exc)]
        break
    time.sleep(0.02)
print(json.dumps(answers))
"""


def run_unreadable_scenario(tmp_path: Path, shift: float) -> list[list[object]]:
    path = tmp_path / "users"
    path.write_bytes(b"alice:x\n")
    set_mtime(path, time.time() + shift)
    user = None
    if os.geteuid() == 0:
        make_readable(tmp_path)
        nobody = pwd.getpwnam("nobody")
        os.chown(path, nobody.pw_uid, nobody.pw_gid)
        user = "nobody"
    result = subprocess.run(
        [sys.executable, "-c", UNREADABLE_SCENARIO, str(path), str(shift)],
        cwd=REPO,
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONPATH": str(REPO)},
        user=user,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    answers: list[list[object]] = json.loads(result.stdout)
    return answers


@pytest.mark.parametrize("shift", [HOUR, DAY, -DAY], ids=["+1 h", "+1 day", "-1 day"])
def test_a_file_made_unreadable_fails_closed_within_a_second(tmp_path: Path, shift: float) -> None:
    answers = run_unreadable_scenario(tmp_path, shift)
    last = answers[-1]
    assert last[0] == "failed closed", answers
    assert isinstance(last[1], float) and last[1] < 1.0, answers
    assert "Permission denied (errno 13)" in str(last[2])


def test_an_unreadable_file_keeps_failing_closed_until_readable_and_settled(tmp_path: Path) -> None:
    """While the replacement of a removed file settles, the error stands: never the old file."""
    path = tmp_path / "users"
    path.write_bytes(b"old\n")
    watched = WatchedFile(str(path), lambda data, _p: data, what="f", source="file", interval=0.0)
    assert watched.current().value == b"old\n"
    path.unlink()
    with pytest.raises(SourceUnavailable):
        watched.current()
    replace(path, b"new\n", time.time() + DAY)
    seen: list[bytes | None] = []

    def answer() -> bool:
        try:
            seen.append(watched.current().value)
        except SourceUnavailable:
            seen.append(None)
        return seen[-1] is not None

    seconds_until(answer)
    assert b"old\n" not in seen and seen[-1] == b"new\n"


@pytest.mark.parametrize("kind", ["fifo", "folder"])
def test_a_file_replaced_by_a_fifo_or_a_folder_fails_closed_at_once(tmp_path: Path, kind: str) -> None:
    """A FIFO put in the file's place must not hang the reader in open() (an Apache child
    would wait forever, and with it every later request): it answers like an unreadable file."""
    import threading

    path = tmp_path / "users"
    path.write_text("alice:x\n")
    watched = WatchedFile(str(path), lambda data, _: data, what="password file", source="file", interval=0)
    assert watched.current().value == b"alice:x\n"
    path.unlink()
    if kind == "fifo":
        os.mkfifo(path)
    else:
        path.mkdir()
    outcome: list[object] = []

    def look() -> None:
        try:
            outcome.append(watched.current())
        except SourceUnavailable as exc:
            outcome.append(exc)

    reader = threading.Thread(target=look, daemon=True)
    reader.start()
    reader.join(5)
    assert outcome, "the reader hung"
    assert isinstance(outcome[0], SourceUnavailable) and "not a regular file" in str(outcome[0])
