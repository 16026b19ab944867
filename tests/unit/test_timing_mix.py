"""Which dummy an unknown name is checked against: drawn from the file's own mix of schemes
and costs, weighted by how many users have each, the same for one name every time and in
every process (behaviour checked by the classes drawn, never by timing; the timing itself is
measured in test_timing_equality.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from authn import hashes
from authn.sources import passwordfile
from authn.sources.passwordfile import PasswordFile, parse_password_file
from devkit.apache import REPO

# (scheme, cost, how many users); cheap costs: nothing here is timed
MIX = [("bcrypt", 4, 50), ("apr1", None, 25), ("sha1", None, 15), ("sha512-crypt", None, 10)]
NAMES = [f"nobody-{i}" for i in range(20_000)]


def mixed_file(mix: list[tuple[str, int | None, int]] = MIX) -> bytes:
    lines = []
    for scheme, cost, count in mix:
        stored = hashes.make_hash(b"pw", scheme, cost)  # one hash per class: parsing is what counts
        lines += [f"{scheme}-{i}:{stored}" for i in range(count)]
    return ("\n".join(lines) + "\n").encode()


def classes_drawn(table: passwordfile.PasswordTable, names: list[str]) -> list[hashes.TimingClass]:
    return [hashes.timing_class(table.dummy_for(name)) for name in names]


def test_one_name_always_draws_the_same_dummy() -> None:
    table = parse_password_file(mixed_file())
    for name in NAMES[:200]:
        assert len({table.dummy_for(name) for _ in range(5)}) == 1


def test_unknown_names_follow_the_files_mix() -> None:
    data = mixed_file()
    table = parse_password_file(data)
    drawn = Counter(classes_drawn(table, NAMES))
    expected = Counter(hashes.timing_class(h) for h in table.hashes.values())
    assert set(drawn) == set(expected)
    for timing, users in expected.items():
        share = drawn[timing] / len(NAMES)
        assert share == pytest.approx(users / len(table.hashes), abs=0.02), (timing, share)


def test_the_choice_is_the_same_in_another_process() -> None:
    """Two Apache children parse the same file separately: one name must cost the same in
    both (the dummies' digests are random per process; their classes are not)."""
    data = mixed_file()
    here = classes_drawn(parse_password_file(data), NAMES[:500])
    again = classes_drawn(parse_password_file(data), NAMES[:500])
    assert here == again
    script = (
        "import json, sys\n"
        "from authn import hashes\n"
        "from authn.sources.passwordfile import parse_password_file\n"
        "table = parse_password_file(sys.stdin.buffer.read())\n"
        "names = json.loads(sys.argv[1])\n"
        "print(json.dumps([hashes.timing_class(table.dummy_for(n)) for n in names]))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script, json.dumps(NAMES[:500])],
        input=data,
        capture_output=True,
        cwd=REPO,
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONPATH": str(REPO)},
        check=True,
        timeout=60,
    )
    assert [tuple(c) for c in json.loads(result.stdout)] == here


def test_the_choice_depends_on_the_files_secret_content() -> None:
    """Same users, same schemes, fresh salts: another choice. A client, who knows neither the
    salts nor the other users, cannot tell which class a name will draw."""
    first = classes_drawn(parse_password_file(mixed_file()), NAMES[:2000])
    second = classes_drawn(parse_password_file(mixed_file()), NAMES[:2000])
    differ = sum(a != b for a, b in zip(first, second, strict=True)) / 2000
    assert differ > 0.3  # two independent draws from this mix differ about 65% of the time


def test_lines_a_client_could_compute_do_not_make_the_key() -> None:
    """{SHA} lines have no salt: a client who knows such an account's password knows its
    line. Fifteen of them alike in two files, one bcrypt line each with its own salt: the
    choices differ, so the key came from the salted line."""
    shared = mixed_file([("sha1", None, 15)])  # {SHA} of one password: the same lines each time
    first = classes_drawn(parse_password_file(shared + mixed_file([("bcrypt", 4, 1)])), NAMES[:2000])
    second = classes_drawn(parse_password_file(shared + mixed_file([("bcrypt", 4, 1)])), NAMES[:2000])
    differ = sum(a != b for a, b in zip(first, second, strict=True)) / 2000
    assert differ > 0.05  # independent draws from 15:1 differ about 12% of the time; one key: 0


def test_an_edit_changes_the_cost_of_few_unknown_names() -> None:
    """Adding a user must not reshuffle every unknown name: comparing a name's time before
    and after an edit would then tell unknown names (which change) from users (which
    do not)."""
    data = mixed_file([("bcrypt", 4, 500), ("apr1", None, 300), ("sha1", None, 200)])
    before = classes_drawn(parse_password_file(data), NAMES[:5000])
    extra = f"newcomer:{hashes.make_hash(b'pw', 'apr1')}\n".encode()
    after = classes_drawn(parse_password_file(data + extra), NAMES[:5000])
    changed = sum(a != b for a, b in zip(before, after, strict=True)) / 5000
    assert changed < 0.01


def test_disabled_users_cost_what_their_own_hash_costs() -> None:
    slow = hashes.make_hash(b"pw", "bcrypt", 6)
    data = f"alice:{hashes.make_hash(b'pw', 'bcrypt', 4)}\nbob:!{slow}\ncarol:!{{SHA}}x\n"
    table = parse_password_file(data.encode())
    assert hashes.timing_class(table.disabled["bob"]) == ("bcrypt", "06")
    assert table.disabled["bob"] != slow[1:] and not hashes.verify(b"pw", table.disabled["bob"])
    assert hashes.timing_class(table.disabled["carol"]) == ("sha1", "")


@pytest.mark.parametrize(
    ("stored", "timing"),
    [
        ("secret", ("plaintext", "des")),  # crypt(3) reads "se" as a DES salt
        ("_J9..abcdwxyz", ("plaintext", "bsdi:J9..")),  # BSDi crypt, rounds from "J9.."
        ("a b c", ("plaintext", "refused")),
        ("", ("empty", "")),
    ],
)
def test_plaintext_lines_get_a_dummy_crypt_treats_the_same_way(
    stored: str, timing: hashes.TimingClass
) -> None:
    """verify() hands a plaintext line to crypt(3), which reads its first characters as
    settings: the dummy keeps them (and nothing more of the password), so it costs the same."""
    assert hashes.timing_class(stored) == timing
    dummy = hashes.dummy_like(stored)
    assert hashes.timing_class(dummy) == timing
    assert len(dummy) <= min(len(stored), 9) + 1
    assert not hashes.verify(stored.encode() or b"x", dummy)
    assert (hashes.system_crypt(b"pw", stored) is None) == (hashes.system_crypt(b"pw", dummy) is None)


def test_unknown_disabled_and_plaintext_users_each_run_one_check_of_their_class(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    slow = hashes.make_hash(b"pw", "bcrypt", 6)
    path = tmp_path / "users"
    path.write_text(f"alice:{slow}\nbob:!{slow}\ndave:secret\nerin:{hashes.make_hash(b'pw', 'sha1')}\n")
    source = PasswordFile(str(path))
    table = source.table()
    calls: list[hashes.TimingClass] = []
    real_verify = hashes.verify

    def spy(password: bytes, stored: str) -> bool:
        calls.append(hashes.timing_class(stored))
        return real_verify(password, stored)

    monkeypatch.setattr(passwordfile.hashes, "verify", spy)
    expected = [("alice", ("bcrypt", "06")), ("bob", ("bcrypt", "06")), ("dave", ("plaintext", "des"))]
    for user, timing in expected:
        calls.clear()
        assert not source.check(user, b"wrong").granted
        assert calls == [timing], user
    for name in NAMES[:50]:
        calls.clear()
        assert not source.check(name, b"wrong").granted
        assert calls == [hashes.timing_class(table.dummy_for(name))]


def test_an_empty_file_checks_unknown_names_against_bcrypt() -> None:
    table = parse_password_file(b"# nobody yet\n")
    assert {hashes.timing_class(table.dummy_for(n)) for n in NAMES[:50]} == {("bcrypt", "05")}
