"""Parsing and checking htpasswd-format files by mod_authn_file's rules."""

import os
import time
from pathlib import Path

import pytest

from authn import hashes
from authn.errors import SourceUnavailable
from authn.sources.passwordfile import PasswordFile, parse_password_file
from authn.verdict import Outcome

H = hashes.make_hash(b"pw", "apr1")
H2 = hashes.make_hash(b"other", "apr1")


def test_basic_parse_rules() -> None:
    data = (
        f"# comment\n\n  alice:{H}  \r\nbob:{H2}:extra:fields\nalice:{H2}\nnocolon\n:{H}\n"
        f"carol:\ndave:secret\n"
    ).encode()
    table = parse_password_file(data, "users")
    assert table.hashes["alice"] == H  # first line wins, trimmed, CRLF ok
    assert table.hashes["bob"] == H2  # fields after the hash are ignored
    assert table.hashes["nocolon"] == ""  # Apache matches it and never grants
    joined = "\n".join(table.warnings)
    for fragment in ("users:5", "appears again", "users:6", "no ':'", "users:7", "empty user",
                     "users:8", "empty hash", "users:9", "plaintext"):  # fmt: skip
        assert fragment in joined


def test_overlong_line_ends_the_file_like_apache() -> None:
    data = f"a:{H}\n{'x' * 9000}\nb:{H}\n".encode()
    table = parse_password_file(data, "f")
    assert "a" in table.hashes and "b" not in table.hashes
    assert "longer than" in table.warnings[0]


def test_user_names_are_byte_exact() -> None:
    data = "jörg:".encode() + H.encode() + b"\n"
    table = parse_password_file(data)
    assert "jörg".encode().decode("latin-1") in table.hashes


def test_dummies_come_from_the_files_schemes_and_costs() -> None:
    b = hashes.make_hash(b"x", "bcrypt", 6)
    data = "".join(f"u{i}:{b}\n" for i in range(3)) + f"z:{H}\n"
    table = parse_password_file(data.encode())
    drawn = {hashes.identify(table.dummy_for(f"nobody{i}")) for i in range(200)}
    assert drawn == {hashes.HashInfo("bcrypt", 6), hashes.HashInfo("apr1")}
    assert not any(hashes.verify(b"x", table.dummy_for(f"nobody{i}")) for i in range(20))


def write(path: Path, text: str) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def test_source_answers_three_ways(tmp_path: Path) -> None:
    path = tmp_path / "users"
    write(path, f"alice:{H}\nbob:!{H}\n")
    source = PasswordFile(str(path))
    assert source.check("alice", b"pw").outcome is Outcome.GRANTED
    assert source.check("alice", b"nope").outcome is Outcome.DENIED
    assert source.check("zed", b"pw").outcome is Outcome.UNKNOWN
    disabled = source.check("bob", b"pw")
    assert disabled.outcome is Outcome.DENIED and disabled.reason == "account disabled"


def test_reload_within_a_second(tmp_path: Path) -> None:
    path = tmp_path / "users"
    write(path, f"alice:{H}\n")
    source = PasswordFile(str(path), interval=0.1)
    assert source.check("alice", b"pw").granted
    write(path, f"alice:{H2}\n")
    deadline = time.monotonic() + 1.0
    while source.check("alice", b"pw").granted:
        assert time.monotonic() < deadline, "edit not seen within one second"
        time.sleep(0.02)
    assert source.check("alice", b"other").granted


def test_missing_file_fails_closed(tmp_path: Path) -> None:
    source = PasswordFile(str(tmp_path / "nope"))
    with pytest.raises(SourceUnavailable, match=r"nope.*No such file"):
        source.check("alice", b"pw")


def test_file_removed_after_load_fails_closed(tmp_path: Path) -> None:
    path = tmp_path / "users"
    write(path, f"alice:{H}\n")
    source = PasswordFile(str(path), interval=0.0)
    assert source.check("alice", b"pw").granted
    path.unlink()
    with pytest.raises(SourceUnavailable):
        source.check("alice", b"pw")
    write(path, f"alice:{H2}\n")
    # Back: taken once it has settled; until then it keeps failing closed, never the old file.
    deadline = time.monotonic() + 1.0
    while True:
        try:
            assert not source.check("alice", b"pw").granted
            if source.check("alice", b"other").granted:
                break
        except SourceUnavailable:
            pass
        assert time.monotonic() < deadline, "restored file not taken within a second"
        time.sleep(0.02)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_unreadable_file_fails_closed(tmp_path: Path) -> None:
    path = tmp_path / "users"
    write(path, f"alice:{H}\n")
    path.chmod(0)
    with pytest.raises(SourceUnavailable, match="Permission denied"):
        PasswordFile(str(path)).check("alice", b"pw")


def test_file_being_written_in_place_keeps_the_old_answer(tmp_path: Path) -> None:
    path = tmp_path / "users"
    write(path, f"alice:{H}\nbob:{H}\n")
    old = time.time() - 10
    os.utime(path, (old, old))
    source = PasswordFile(str(path), interval=0.0)
    assert source.check("bob", b"pw").granted
    path.write_text(f"alice:{H}\n")  # half of an in-place rewrite, just now
    assert source.check("bob", b"pw").granted  # not taken while it settles
    time.sleep(0.3)
    assert source.check("bob", b"pw").outcome is Outcome.UNKNOWN


def test_large_file_loads_fast_enough_and_lookups_are_dicts(tmp_path: Path) -> None:
    b = hashes.make_hash(b"x", "bcrypt", 4)
    path = tmp_path / "users"
    write(path, "".join(f"user{i}:{b}\n" for i in range(100_000)))
    source = PasswordFile(str(path))
    table = source.table()
    assert len(table.hashes) == 100_000
    assert source.check("user99999", b"x").granted
