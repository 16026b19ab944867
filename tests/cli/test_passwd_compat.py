"""``authn passwd`` against the real ``htpasswd``: same command line, same exit code.

Each case runs both tools on two copies of the same file (written by htpasswd, with comments,
a CRLF line and an indented comment). Then:

* the exit codes must be equal;
* on failure, our copy must be byte-identical to what it was, with a one-line message;
* on success, ``htpasswd -v`` must accept the new password in our copy and every other line
  must be byte-identical.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cli.helpers import AUTHN, authn, env, htpasswd, verifies

PASSWORDS = {"alice": "secret-a", "bob": "secret-b", "carol": "secret-c"}
LONG = "x" * 256


@pytest.fixture(scope="module")
def original(real_htpasswd: str) -> bytes:
    def line(flag: str, user: str) -> bytes:
        out = htpasswd(real_htpasswd, f"-nb{flag}", user, PASSWORDS[user]).stdout
        return out.strip(b"\n")

    return (
        b"# users of the test site\n\n"
        + line("B", "alice")
        + b"\n"
        + line("m", "bob")
        + b"\r\n   # an indented comment\n"
        + line("5", "carol")
        + b"\n"
        + b"unknown-line:with:colons\n"
    )


F, BAD, MISSING, FOLDER = "{file}", "{bad}", "{missing}", "{folder}"
# a line htpasswd refuses between two users; odd hashes above such a line
BROKEN, ODD = "{broken}", "{odd}"

CASES: list[tuple[list[str], bytes]] = [
    (["-b", F, "alice", "new-a"], b""),
    (["-b", F, "dave", "pw-d"], b""),
    (["-cb", F, "eve", "pw-e"], b""),
    (["-Bb", "-C", "4", F, "dave", "pw"], b""),
    (["-BbC4", F, "dave", "pw"], b""),
    (["-Bb", "-C", "17x", F, "dave", "pw"], b""),
    (["-Bb", "-C", "0", F, "dave", "pw"], b""),
    (["-Bb", "-C", "3", F, "dave", "pw"], b""),
    (["-Bb", "-C", "18", F, "dave", "pw"], b""),
    (["-Bb", "-C"], b""),
    (["-mb", F, "dave", "pw"], b""),
    (["-mb", "-C", "8", F, "dave", "pw"], b""),
    (["-2b", F, "dave", "pw"], b""),
    (["-5b", "-r", "6000", F, "dave", "pw"], b""),
    (["-sb", F, "dave", "pw"], b""),
    (["-db", F, "dave", "pw"], b""),
    (["-b", "--", F, "dave", "pw"], b""),
    (["-D", F, "bob"], b""),
    (["-D", F, "nobody"], b""),
    (["-vb", F, "alice", "secret-a"], b""),
    (["-vb", F, "carol", "secret-c"], b""),
    (["-vb", F, "alice", "wrong"], b""),
    (["-vb", F, "nobody", "x"], b""),
    (["-vi", F, "bob"], b"secret-b\n"),
    (["-i", F, "dave"], b"pw-d\n"),
    (["-i", F, "dave"], LONG.encode()),
    (["-b", MISSING, "dave", "pw"], b""),
    (["-cb", FOLDER, "dave", "pw"], b""),
    (["-b", FOLDER, "dave", "pw"], b""),
    (["-b", F, "a:b", "pw"], b""),
    (["-b", F, LONG, "pw"], b""),
    (["-b", F, "dave", LONG], b""),
    (["-b", F, "dave", LONG[:255]], b""),
    (["-b", BAD, "dave", "pw"], b""),
    (["-D", BAD, "dave"], b""),
    (["-vb", BAD, "dave", "pw"], b""),
    # htpasswd -v reads line by line: the user's line is checked when reached, the broken
    # line refused when reached, whichever comes first decides the exit code
    (["-vb", BROKEN, "alice", "wrong"], b""),
    (["-vb", BROKEN, "alice", "secret-a"], b""),
    (["-vb", BROKEN, "bob", "wrong"], b""),
    (["-vb", BROKEN, "bob", "secret-b"], b""),
    (["-vb", BROKEN, "nobody", "x"], b""),
    (["-vi", BROKEN, "alice"], b"wrong\n"),
    (["-vi", BROKEN, "alice"], b"secret-a\n"),
    (["-v", BROKEN, "alice"], b"wrong\n"),
    (["-v", BROKEN, "bob"], b"secret-b\n"),
    (["-vb", ODD, "empty", "pw"], b""),
    (["-vb", ODD, "blank", "pw"], b""),
    (["-vb", ODD, "colon", "x"], b""),
    (["-vb", ODD, "nobody", "x"], b""),
    (["-x", F, "dave"], b""),
    (["-b", F], b""),
    ([F], b""),
    ([], b""),
    (["-b", F, "dave", "pw", "extra"], b""),
    (["-cn", F, "dave"], b""),
    (["-cD", F, "dave"], b""),
    (["-nD", "dave"], b""),
    (["-vn", "dave"], b""),
    (["-cv", F, "dave"], b""),
    (["-bi", F, "dave", "pw"], b""),
    (["-nb", "dave", "pw"], b""),
    (["-nb", "dave"], b""),
    # prompts with no terminal (a script): they read stdin, and end of input is an empty line
    ([F, "dave"], b"pw-d\npw-d\n"),
    ([F, "dave"], b"pw-d\nother\n"),
    ([F, "dave"], b""),
    (["-v", F, "alice"], b"secret-a\n"),
    (["-v", F, "alice"], b""),
    (["-n", "dave"], b""),
]


@pytest.fixture
def two_copies(tmp_path: Path, original: bytes) -> Iterator[tuple[dict[str, str], dict[str, str]]]:
    places = []
    for name in ("theirs", "ours"):
        folder = tmp_path / name
        folder.mkdir()
        (folder / "users").write_bytes(original)
        (folder / "bad").write_bytes(b"alice:x\nthis line has no colon\n")
        (folder / "broken").write_bytes(
            _line_of(original, b"alice") + b"\nthis line has no colon\n" + _line_of(original, b"bob") + b"\n"
        )
        (folder / "odd").write_bytes(b"empty:\nblank:   \ncolon::x\nthis line has no colon\n")
        (folder / "adir").mkdir()
        places.append(
            {
                F: str(folder / "users"),
                BAD: str(folder / "bad"),
                MISSING: str(folder / "missing"),
                FOLDER: str(folder / "adir"),
                BROKEN: str(folder / "broken"),
                ODD: str(folder / "odd"),
            }
        )
    yield places[0], places[1]


def _line_of(data: bytes, user: bytes) -> bytes:
    return next(ln for ln in data.split(b"\n") if ln.startswith(user + b":")).rstrip(b"\r")


def _fill(args: list[str], place: dict[str, str]) -> list[str]:
    return [place.get(a, a) for a in args]


def _user_and_password(args: list[str]) -> tuple[str, str] | None:
    words = [a for a in args if not a.startswith("-")]
    return (words[-2], words[-1]) if len(words) >= 3 and "-b" in "".join(args) else None


@pytest.mark.parametrize(("args", "stdin"), CASES, ids=[" ".join(c[0]) or "none" for c in CASES])
def test_same_exit_code_as_htpasswd(
    real_htpasswd: str,
    two_copies: tuple[dict[str, str], dict[str, str]],
    original: bytes,
    args: list[str],
    stdin: bytes,
) -> None:
    theirs, ours = two_copies
    expected = htpasswd(real_htpasswd, *_fill(args, theirs), input=stdin)
    got = authn("passwd", *_fill(args, ours), input=stdin)
    assert got.returncode == expected.returncode, (expected.stderr, got.stderr)
    users_file = Path(ours[F])
    after = users_file.read_bytes()
    if got.returncode != 0:
        assert after == original, "a failed command changed the file"
        prompts = ("New password:", "Re-type new password:", "Enter password:", "Warning: Password input")
        lines = [ln for ln in got.stderr.decode().strip().splitlines() if not ln.startswith(prompts)]
        message = "\n".join(lines)
        if args:  # usage errors of an empty command line may say more
            assert len(message.splitlines()) == 1, message
            assert message.startswith("authn passwd: ")
        assert not any(n.startswith(".users.tmp") for n in os.listdir(users_file.parent))
        return
    if "-n" in "".join(args[:1]):
        assert got.stdout.startswith(b"dave:$2y$10$")
        return
    changed = _user_and_password(_fill(args, ours))
    if changed and "-v" not in args[0] and "-D" not in args[0]:
        user, password = changed
        assert verifies(real_htpasswd, users_file, user, password)
        if "-c" not in args[0]:
            _only_user_line_changed(original, after, user.encode())


def _only_user_line_changed(before: bytes, after: bytes, user: bytes) -> None:
    old = [ln for ln in before.split(b"\n") if not ln.startswith(user + b":")]
    new = [ln for ln in after.split(b"\n") if not ln.startswith(user + b":")]
    assert [ln for ln in new if ln] == [ln for ln in old if ln]
    assert before.count(b"\n") <= after.count(b"\n") <= before.count(b"\n") + 1


def test_every_other_line_is_kept_byte_for_byte(real_htpasswd: str, tmp_path: Path, original: bytes) -> None:
    path = tmp_path / "users"
    path.write_bytes(original)
    assert authn("passwd", "-b", path, "bob", "changed").returncode == 0
    assert authn("passwd", "-b", path, "dave", "pw-d").returncode == 0
    assert authn("passwd", "-D", path, "alice").returncode == 0
    lines = original.split(b"\n")
    bob_line = next(ln for ln in lines if ln.startswith(b"bob:"))
    after = path.read_bytes()
    expected = original.replace(next(ln for ln in lines if ln.startswith(b"alice:")) + b"\n", b"")
    new_bob = next(ln for ln in after.split(b"\n") if ln.startswith(b"bob:"))
    expected = expected.replace(bob_line + b"\n", new_bob + b"\n")
    dave = after.split(b"\n")[-2]
    assert after == expected + dave + b"\n"
    assert verifies(real_htpasswd, path, "bob", "changed")
    assert verifies(real_htpasswd, path, "carol", "secret-c")
    assert verifies(real_htpasswd, path, "dave", "pw-d")


@pytest.mark.parametrize("flag", ["-B", "-m", "-2", "-5", "-s", "-d", ""])
def test_files_we_write_pass_htpasswd_v(real_htpasswd: str, tmp_path: Path, flag: str) -> None:
    path = tmp_path / "users"
    args = [flag + "cb"] if flag else ["-cb"]
    assert authn("passwd", *args, path, "u1", "pässword 1").returncode == 0
    assert authn("passwd", *(a.replace("c", "") for a in args), path, "u2", "pw2").returncode == 0
    assert verifies(real_htpasswd, path, "u1", "pässword 1")
    assert verifies(real_htpasswd, path, "u2", "pw2")
    assert not verifies(real_htpasswd, path, "u2", "pw3")


@pytest.mark.parametrize("flag", ["-B", "-m", "-2", "-5", "-s"])
def test_files_htpasswd_writes_are_edited_and_verified(real_htpasswd: str, tmp_path: Path, flag: str) -> None:
    path = tmp_path / "users"
    assert htpasswd(real_htpasswd, flag + "cb", path, "old1", "pw-1").returncode == 0
    assert htpasswd(real_htpasswd, flag + "b", path, "old2", "pw-2").returncode == 0
    before = path.read_bytes()
    assert authn("passwd", "-vb", path, "old1", "pw-1").returncode == 0
    assert authn("passwd", "-vb", path, "old1", "nope").returncode == 3
    assert authn("passwd", "-b", path, "new", "pw-n").returncode == 0
    assert path.read_bytes().startswith(before)
    assert authn("passwd", "-D", path, "old1").returncode == 0
    assert verifies(real_htpasswd, path, "old2", "pw-2")
    assert verifies(real_htpasswd, path, "new", "pw-n")
    assert htpasswd(real_htpasswd, "-vb", path, "old1", "pw-1").returncode == 6


def test_verify_checks_only_the_first_line_of_a_user(
    real_htpasswd: str, tmp_path: Path, original: bytes
) -> None:
    # On purpose: Apache uses the first line of a user; htpasswd -v checks every line of the
    # user and says 3 when a later one differs.
    path = tmp_path / "users"
    other = htpasswd(real_htpasswd, "-nbm", "alice", "other").stdout.strip(b"\n")
    path.write_bytes(_line_of(original, b"alice") + b"\n" + other + b"\n")
    assert authn("passwd", "-vb", path, "alice", "secret-a").returncode == 0
    assert htpasswd(real_htpasswd, "-vb", path, "alice", "secret-a").returncode == 3
    assert authn("passwd", "-vb", path, "alice", "other").returncode == 3
    path.write_bytes(_line_of(original, b"alice") + b"\nthis line has no colon\n" + other + b"\n")
    assert authn("passwd", "-vb", path, "alice", "secret-a").returncode == 7  # as htpasswd


@pytest.mark.parametrize("user", ["a\nb", "a\tb", "a\x7fb", " lead", "#hash", ""])
def test_user_names_the_file_cannot_hold_are_refused(tmp_path: Path, user: str) -> None:
    # htpasswd accepts these and writes a line that is split, blank, a comment or unusable.
    path = tmp_path / "users"
    path.write_bytes(b"alice:x\n")
    got = authn("passwd", "-b", path, user, "pw")
    assert got.returncode == 6
    assert len(got.stderr.decode().strip().splitlines()) == 1
    assert path.read_bytes() == b"alice:x\n"


@pytest.mark.parametrize(
    ("args", "code"),
    [(["-pb"], 2), (["-2b", "-r", "999"], 3), (["-5b", "-r", "1000000000"], 3)],
)
def test_refused_on_purpose(tmp_path: Path, args: list[str], code: int) -> None:
    # htpasswd writes a plaintext password, or the broken hash "*0", and exits 0.
    path = tmp_path / "users"
    path.write_bytes(b"alice:x\n")
    got = authn("passwd", *args, path, "bob", "pw")
    assert got.returncode == code
    assert path.read_bytes() == b"alice:x\n"


def test_unreadable_and_unwritable_files_exit_1_like_htpasswd(real_htpasswd: str, scratch: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to run both tools as nobody")
    as_nobody = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]
    folder = scratch / "perm"  # nobody can reach it (scratch), and write in it
    folder.mkdir(mode=0o777)
    folder.chmod(0o777)
    for mode in (0o000, 0o444):
        path = folder / f"users{mode:o}"
        path.write_bytes(b"alice:x\n")
        path.chmod(mode)
        args = ["-b", str(path), "bob", "pw"]
        theirs = _run([*as_nobody, real_htpasswd, *args])
        ours = _run([*as_nobody, *AUTHN, "passwd", *args])
        assert theirs.returncode == ours.returncode == 1, ours.stderr
        assert len(ours.stderr.splitlines()) == 1
        assert path.read_bytes() == b"alice:x\n"


def _run(cmd: list[str]) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(cmd, capture_output=True, env=env(), timeout=60, cwd="/")
