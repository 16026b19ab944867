"""Never lose a user: concurrent writers, writers killed mid-write, Ctrl-C at the prompt."""

from __future__ import annotations

import os
import pty
import signal
import subprocess
import time
from pathlib import Path

from authn.sources.passwordfile import parse_password_file
from tests.cli.helpers import AUTHN, authn, env, verifies


def test_twenty_concurrent_writers_leave_twenty_users(real_htpasswd: str, tmp_path: Path) -> None:
    path = tmp_path / "users"
    assert authn("passwd", "-cbB", "-C", "4", path, "first", "pw-first").returncode == 0
    procs = [
        subprocess.Popen(
            [*AUTHN, "passwd", "-bB", "-C", "4", str(path), f"user{i}", f"pw-{i}"],
            env=env(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        for i in range(20)
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
    table = parse_password_file(path.read_bytes())
    assert set(table.hashes) == {"first"} | {f"user{i}" for i in range(20)}
    assert table.warnings == ()
    for i in (0, 7, 19):
        assert verifies(real_htpasswd, path, f"user{i}", f"pw-{i}")
    assert not [n for n in os.listdir(tmp_path) if ".tmp." in n]


def test_a_writer_killed_mid_write_leaves_the_old_or_the_new_file(tmp_path: Path) -> None:
    path = tmp_path / "users"
    # A big file, so that writing it takes long enough to be caught in the act.
    old = b"".join(b"user%06d:$2y$04$" % i + b"a" * 53 + b"\n" for i in range(300_000))
    killed_mid_write = 0
    for attempt in range(6):
        path.write_bytes(old)
        proc = subprocess.Popen(
            [*AUTHN, "passwd", "-bB", "-C", "4", str(path), f"new{attempt}", "pw"],
            env=env(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and proc.poll() is None:
            temps = [n for n in os.listdir(tmp_path) if n.startswith(".users.tmp.")]
            if temps:
                # Half the time at once, half after the temp file got some bytes.
                if attempt % 2 and os.stat(tmp_path / temps[0]).st_size == 0:
                    continue
                proc.send_signal(signal.SIGKILL)
                killed_mid_write += 1
                break
        proc.wait(30)
        after = path.read_bytes()
        new = old + f"new{attempt}:".encode()
        assert after == old or (after.startswith(new) and after.count(b"\n") == 300_001)
        for name in os.listdir(tmp_path):
            if name.startswith(".users.tmp."):
                os.unlink(tmp_path / name)
    assert killed_mid_write >= 3, "the writer was never caught while writing"


def _spawn_on_pty(args: list[str]) -> tuple[int, int]:
    pid, fd = pty.fork()
    if pid == 0:  # the child: the pty is its controlling terminal, as for a real admin
        # A runner started in the background by a shell ignores SIGINT, and Python keeps an
        # ignored SIGINT ignored: Ctrl-C would then never reach the prompt.
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.environ.update(env())
        os.execv(AUTHN[0], [*AUTHN, *args])  # noqa: S606 - no shell wanted
    return pid, fd


def _read_until(fd: int, text: bytes, timeout: float = 30) -> bytes:
    seen = b""
    deadline = time.monotonic() + timeout
    while text not in seen and time.monotonic() < deadline:
        try:
            chunk = os.read(fd, 1024)
        except OSError:
            break
        if not chunk:
            break
        seen += chunk
    assert text in seen, seen
    return seen


def _exit_code(pid: int, fd: int) -> int:
    try:
        while os.read(fd, 1024):
            pass
    except OSError:
        pass
    _, status = os.waitpid(pid, 0)
    os.close(fd)
    return os.waitstatus_to_exitcode(status)


def test_ctrl_c_at_the_prompt_exits_4_and_changes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "users"
    path.write_bytes(b"# keep me\nalice:$apr1$x$y\n")
    for answers in ([], [b"first\n"]):
        pid, fd = _spawn_on_pty(["passwd", str(path), "alice"])
        _read_until(fd, b"New password: ")
        for answer in answers:
            os.write(fd, answer)
            _read_until(fd, b"Re-type new password: ")
        os.write(fd, b"\x03")  # Ctrl-C, turned into SIGINT by the terminal
        assert _exit_code(pid, fd) == 4
        assert path.read_bytes() == b"# keep me\nalice:$apr1$x$y\n"
        assert not [n for n in os.listdir(tmp_path) if ".tmp." in n]


def test_the_prompt_asks_twice_without_echo(real_htpasswd: str, tmp_path: Path) -> None:
    path = tmp_path / "users"
    path.write_bytes(b"alice:$apr1$x$y\n")
    pid, fd = _spawn_on_pty(["passwd", str(path), "alice"])
    _read_until(fd, b"New password: ")
    os.write(fd, b"one\n")
    _read_until(fd, b"Re-type new password: ")
    os.write(fd, b"two\n")
    assert _exit_code(pid, fd) == 3
    assert path.read_bytes() == b"alice:$apr1$x$y\n"

    pid, fd = _spawn_on_pty(["passwd", str(path), "alice"])
    _read_until(fd, b"New password: ")
    os.write(fd, b"s3cret pass\n")
    seen = _read_until(fd, b"Re-type new password: ")
    os.write(fd, b"s3cret pass\n")
    assert _exit_code(pid, fd) == 0
    assert b"s3cret" not in seen
    assert verifies(real_htpasswd, path, "alice", "s3cret pass")


def test_import_shows_a_progress_bar_on_a_terminal(tmp_path: Path) -> None:
    path = tmp_path / "users"
    rows = tmp_path / "rows.csv"
    rows.write_text("".join(f"u{i},pw{i}\n" for i in range(30)))
    pid, fd = _spawn_on_pty(["import", "-c", "-C", "4", str(path), str(rows)])
    seen = _read_until(fd, b"30/30")
    assert b"hashing [" in seen
    assert _exit_code(pid, fd) == 0
    assert len(path.read_bytes().splitlines()) == 30


def test_a_symlinked_file_is_written_through_and_stays_a_link(tmp_path: Path) -> None:
    """As htpasswd does: the file the link points to changes, the link stays a link (Apache
    may name either path). A dangling link with -c creates its target."""
    real = tmp_path / "real"
    real.mkdir()
    target = real / "users"
    assert authn("passwd", "-cb", target, "alice", "pw").returncode == 0
    link = tmp_path / "users"
    link.symlink_to(target)
    assert authn("passwd", "-b", link, "bob", "pw").returncode == 0
    assert authn("disable", link, "alice").returncode == 0
    groups = tmp_path / "groups"
    groups.symlink_to(real / "groups")
    assert authn("group", "add", "-c", groups, "admins", "bob").returncode == 0
    assert link.is_symlink() and groups.is_symlink()
    assert [line.split(b":")[0] for line in target.read_bytes().splitlines()] == [b"alice", b"bob"]
    assert b"alice:!" in target.read_bytes()
    assert (real / "groups").read_bytes() == b"admins: bob\n"
    dangling = tmp_path / "new"
    dangling.symlink_to(real / "new")
    assert authn("passwd", "-cb", dangling, "carol", "pw").returncode == 0
    assert dangling.is_symlink() and (real / "new").read_bytes().startswith(b"carol:")
