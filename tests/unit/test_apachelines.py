"""Apache's line reader (ap_cfg_getline) as the password and group files are read."""

from __future__ import annotations

from authn.httpd.lines import APACHE_MAX_LINE, TooLong, logical_lines
from authn.sources.groupfile import parse_group_file
from authn.sources.passwordfile import parse_password_file


def test_a_trailing_backslash_joins_the_next_line() -> None:
    text = "a:1\n# note \\\nhidden:2\nbob\\\r\n:3\r\n  spaced:4  \n"
    assert list(logical_lines(text)) == [(1, "a:1"), (2, "# note hidden:2"), (4, "bob:3"), (6, "spaced:4")]


def test_a_backslash_on_the_last_line_without_a_line_end_is_kept() -> None:
    assert list(logical_lines("x\nlast\\")) == [(1, "x"), (2, "last\\")]
    assert list(logical_lines("joined\\\n")) == [(1, "joined")]


def test_the_line_limit_counts_a_cr_and_the_joined_parts() -> None:
    fits = "a" * APACHE_MAX_LINE
    assert list(logical_lines(fits + "\nb\n")) == [(1, fits), (2, "b")]
    assert list(logical_lines(fits + "\r\nb\n")) == [TooLong(1)]
    half = "a" * (APACHE_MAX_LINE // 2)
    assert list(logical_lines(f"{half}\\\n{half}xx\nb\n")) == [TooLong(1)]


def test_password_file_follows_the_reader() -> None:
    data = b"# c \\\nhidden:$apr1$x$y\njoined\\\n:$apr1$x$y\n" + b"z" * 8190 + b"\r\nafter:$apr1$x$y\n"
    table = parse_password_file(data, "users")
    assert sorted(table.hashes) == ["joined"]
    assert any("users:5: line longer than 8190 bytes" in w for w in table.warnings)


def test_group_file_follows_the_reader() -> None:
    groups = parse_group_file(b"# admins \\\nadmins: eve\nstaff: bob \\\n  carol\n", "groups")
    assert "eve" not in groups
    assert groups["bob"] == {"staff"} and groups["carol"] == {"staff"}
