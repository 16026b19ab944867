"""Option parsing: bad values name the option, the value and what is accepted."""

import pytest

from authn.errors import ConfigError
from authn.httpd.words import split_words
from authn.settings import parse_settings, settings_for


def test_defaults_and_values() -> None:
    s = parse_settings([("authn.source", "file"), ("authn.file", "/etc/u"),
                        ("mod_python.x", "ignored"), ("other", "x")])  # fmt: skip
    assert s.sources == ("file",) and s.password_file == "/etc/u"


def test_groups_are_words_like_apache_require() -> None:
    s = parse_settings([("authn.file", "/u"), ("authn.groupfile", "/g"),
                        ("authn.require.group", "admins 'web team' \"ops people\"")])  # fmt: skip
    assert s.require_groups == ("admins", "web team", "ops people")


@pytest.mark.parametrize(
    ("options", "fragment"),
    [
        ([("authn.source", "fiel"), ("authn.file", "/u")], "authn.source: bad value 'fiel'"),
        ([("authn.file", "relative/path")], "authn.file: bad value 'relative/path': give an absolute"),
        ([("authn.fiel", "/u")], "authn.fiel: unknown option; did you mean authn.file?"),
        ([("authn.source", "file")], "authn.file: missing"),
        ([("authn.file", "/u"), ("authn.require.group", "a")], "set authn.groupfile"),
        ([("authn.file", "/u"), ("authn.groupfile", "/g"), ("authn.require.group", "  ")],
         "authn.require.group: bad value"),
    ],
)  # fmt: skip
def test_errors_name_option_and_fix(options: list[tuple[str, str]], fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_settings(options)
    assert fragment in str(info.value)


def test_settings_are_cached_per_option_set() -> None:
    a = settings_for({"authn.file": "/x", "unrelated": "1"})
    b = settings_for({"authn.file": "/x", "unrelated": "2"})
    assert a is b


@pytest.mark.parametrize(
    ("line", "words"),
    [
        ("a b  c", ["a", "b", "c"]),
        ("'web team' x", ["web team", "x"]),
        ('"say \\"hi\\"" y', ['say "hi"', "y"]),
        ('"cn=Smith\\, John,ou=x" cn=a\\,b', ["cn=Smith\\, John,ou=x", "cn=a\\,b"]),
        ('"unterminated rest', ["unterminated rest"]),
        ("", []),
    ],
)
def test_split_words_like_ap_getword_conf(line: str, words: list[str]) -> None:
    assert split_words(line) == words
