"""``authn group``, ``authn import`` and ``authn list``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from authn.sources.groupfile import parse_group_file
from tests.cli.helpers import authn, htpasswd, verifies


def test_group_edits_keep_other_lines(tmp_path: Path) -> None:
    path = tmp_path / "groups"
    original = b'# groups\r\nadmins: alice\r\nweb team: "x y" bob\nadmins: carol\n'
    path.write_bytes(original)
    assert authn("group", "add", path, "admins", "dave", "alice").returncode == 0
    assert path.read_bytes() == original.replace(b"admins: alice\r\n", b"admins: alice dave\r\n")
    assert authn("group", "remove", path, "admins", "carol").returncode == 0
    assert authn("group", "add", path, "web team", "e f").returncode == 0
    assert authn("group", "add", path, "new", "zed").returncode == 0
    table = parse_group_file(path.read_bytes())
    assert table["dave"] == {"admins"}
    assert table["e f"] == {"web team"}
    assert table["x y"] == {"web team"}
    assert "carol" not in table
    assert table["zed"] == {"new"}
    assert path.read_bytes().startswith(b"# groups\r\nadmins: alice dave\r\n")
    listed = json.loads(authn("group", "list", path, "--json").stdout)
    assert listed["web team"] == ["x y", "bob", "e f"]
    assert authn("group", "delete", path, "admins").returncode == 0
    assert "alice" not in parse_group_file(path.read_bytes())


def test_group_refuses_bad_names_and_missing_files(tmp_path: Path) -> None:
    path = tmp_path / "groups"
    assert authn("group", "add", path, "g", "u").returncode == 1
    assert not path.exists()
    assert authn("group", "add", "-c", path, "g", "u").returncode == 0
    before = path.read_bytes()
    assert authn("group", "add", path, "g", "bad\nname").returncode == 6
    assert authn("group", "add", path, "a:b", "u").returncode == 6
    assert path.read_bytes() == before


def test_import_hashes_everything_and_htpasswd_agrees(real_htpasswd: str, tmp_path: Path) -> None:
    path = tmp_path / "users"
    path.write_bytes(b"# staff\nold:$apr1$x$y\n")
    rows = "user,password\n" + "".join(f"u{i},pw {i}\n" for i in range(40)) + 'old,"a,b"\n'
    got = authn("import", "-C", "4", path, "-", input=rows.encode())
    assert got.returncode == 0, got.stderr
    assert b"40 added, 1 updated" in got.stderr
    assert b"hashing [" not in got.stderr  # no progress bar when stderr is not a terminal
    assert path.read_bytes().startswith(b"# staff\nold:$2y$04$")
    for i in (0, 39):
        assert verifies(real_htpasswd, path, f"u{i}", f"pw {i}")
    assert verifies(real_htpasswd, path, "old", "a,b")


@pytest.mark.parametrize("from_stdin", [True, False])
def test_import_of_a_spreadsheet_csv(real_htpasswd: str, tmp_path: Path, from_stdin: bool) -> None:
    """What "CSV UTF-8" exports write: a byte order mark, CRLF; the header stays a header,
    and an empty password is imported with one warning."""
    path = tmp_path / "users"
    data = "\ufeffuser,password\r\njörg,pw 1\r\nx5,\r\n".encode()
    csv_file = tmp_path / "staff.csv"
    csv_file.write_bytes(data)
    args = ("import", "-c", "-C", "4", path, "-" if from_stdin else csv_file)
    got = authn(*args, input=data if from_stdin else None)
    assert got.returncode == 0, got.stderr
    assert b"2 added" in got.stderr
    assert b"1 row(s) with an empty password (row 3)" in got.stderr
    assert {line.split(b":")[0] for line in path.read_bytes().splitlines()} == {"jörg".encode(), b"x5"}
    assert verifies(real_htpasswd, path, "jörg", "pw 1")


def test_import_stops_on_a_bad_row_before_writing(tmp_path: Path) -> None:
    path = tmp_path / "users"
    path.write_bytes(b"old:$apr1$x$y\n")
    got = authn("import", path, "-", input=b"good,pw\nbad:name,pw\n")
    assert got.returncode == 6
    assert b"stdin:2" in got.stderr
    assert path.read_bytes() == b"old:$apr1$x$y\n"


def test_list_flags_weak_hashes(real_htpasswd: str, tmp_path: Path) -> None:
    path = tmp_path / "users"
    lines = [htpasswd(real_htpasswd, f"-nb{f}", f"u{f}", "pw").stdout.strip() for f in "Bms5"]
    path.write_bytes(b"\n".join(lines) + b"\n")
    assert authn("passwd", "-b", path, "strong", "pw").returncode == 0
    assert authn("disable", path, "strong").returncode == 0
    got = json.loads(authn("list", path, "--json").stdout)
    by_user = {u["user"]: u for u in got}
    assert by_user["uB"]["weak"].startswith("bcrypt cost 5")
    assert by_user["um"]["scheme"] == "apr1" and by_user["um"]["weak"]
    assert by_user["us"]["scheme"] == "sha1" and by_user["us"]["weak"]
    assert by_user["u5"]["weak"] == ""
    assert by_user["strong"] == {
        "user": "strong",
        "scheme": "bcrypt",
        "cost": 10,
        "disabled": True,
        "weak": "",
    }
    text = authn("list", path).stdout.decode()
    assert "disabled" in text and "WEAK" in text
    assert authn("disable", path, "nobody").returncode == 6


def test_version_is_the_package_version() -> None:
    from authn import __version__
    from tests.cli.helpers import authn

    for flag in ("--version", "-V"):
        result = authn(flag)
        assert result.returncode == 0 and result.stdout.decode() == f"authn {__version__}\n"
